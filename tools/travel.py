"""The run state, packed small enough to travel to and from a lent GPU machine, and unpacked into a run folder.

A lent machine takes 64 MiB with the working tree and gives back at most 8 files of 16 MiB. The full state of the
default run (fp32 generator and discriminators, AdamW's two moments of each) is about 155 MB; packed it is about
52 MB in 16 MiB shards:
  * weights (generator, discriminators) as fp16 (the released model's own precision);
  * AdamW's first moments as int8 with one fp32 scale per block of 256 values (absmax);
  * AdamW's second moments as 8-bit codes of log2(v) between each block's fp32 min and max (v spans decades;
    an exact zero stays zero), so the denominator sqrt(v) comes back within about 4% where it is far from zero;
  * the step counter, schedules, codebook usage, best validation score and config as they are.
`unpack` writes a state file that `neurocodec train --resume` continues from (discriminators, moments and
schedule included), and the generator as a model checkpoint.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from neurocodec.checkpoint import save_model
from neurocodec.config import Config, from_dict
from neurocodec.errors import CheckpointError
from neurocodec.fileio import atomic_path
from neurocodec.train.rundir import RunDir

BLOCK = 256
SHARD_BYTES = 16 << 20  # what one file may hold to come back from a lent machine
FORMAT = "neurocodec-travel-1"


def _blocks(t: torch.Tensor) -> tuple[torch.Tensor, int]:
    flat = t.detach().float().flatten()
    pad = (-flat.numel()) % BLOCK
    return torch.nn.functional.pad(flat, (0, pad)).reshape(-1, BLOCK), pad


def quantize_signed(t: torch.Tensor) -> dict[str, torch.Tensor]:
    """int8 codes and per-block absmax scales (first moments)."""
    blocks, _ = _blocks(t)
    scale = blocks.abs().amax(1).clamp_min(1e-30)
    return {"q8": torch.round(blocks / scale[:, None] * 127).to(torch.int8), "scale": scale}


def dequantize_signed(parts: dict[str, torch.Tensor], shape: list[int]) -> torch.Tensor:
    values = parts["q8"].float() / 127 * parts["scale"][:, None]
    return values.flatten()[: math.prod(shape)].reshape(shape)


def quantize_log(t: torch.Tensor) -> dict[str, torch.Tensor]:
    """uint8 codes of log2 between each block's min and max over its non-zero values; code 0 is an exact zero
    (second moments: non-negative, spanning many decades)."""
    blocks, _ = _blocks(t)
    positive = blocks > 0
    logs = torch.where(positive, blocks.clamp_min(1e-38).log2(), torch.zeros_like(blocks))
    lo = torch.where(positive, logs, torch.full_like(logs, math.inf)).amin(1)
    hi = torch.where(positive, logs, torch.full_like(logs, -math.inf)).amax(1)
    lo, hi = torch.where(torch.isfinite(lo), lo, 0.0), torch.where(torch.isfinite(hi), hi, 0.0)
    span = (hi - lo).clamp_min(1e-12)
    codes = 1 + torch.round((logs - lo[:, None]) / span[:, None] * 254)
    return {"qlog": torch.where(positive, codes, 0).to(torch.uint8), "lo": lo, "hi": hi}


def dequantize_log(parts: dict[str, torch.Tensor], shape: list[int]) -> torch.Tensor:
    codes = parts["qlog"].float()
    span = parts["hi"] - parts["lo"]
    values = torch.exp2(parts["lo"][:, None] + (codes - 1) / 254 * span[:, None])
    values = torch.where(codes > 0, values, torch.zeros_like(values))
    return values.flatten()[: math.prod(shape)].reshape(shape)


def _read(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    try:
        with safe_open(str(path), "pt") as f:
            return {k: f.get_tensor(k) for k in f.keys()}, dict(f.metadata() or {})
    except Exception as exc:  # noqa: BLE001 - any damage is one message
        raise CheckpointError(f"{path}: cannot read ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})") from None


def pack(run_dir: str | os.PathLike, prefix: str | os.PathLike, shard_bytes: int = SHARD_BYTES) -> list[Path]:
    """Run folder's state → `{prefix}-{i}.safetensors` files of at most `shard_bytes` each."""
    run = RunDir(run_dir)
    tensors, metadata = _read(run.state)
    packed: dict[str, torch.Tensor] = {}
    kinds: dict[str, dict] = {}
    for name, t in tensors.items():
        kinds[name] = {"shape": list(t.shape), "dtype": str(t.dtype).removeprefix("torch.")}
        if name.endswith(".exp_avg"):
            kinds[name]["as"] = "int8"
            packed.update({f"{name}.{k}": v for k, v in quantize_signed(t).items()})
        elif name.endswith(".exp_avg_sq"):
            kinds[name]["as"] = "log8"
            packed.update({f"{name}.{k}": v for k, v in quantize_log(t).items()})
        elif t.is_floating_point() and name.startswith(("generator.", "discriminator.")) and t.numel() > 1:
            kinds[name]["as"] = "fp16"
            packed[name] = t.half()
        else:
            kinds[name]["as"] = "same"
            packed[name] = t
    meta = {**metadata, "travel": json.dumps({"format": FORMAT, "tensors": kinds})}
    room = shard_bytes - (1 << 20)  # 1 MiB for each file's header and metadata
    groups: list[dict[str, torch.Tensor]] = [{}]
    used = [0]
    for name in sorted(packed, key=lambda n: -packed[n].numel() * packed[n].element_size()):  # first fit, largest
        nbytes = packed[name].numel() * packed[name].element_size()
        if nbytes > room:
            raise CheckpointError(f"{name}: {nbytes} bytes do not fit a {shard_bytes}-byte shard")
        i = next((i for i, u in enumerate(used) if u + nbytes <= room), None)
        if i is None:
            groups.append({})
            used.append(0)
            i = len(groups) - 1
        groups[i][name] = packed[name]
        used[i] += nbytes
    paths = []
    Path(prefix).parent.mkdir(parents=True, exist_ok=True)
    for i, group in enumerate(groups):
        path = Path(f"{prefix}-{i}.safetensors")
        with atomic_path(path) as tmp:
            save_file({k: v.contiguous() for k, v in group.items()}, str(tmp),
                      metadata={**meta, "shard": f"{i}/{len(groups)}"})
        paths.append(path)
    return paths


