"""The training loop: data, the step, evaluation, checkpoints, time limits and DDP.

The parts: `rundir.py` (the run folder's layout), `state.py` (the resumable state file), `step.py` (one update and
its loss terms), `diagnostics.py` (validation and alarms). This module joins them.
"""

from __future__ import annotations

import math
import os
import time
from typing import Callable

import torch
import torch.distributed as dist

from ..checkpoint import read_model, save_model
from ..config import Config
from ..errors import CheckpointError
from ..metrics import at_n_q
from ..model import Codec
from .data import CropDataset, ResidentCrops
from .diagnostics import HealthMonitor, TrainingDiverged, codebook_stats, level_sweep, validate
from .discriminators import Discriminator
from .rundir import RunDir
from .state import Progress, load_state, same_parameters, save_state
from .step import TrainStep

Event = Callable[[dict], None]


class Trainer:
    def __init__(self, config: Config, run_dir: str | os.PathLike | RunDir, resume: bool = False,
                 on_event: Event | None = None, device: str | None = None, init: str | os.PathLike | None = None):
        """`init`: a model checkpoint (e.g. a released fp16 model) whose weights start a new run."""
        self.cfg = config
        self.run_dir = run_dir if isinstance(run_dir, RunDir) else RunDir(run_dir)
        self.on_event = on_event or (lambda event: None)
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        self.distributed = self.world > 1
        if device is None:
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self.owns_process_group = self.distributed and not dist.is_initialized()
        if self.owns_process_group:
            dist.init_process_group("nccl" if device == "cuda" else "gloo")
        if device == "cuda" and self.distributed:
            device = f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}"
            torch.cuda.set_device(device)
        self.device = torch.device(device)
        if config.train.threads > 0:
            torch.set_num_threads(config.train.threads)
        tc = config.train
        torch.manual_seed(tc.seed)  # identical initial weights on every rank
        self.codec = Codec(config.model).to(self.device)
        self.init_record: dict | None = None  # where a new run's weights came from (`init`), for its log
        if init is not None and not resume:
            state, info = read_model(init)
            # A config that differs without changing any tensor (e.g. decoder.phase_reference) may start from
            # these weights; anything that changes a shape may not.
            if not same_parameters(self.codec, state):
                raise CheckpointError(f"{init}: its model config differs from the run's")
            self.codec.load_state_dict({k: v.float() for k, v in state.items()})
            self.init_record = {"path": str(init), "weights_sha256": info.weights_sha256, "step": info.extra.get("step")}
        self.disc = Discriminator(config.discriminator).to(self.device) if self._gan_enabled else None
        g_model, d_model = self.codec, self.disc
        if self.distributed:
            from torch.nn.parallel import DistributedDataParallel as DDP

            ids = [self.device.index] if self.device.type == "cuda" else None
            g_model = DDP(self.codec, device_ids=ids, broadcast_buffers=False)
            if self.disc is not None:
                d_model = DDP(self.disc, device_ids=ids, broadcast_buffers=False)
        self.update = TrainStep(config, self.codec, self.disc, self.device, g_model, d_model, self.distributed)
        self.train_data = CropDataset(config.data.train, config.model.sample_rate, config.data)
        # Where batches come from: crops cut on the host, or (data.resident) on the training device.
        self.batches = ResidentCrops(self.train_data, self.device) if config.data.resident else self.train_data
        valid_sources = config.data.valid or config.data.train
        self.valid_clips = CropDataset(valid_sources, config.model.sample_rate, config.data).validation_clips(
            config.data.valid_clips, config.data.valid_segment_seconds).to(self.device)
        self.monitor = HealthMonitor(tc, config.model.quantizer.codebook_size)
        self.step = 0
        self.best_mel = math.inf
        self.config_changes: list[str] = []
        if resume:
            progress, self.config_changes = load_state(self.run_dir.state, self.update.parts, config)
            self.step, self.best_mel = progress.step, progress.best_mel
            self.monitor.snr_history = progress.snr_history
        if self.is_main and (not resume or self.config_changes):
            # A resumed run may change its recipe (loss weights, schedule), never its tensors; config.json and
            # the log's start record show what changed and when.
            self.run_dir.write_config(config)

    def close(self) -> None:
        """Tear down the process group this trainer started (DDP): a rank that exits with gloo's threads still
        running aborts ("terminate called without an active exception") and takes the launcher down with it."""
        if self.owns_process_group and dist.is_initialized():
            dist.destroy_process_group()
            self.owns_process_group = False

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
        self.run_dir.append_log(event)
        self.on_event(event)

    def train_step(self, sync: bool = True, profile: dict[str, float] | None = None) -> dict[str, float] | None:
        """One update on this step's batch; returns the logged figures (None at a step that is not synchronised,
        see `TrainStep`). `profile`: seconds per phase are added to it, data included."""
        tc = self.cfg.train
        # Per-step seeds make quantizer dropout and crops a function of the step: resume replays exactly.
        torch.manual_seed(tc.seed * 1_000_003 + self.step * 101 + self.rank)
        t0 = time.perf_counter()
        audio = self.batches.batch(tc.seed, self.step, self.rank, tc.batch_size).to(self.device, non_blocking=True)
        if profile is not None:
            if self.device.type == "cuda":
                torch.cuda.synchronize(self.device)
            profile["data"] = profile.get("data", 0.0) + time.perf_counter() - t0
        gan_on = self.disc is not None and self.step >= tc.gan_start_step
        return self.update(audio, self.step, gan_on, sync=sync, profile=profile)

    # ------------------------------------------------------------------------------------------------ evaluation
    def evaluate(self) -> dict:
        tc = self.cfg.train
        n_q = self.cfg.model.quantizer.n_q
        record = {"type": "eval", "step": self.step}
        record.update(validate(self.codec, self.valid_clips, tuple(sorted({max(1, n_q // 2), n_q}))))
        if tc.level_sweep_db:
            record["level_sweep"] = level_sweep(self.codec, self.valid_clips, tc.level_sweep_db)
        record.update(codebook_stats(self.codec.quantizer, tc.dead_code_threshold))
        generator = torch.Generator(device=self.device).manual_seed(tc.seed + self.step)
        record["reseeded_codes"] = [vq.reseed_dead_codes(tc.dead_code_threshold, generator, replace=tc.reseed_dead_codes)
                                    for vq in self.codec.quantizer.quantizers]
        if self.distributed:  # every rank must keep identical codebooks
            for vq in self.codec.quantizer.quantizers:
                dist.broadcast(vq.codebook.weight.data, src=0)
        record["alarms"] = self.monitor.check(record)
        return record

    def _save_state(self) -> None:
        if not self.is_main:
            return
        self.update.check_finite(collective=False)  # never save weights a NaN step has touched
        save_state(self.run_dir.state, self.update.parts, Progress(self.step, self.best_mel, self.monitor.snr_history),
                   self.cfg)
        save_model(self.run_dir.generator, self.codec.state_dict(), self.cfg.model, extra={"step": str(self.step)})

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
                    "loss_weights": self.cfg.loss.weights(),
                    "train_seconds_of_audio": round(self.train_data.total_seconds, 1)})
        try:
            while self.step < target:
                logs = self.train_step(sync=(self.step + 1) % tc.sync_every == 0)
                self.step += 1
                out_of_time = time.monotonic() > deadline
                if self.distributed and deadline != math.inf:
                    # Ranks must agree on the last step, or one would wait forever in the next all-reduce; they
                    # agree at synchronised steps only (the fast path copies nothing to the host in between).
                    if self.step % tc.sync_every:
                        out_of_time = False
                    else:
                        flag = torch.tensor(float(out_of_time), device=self.device)
                        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
                        out_of_time = bool(flag > 0)
                if out_of_time:
                    target = self.step
                if logs is not None and (self.step % tc.log_every == 0 or self.step == target):
                    elapsed = time.monotonic() - t0
                    rate = (self.step - s0) / max(elapsed, 1e-9)
                    record = {"type": "step", "step": self.step, "target": target, "time": round(time.time(), 1),
                              "steps_per_s": round(rate, 4),
                              "audio_s_per_s": round(rate * tc.batch_size * self.world * self.cfg.data.segment_seconds, 3),
                              **{k: round(v, 6) for k, v in logs.items()}}
                    if self.update.notes:
                        record["notes"] = list(self.update.notes)  # e.g. torch.compile fell back to eager
                    self._emit(record)
                if self.step % tc.eval_every == 0 or self.step == target:
                    self.update.check_finite()  # every rank, same step: a collective under DDP
                    if self.is_main:
                        last_eval = self.evaluate()
                        self._emit(last_eval)
                        mel = last_eval[at_n_q("mel_distance", self.cfg.model.quantizer.n_q)]
                        if mel < self.best_mel:
                            self.best_mel = mel
                            save_model(self.run_dir.best, self.codec.state_dict(), self.cfg.model,
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
