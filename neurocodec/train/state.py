"""The run state file (`RunDir.state`): everything a run needs to continue exactly where it stopped. Never pickle.

Tensors: `generator.*`, `discriminator.*`, `vq.<i>.usage` / `vq.<i>.recent` (codebook usage since the last
re-seeding), `vq.<i>.frequencies` (the rate term's running code frequencies; absent from older states),
`opt_g.<param>.<name>` / `opt_d.…` (AdamW moments). Metadata: `trainer` (step, best validation mel distance,
optimiser and scheduler bookkeeping, SNR history) and `config` (the run's config as JSON).

A resumed run may change its recipe (loss weights, schedule) and parameter-free model options, never a tensor's
shape; `config_diff` lists what changed, for config.json and the log.
"""

from __future__ import annotations

import json
import os
from typing import NamedTuple

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from ..config import Config, from_dict, to_dict
from ..errors import CheckpointError
from ..fileio import atomic_path


class Parts(NamedTuple):
    """What the state file holds tensors of; the discriminator side is None when the GAN is off."""

    codec: torch.nn.Module
    opt_g: torch.optim.Optimizer
    sched_g: torch.optim.lr_scheduler.LRScheduler
    disc: torch.nn.Module | None = None
    opt_d: torch.optim.Optimizer | None = None
    sched_d: torch.optim.lr_scheduler.LRScheduler | None = None


class Progress(NamedTuple):
    step: int
    best_mel: float  # lowest validation mel distance so far (inf before the first evaluation)
    snr_history: list[float]  # validation SNR at each evaluation (the health monitor's memory)


def config_diff(old: dict, new: dict, prefix: str = "") -> list[str]:
    """Dotted keys whose values differ, as "key: old -> new"."""
    out = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            out += config_diff(a, b, f"{prefix}{key}.")
        elif a != b:
            out.append(f"{prefix}{key}: {a} -> {b}")
    return out


def same_parameters(module: torch.nn.Module, state: dict[str, torch.Tensor]) -> bool:
    """Whether `state` has exactly `module`'s tensor names and shapes."""
    own = module.state_dict()
    return own.keys() == state.keys() and all(own[k].shape == v.shape for k, v in state.items())


def _flatten_optimizer(prefix: str, state: dict) -> tuple[dict[str, torch.Tensor], dict]:
    tensors, meta = {}, {"param_groups": state["param_groups"], "state": {}}
    for idx, entries in state["state"].items():
        meta["state"][str(idx)] = {}
        for name, value in entries.items():
            if torch.is_tensor(value):
                tensors[f"{prefix}.{idx}.{name}"] = value.detach().cpu().contiguous()
                meta["state"][str(idx)][name] = None
            else:
                meta["state"][str(idx)][name] = value
    return tensors, meta


def _unflatten_optimizer(prefix: str, tensors: dict[str, torch.Tensor], meta: dict) -> dict:
    state = {}
    for idx, entries in meta["state"].items():
        state[int(idx)] = {
            name: tensors[f"{prefix}.{idx}.{name}"] if value is None else value for name, value in entries.items()
        }
    return {"state": state, "param_groups": meta["param_groups"]}


_IMPLEMENTATION = ("fused", "foreach", "capturable", "differentiable")


def load_optimizer(opt: torch.optim.Optimizer, saved: dict) -> None:
    """`opt.load_state_dict(saved)`, keeping `opt`'s own implementation options (fused, foreach, …): torch takes
    them from the saved groups, so a state saved by the per-parameter AdamW would resume unfused. The step counters
    move to the parameters' device, as a fused update needs them."""
    own = [{k: g[k] for k in _IMPLEMENTATION if k in g} for g in opt.param_groups]
    opt.load_state_dict(saved)
    for group, options in zip(opt.param_groups, own):
        group.update(options)
        if group.get("fused") or group.get("capturable"):
            for p in group["params"]:
                state = opt.state.get(p, {})
                if torch.is_tensor(state.get("step")):
                    state["step"] = state["step"].to(dtype=torch.float32, device=p.device)