def unpack(shards: list[str | os.PathLike], run_dir: str | os.PathLike) -> RunDir:
    """Shards from `pack` → a run folder to `--resume` (state, config.json, generator.safetensors)."""
    tensors: dict[str, torch.Tensor] = {}
    metadata: dict[str, str] = {}
    seen = set()
    for path in shards:
        part, metadata = _read(Path(path))
        seen.add(metadata.get("shard", "?"))
        tensors.update(part)
    try:
        travel = json.loads(metadata["travel"])
        total = int(next(iter(seen)).split("/")[1])
        cfg = from_dict(Config, json.loads(metadata["config"]))
    except (KeyError, ValueError, IndexError) as exc:
        raise CheckpointError(f"not a packed run state ({exc})") from None
    if travel.get("format") != FORMAT or len(seen) != total:
        raise CheckpointError(f"packed state incomplete or of another format: shards {sorted(seen)} of {total}")
    state: dict[str, torch.Tensor] = {}
    for name, kind in travel["tensors"].items():
        dtype = getattr(torch, kind["dtype"])
        if kind["as"] == "int8":
            t = dequantize_signed({k: tensors[f"{name}.{k}"] for k in ("q8", "scale")}, kind["shape"])
        elif kind["as"] == "log8":
            t = dequantize_log({k: tensors[f"{name}.{k}"] for k in ("qlog", "lo", "hi")}, kind["shape"])
        else:
            t = tensors[name]
        state[name] = t.to(dtype).reshape(kind["shape"]).contiguous()
    run = RunDir(run_dir)
    run.path.mkdir(parents=True, exist_ok=True)
    meta = {k: v for k, v in metadata.items() if k not in ("travel", "shard")}
    with atomic_path(run.state) as tmp:
        save_file(state, str(tmp), metadata=meta)
    run.write_config(cfg)
    generator = {k.removeprefix("generator."): v for k, v in state.items() if k.startswith("generator.")}
    step = json.loads(meta["trainer"])["step"]
    save_model(run.generator, generator, cfg.model, extra={"step": str(step)})
    return run
