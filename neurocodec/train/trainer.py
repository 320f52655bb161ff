"""The training loop: generator + discriminators, diagnostics, atomic checkpoints, exact resume, DDP.

Run directory layout:
    state.safetensors      everything needed to resume (weights, optimisers, schedulers, step, VQ usage)
    generator.safetensors  the latest generator as a model checkpoint (`neurocodec encode --model …`)
    best.safetensors       the generator with the lowest validation mel distance so far
    log.jsonl              one JSON record per log step and per evaluation
    config.json            the config the run started with
"""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path
from typing import Callable

import torch
import torch.distributed as dist
from safetensors.torch import load_file, save_file

from ..checkpoint import save_model
from ..config import Config, from_dict, to_dict
from ..errors import CheckpointError
from ..fileio import atomic_path
from ..model import Codec
from .data import CropDataset
from .diagnostics import HealthMonitor, TrainingDiverged, codebook_stats, validate
from .discriminators import Discriminator, discriminator_loss, feature_matching_loss, generator_adversarial_loss
from .losses import ComplexSTFTLoss, MultiResolutionSTFTLoss, MultiScaleMelLoss, waveform_l1

Event = Callable[[dict], None]


def _diff(old: dict, new: dict, prefix: str = "") -> list[str]:
    """Dotted keys whose values differ, as "key: old -> new"."""
    out = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            out += _diff(a, b, f"{prefix}{key}.")
        elif a != b:
            out.append(f"{prefix}{key}: {a} -> {b}")
    return out


def _same_parameters(module: torch.nn.Module, state: dict[str, torch.Tensor]) -> bool:
    """Whether `state` has exactly `module`'s tensor names and shapes."""
    own = module.state_dict()
    return own.keys() == state.keys() and all(own[k].shape == v.shape for k, v in state.items())