def save_state(path: str | os.PathLike, parts: Parts, progress: Progress, config: Config) -> None:
    """Write the state atomically."""
    tensors = {f"generator.{k}": v.detach().cpu().contiguous() for k, v in parts.codec.state_dict().items()}
    for i, vq in enumerate(parts.codec.quantizer.quantizers):
        tensors[f"vq.{i}.usage"] = vq.usage.cpu()
        tensors[f"vq.{i}.frequencies"] = vq.frequencies.cpu()
        if vq.recent is not None:
            tensors[f"vq.{i}.recent"] = vq.recent.cpu().contiguous()
    opt_t, opt_meta = _flatten_optimizer("opt_g", parts.opt_g.state_dict())
    tensors.update(opt_t)
    meta = {"step": progress.step, "best_mel": progress.best_mel, "opt_g": opt_meta,
            "sched_g": parts.sched_g.state_dict(), "snr_history": progress.snr_history}
    if parts.disc is not None:
        tensors.update({f"discriminator.{k}": v.detach().cpu().contiguous() for k, v in parts.disc.state_dict().items()})
        d_t, d_meta = _flatten_optimizer("opt_d", parts.opt_d.state_dict())
        tensors.update(d_t)
        meta["opt_d"] = d_meta
        meta["sched_d"] = parts.sched_d.state_dict()
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata={"trainer": json.dumps(meta), "config": json.dumps(to_dict(config))})


def load_state(path: str | os.PathLike, parts: Parts, config: Config) -> tuple[Progress, list[str]]:
    """Restore `parts` from the file; returns the progress and the config changes since the state was saved.

    A changed learning rate, betas or decay is applied (the optimiser state would otherwise carry the old ones)."""
    if not os.path.isfile(path):
        raise CheckpointError(f"{path}: nothing to resume")
    try:
        with safe_open(str(path), "pt") as f:
            metadata = f.metadata()
        tensors = load_file(str(path))
        meta = json.loads(metadata["trainer"])
        saved_cfg = from_dict(Config, json.loads(metadata["config"]))
    except Exception as exc:  # any damage to the file is one message, not a traceback
        raise CheckpointError(f"{path}: cannot resume ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})") from None
    generator = {k[10:]: v for k, v in tensors.items() if k.startswith("generator.")}
    if not same_parameters(parts.codec, generator):
        raise CheckpointError(f"{path}: the run was made with a different model config")
    changes = config_diff(to_dict(saved_cfg), to_dict(config))
    device = next(parts.codec.parameters()).device
    parts.codec.load_state_dict(generator)
    for i, vq in enumerate(parts.codec.quantizer.quantizers):
        vq.usage.copy_(tensors[f"vq.{i}.usage"])
        if f"vq.{i}.frequencies" in tensors:
            vq.frequencies.copy_(tensors[f"vq.{i}.frequencies"])
        if f"vq.{i}.recent" in tensors:
            vq.recent = tensors[f"vq.{i}.recent"].to(device)
    load_optimizer(parts.opt_g, _unflatten_optimizer("opt_g", tensors, meta["opt_g"]))
    parts.sched_g.load_state_dict(meta["sched_g"])
    if parts.disc is not None and "opt_d" in meta:
        parts.disc.load_state_dict({k[14:]: v for k, v in tensors.items() if k.startswith("discriminator.")})
        load_optimizer(parts.opt_d, _unflatten_optimizer("opt_d", tensors, meta["opt_d"]))
        parts.sched_d.load_state_dict(meta["sched_d"])
    step = int(meta["step"])
    tc, old = config.train, saved_cfg.train
    if (tc.lr, tuple(tc.betas), tc.lr_decay) != (old.lr, tuple(old.betas), old.lr_decay):
        pairs = [(parts.opt_g, parts.sched_g)] + ([(parts.opt_d, parts.sched_d)] if parts.disc is not None else [])
        lr = tc.lr * tc.lr_decay ** step
        for opt, sched in pairs:
            for group in opt.param_groups:
                group.update(lr=lr, initial_lr=tc.lr, betas=tuple(tc.betas))
            sched.base_lrs = [tc.lr] * len(opt.param_groups)
            sched.gamma = tc.lr_decay
            sched._last_lr = [lr] * len(opt.param_groups)
    return Progress(step, float(meta["best_mel"]), list(meta["snr_history"])), changes