def load_run_config(run_dir: str | os.PathLike) -> Config:
    """The config a run started with (its `config.json`)."""
    path = Path(run_dir).expanduser() / "config.json"
    try:
        return from_dict(Config, json.loads(path.read_text()), where=str(path))
    except FileNotFoundError:
        raise CheckpointError(f"{path}: no run to resume here") from None
    except (OSError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{path}: unreadable run config ({exc})") from None


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


class Trainer:
    def __init__(self, config: Config, run_dir: str | os.PathLike, resume: bool = False,
                 on_event: Event | None = None, device: str | None = None, init: str | os.PathLike | None = None):
        """`init`: a model checkpoint (e.g. a released fp16 model) whose weights start a new run."""
        self.cfg = config
        self.run_dir = Path(run_dir).expanduser()
        self.on_event = on_event or (lambda event: None)
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        self.distributed = self.world > 1
        if device is None:
            device = "cuda" if torch.cuda.is_available() else "cpu"
        if self.distributed and not dist.is_initialized():
            dist.init_process_group("nccl" if device == "cuda" else "gloo")
        if device == "cuda" and self.distributed:
            device = f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}"
            torch.cuda.set_device(device)
        self.device = torch.device(device)
        if config.train.threads > 0:
            torch.set_num_threads(config.train.threads)
        tc, lc = config.train, config.loss
        torch.manual_seed(tc.seed)  # identical initial weights on every rank
        self.codec = Codec(config.model).to(self.device)
        self.init_record: dict | None = None  # where a new run's weights came from (`init`), for its log
        if init is not None and not resume:
            from ..checkpoint import read_model

            state, info = read_model(init)
            # A config that differs without changing any tensor (e.g. decoder.phase_reference) may start from
            # these weights; anything that changes a shape may not.
            if not _same_parameters(self.codec, state):
                raise CheckpointError(f"{init}: its model config differs from the run's")
            self.codec.load_state_dict({k: v.float() for k, v in state.items()})
            self.init_record = {"path": str(init), "weights_sha256": info.weights_sha256, "step": info.extra.get("step")}
        self.disc = Discriminator(config.discriminator).to(self.device) if self._gan_enabled else None
        self.mel_loss = MultiScaleMelLoss(config.model.sample_rate, lc.mel_windows, lc.mel_n_mels, lc.mel_fmin,
                                          lc.mel_fmax, lc.mel_filterbank).to(self.device)
        self.stft_loss = MultiResolutionSTFTLoss(lc.stft_windows)
        self.complex_loss = ComplexSTFTLoss(lc.stft_windows)
        self.opt_g = torch.optim.AdamW(self.codec.parameters(), lr=tc.lr, betas=tc.betas)
        self.sched_g = torch.optim.lr_scheduler.ExponentialLR(self.opt_g, tc.lr_decay)
        if self.disc is not None:
            self.opt_d = torch.optim.AdamW(self.disc.parameters(), lr=tc.lr, betas=tc.betas)
            self.sched_d = torch.optim.lr_scheduler.ExponentialLR(self.opt_d, tc.lr_decay)
        self.g_model = self.codec
        self.d_model = self.disc
        if self.distributed:
            from torch.nn.parallel import DistributedDataParallel as DDP

            ids = [self.device.index] if self.device.type == "cuda" else None
            self.g_model = DDP(self.codec, device_ids=ids, broadcast_buffers=False)
            if self.disc is not None:
                self.d_model = DDP(self.disc, device_ids=ids, broadcast_buffers=False)
        self.train_data = CropDataset(config.data.train, config.model.sample_rate, config.data)
        valid_sources = config.data.valid or config.data.train
        self.valid_clips = CropDataset(valid_sources, config.model.sample_rate, config.data).validation_clips(
            config.data.valid_clips, config.data.valid_segment_seconds).to(self.device)
        self.monitor = HealthMonitor(tc, config.model.quantizer.codebook_size)
        self.step = 0
        self.best_mel = math.inf
        self.config_changes: list[str] = []
        if resume:
            self._load_state()
        if self.is_main and (not resume or self.config_changes):
            # A resumed run may change its recipe (loss weights, schedule), never its tensors; config.json and
            # the log's start record show what changed and when.
            self.run_dir.mkdir(parents=True, exist_ok=True)
            (self.run_dir / "config.json").write_text(json.dumps(to_dict(config), indent=1))

    # ------------------------------------------------------------------------------------------------ helpers
    @property
    def _gan_enabled(self) -> bool:
        lc = self.cfg.loss
        return self.cfg.discriminator.enabled and (lc.adversarial > 0 or lc.feature_matching > 0)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def _emit(self, event: dict) -> None:
        if not self.is_main:
            return
        with open(self.run_dir / "log.jsonl", "a") as f:
            f.write(json.dumps(event) + "\n")
        self.on_event(event)

    # ------------------------------------------------------------------------------------------------ the step
    def train_step(self) -> dict[str, float]:
        tc, lc = self.cfg.train, self.cfg.loss
        # Per-step seeds make quantizer dropout and crops a function of the step: resume replays exactly.
        torch.manual_seed(tc.seed * 1_000_003 + self.step * 101 + self.rank)
        audio = self.train_data.batch(tc.seed, self.step, self.rank, tc.batch_size).to(self.device)
        self.codec.train()
        out = self.g_model(audio)
        recon = out.audio
        gan_on = self.disc is not None and self.step >= tc.gan_start_step
        logs: dict[str, float] = {}

        if gan_on:
            self.disc.train()
            d_loss = discriminator_loss(self.d_model(audio), self.d_model(recon.detach()))
            self.opt_d.zero_grad(set_to_none=True)
            d_loss.backward()
            logs["grad_norm_d"] = float(torch.nn.utils.clip_grad_norm_(self.disc.parameters(), tc.discriminator_grad_clip))
            self.opt_d.step()
            logs["loss_d"] = float(d_loss.detach())

        terms: dict[str, torch.Tensor] = {}
        mel = self.mel_loss(audio, recon)
        terms["mel"] = mel.log_mel
        terms["magnitude"] = mel.linear
        terms["level"] = mel.level
        if lc.waveform_l1:
            terms["waveform_l1"] = waveform_l1(audio, recon)
        if lc.stft:
            terms["stft"] = self.stft_loss(audio, recon)
        if lc.complex_stft:
            terms["complex_stft"] = self.complex_loss(audio, recon)
        terms["commitment"] = out.commitment_loss
        terms["codebook"] = out.codebook_loss
        if gan_on:
            # The discriminator is frozen here; its unwrapped module avoids a gradient all-reduce for nothing.
            self.disc.requires_grad_(False)
            fake = self.disc(recon)
            with torch.no_grad():
                real = self.disc(audio)
            self.disc.requires_grad_(True)
            terms["adversarial"] = generator_adversarial_loss(fake)
            terms["feature_matching"] = feature_matching_loss(real, fake)
        weights = {"mel": lc.mel, "magnitude": lc.magnitude, "level": lc.level, "waveform_l1": lc.waveform_l1, "stft": lc.stft,
                   "complex_stft": lc.complex_stft, "commitment": lc.commitment, "codebook": lc.codebook,
                   "adversarial": lc.adversarial, "feature_matching": lc.feature_matching}
        loss = sum(weights[k] * v for k, v in terms.items() if weights[k])
        self.opt_g.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(self.codec.parameters(), tc.grad_clip)
        finite = torch.isfinite(loss.detach()) & torch.isfinite(grad_norm)
        if self.distributed:
            flag = finite.float().to(self.device)
            dist.all_reduce(flag, op=dist.ReduceOp.MIN)
            finite = flag > 0
        if not bool(finite):
            raise TrainingDiverged(f"step {self.step}: loss or gradient is not finite (loss {float(loss.detach()):.4g})")
        self.opt_g.step()
        self.sched_g.step()
        if gan_on:
            self.sched_d.step()
        logs.update({f"loss_{k}": float(v.detach()) for k, v in terms.items()})
        logs["loss"] = float(loss.detach())
        logs["grad_norm_g"] = float(grad_norm)
        logs["lr"] = self.sched_g.get_last_lr()[0]
        return logs

    # ------------------------------------------------------------------------------------------------ evaluation
    def evaluate(self) -> dict:
        tc = self.cfg.train
        n_q = self.cfg.model.quantizer.n_q
        record = {"type": "eval", "step": self.step}
        record.update(validate(self.codec, self.valid_clips, tuple(sorted({max(1, n_q // 2), n_q}))))
        record.update(codebook_stats(self.codec.quantizer, tc.dead_code_threshold))
        generator = torch.Generator(device=self.device).manual_seed(tc.seed + self.step)
        record["reseeded_codes"] = [vq.reseed_dead_codes(tc.dead_code_threshold, generator) for vq in self.codec.quantizer.quantizers]
        if self.distributed:  # every rank must keep identical codebooks
            for vq in self.codec.quantizer.quantizers:
                dist.broadcast(vq.codebook.weight.data, src=0)
        record["alarms"] = self.monitor.check(record)
        return record

    # ------------------------------------------------------------------------------------------------ state
    def _save_state(self) -> None:
        if not self.is_main:
            return
        tensors = {f"generator.{k}": v.detach().cpu().contiguous() for k, v in self.codec.state_dict().items()}
        for i, vq in enumerate(self.codec.quantizer.quantizers):
            tensors[f"vq.{i}.usage"] = vq.usage.cpu()
            if vq.recent is not None:
                tensors[f"vq.{i}.recent"] = vq.recent.cpu().contiguous()
        opt_t, opt_meta = _flatten_optimizer("opt_g", self.opt_g.state_dict())
        tensors.update(opt_t)
        meta = {"step": self.step, "best_mel": self.best_mel, "opt_g": opt_meta,
                "sched_g": self.sched_g.state_dict(), "snr_history": self.monitor.snr_history}
        if self.disc is not None:
            tensors.update({f"discriminator.{k}": v.detach().cpu().contiguous() for k, v in self.disc.state_dict().items()})
            d_t, d_meta = _flatten_optimizer("opt_d", self.opt_d.state_dict())
            tensors.update(d_t)
            meta["opt_d"] = d_meta
            meta["sched_d"] = self.sched_d.state_dict()
        with atomic_path(self.run_dir / "state.safetensors") as tmp:
            save_file(tensors, str(tmp), metadata={"trainer": json.dumps(meta), "config": json.dumps(to_dict(self.cfg))})
        save_model(self.run_dir / "generator.safetensors", self.codec.state_dict(), self.cfg.model,
                   extra={"step": str(self.step)})

    def _load_state(self) -> None:
        path = self.run_dir / "state.safetensors"
        if not path.is_file():
            raise CheckpointError(f"{path}: nothing to resume")
        from safetensors import safe_open

        try:
            with safe_open(str(path), "pt") as f:
                metadata = f.metadata()
            tensors = load_file(str(path))
            meta = json.loads(metadata["trainer"])
            saved_cfg = from_dict(Config, json.loads(metadata["config"]))
        except Exception as exc:  # any damage to the file is one message, not a traceback
            raise CheckpointError(f"{path}: cannot resume ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})") from None
        generator = {k[10:]: v for k, v in tensors.items() if k.startswith("generator.")}
        # The model may change only where no tensor changes (a parameter-free option such as
        # decoder.phase_reference); config_changes records it like any recipe change.
        if not _same_parameters(self.codec, generator):
            raise CheckpointError(f"{path}: the run was made with a different model config")
        self.config_changes = _diff(to_dict(saved_cfg), to_dict(self.cfg))
        self.codec.load_state_dict(generator)
        for i, vq in enumerate(self.codec.quantizer.quantizers):
            vq.usage.copy_(tensors[f"vq.{i}.usage"])
            if f"vq.{i}.recent" in tensors:
                vq.recent = tensors[f"vq.{i}.recent"].to(self.device)
        self.opt_g.load_state_dict(_unflatten_optimizer("opt_g", tensors, meta["opt_g"]))
        self.sched_g.load_state_dict(meta["sched_g"])
        if self.disc is not None and "opt_d" in meta:
            self.disc.load_state_dict({k[14:]: v for k, v in tensors.items() if k.startswith("discriminator.")})
            self.opt_d.load_state_dict(_unflatten_optimizer("opt_d", tensors, meta["opt_d"]))
            self.sched_d.load_state_dict(meta["sched_d"])
        self.step = int(meta["step"])
        self.best_mel = float(meta["best_mel"])
        self.monitor.snr_history = list(meta["snr_history"])
        tc, old = self.cfg.train, saved_cfg.train
        if (tc.lr, tuple(tc.betas), tc.lr_decay) != (old.lr, tuple(old.betas), old.lr_decay):
            # The optimiser state carries the old schedule; without this a changed learning rate would be
            # recorded in config.json yet silently ignored.
            pairs = [(self.opt_g, self.sched_g)] + ([(self.opt_d, self.sched_d)] if self.disc is not None else [])
            lr = tc.lr * tc.lr_decay ** self.step
            for opt, sched in pairs:
                for group in opt.param_groups:
                    group.update(lr=lr, initial_lr=tc.lr, betas=tuple(tc.betas))
                sched.base_lrs = [tc.lr] * len(opt.param_groups)
                sched.gamma = tc.lr_decay
                sched._last_lr = [lr] * len(opt.param_groups)

    # ------------------------------------------------------------------------------------------------ loop
    def run(self, steps: int | None = None, max_seconds: float | None = None) -> dict:
        """Train until `steps` (default: the config's) or `max_seconds` of wall time; return the last evaluation.

        A time-limited run evaluates and checkpoints at the step where its time ran out, so candidates trained for
        equal CPU time can be compared.
        """
        tc = self.cfg.train
        target = steps if steps is not None else tc.steps
        deadline = time.monotonic() + max_seconds if max_seconds else math.inf
        last_ckpt = time.monotonic()
        last_eval: dict = {}
        t0, s0 = time.monotonic(), self.step
        self._emit({"type": "start", "step": self.step, "target": target, "world_size": self.world,
                    "config_changes": self.config_changes, "init": self.init_record,
                    "train_seconds_of_audio": round(self.train_data.total_seconds, 1)})
        try:
            while self.step < target:
                logs = self.train_step()
                self.step += 1
                out_of_time = time.monotonic() > deadline
                if self.distributed and deadline != math.inf:
                    # Ranks must agree on the last step, or one would wait forever in the next all-reduce.
                    flag = torch.tensor(float(out_of_time), device=self.device)
                    dist.all_reduce(flag, op=dist.ReduceOp.MAX)
                    out_of_time = bool(flag > 0)
                if out_of_time:
                    target = self.step
                if self.step % tc.log_every == 0 or self.step == target:
                    elapsed = time.monotonic() - t0
                    rate = (self.step - s0) / max(elapsed, 1e-9)
                    self._emit({"type": "step", "step": self.step, "target": target, "time": round(time.time(), 1),
                                "steps_per_s": round(rate, 4),
                                "audio_s_per_s": round(rate * tc.batch_size * self.world * self.cfg.data.segment_seconds, 3),
                                **{k: round(v, 6) for k, v in logs.items()}})
                if self.step % tc.eval_every == 0 or self.step == target:
                    if self.is_main:
                        last_eval = self.evaluate()
                        self._emit(last_eval)
                        mel = last_eval[f"mel_distance@{self.cfg.model.quantizer.n_q}"]
                        if mel < self.best_mel:
                            self.best_mel = mel
                            save_model(self.run_dir / "best.safetensors", self.codec.state_dict(), self.cfg.model,
                                       extra={"step": str(self.step)})
                    elif self.distributed:
                        for vq in self.codec.quantizer.quantizers:
                            dist.broadcast(vq.codebook.weight.data, src=0)
                due = self.step % tc.checkpoint_every == 0 or time.monotonic() - last_ckpt > 60 * tc.checkpoint_minutes
                if due or self.step == target:
                    self._save_state()
                    last_ckpt = time.monotonic()
        except KeyboardInterrupt:
            self._save_state()  # the step in progress was not applied, so this state is consistent
            self._emit({"type": "stopped", "step": self.step, "reason": "interrupted"})
            raise
        except TrainingDiverged as exc:
            # The last checkpoint on disk is the last good one: do not overwrite it with NaN weights.
            self._emit({"type": "stopped", "step": self.step, "reason": str(exc)})
            raise
        self._emit({"type": "done", "step": self.step})
        return last_eval
