"""One training step: discriminator update, then generator update on the weighted loss terms of `LOSS_TERMS`.

The step owns the loss modules, the optimisers and their schedules; the loop (`trainer.py`) owns data, evaluation,
checkpoints and time. Every term is computed under its `LOSS_TERMS` name and logged unweighted as "loss_<name>".

The fast path (`train.precision = "bf16"`, `train.compile`, `train.sync_every`) changes how, not what: the
networks run under bf16 autocast while the spectra, the quantizer and every loss stay float32; compiled modules
fall back to eager if compiling fails; and between synchronised steps nothing is copied to the host: the NaN check
accumulates on the device and is read at the next synchronised step (or before any evaluation or checkpoint).
"""

from __future__ import annotations

import contextlib
import time

import torch
import torch.distributed as dist

from ..config import Config
from ..level import LevelCoder
from .diagnostics import TrainingDiverged, normalize
from .discriminators import discriminator_loss, feature_matching_loss, generator_adversarial_loss
from .losses import ComplexSTFTLoss, MultiResolutionSTFTLoss, MultiScaleMelLoss, Spectra, waveform_l1
from .state import Parts


class _Compiled:
    """`torch.compile(module)`, or the module itself once compiling or a compiled call fails (noted in `failed`)."""

    def __init__(self, module: torch.nn.Module, name: str, notes: list[str]):
        self.module, self.name, self.notes = module, name, notes
        try:
            self.compiled = torch.compile(module)
        except Exception as exc:  # noqa: BLE001 - any failure means: run eager
            self.compiled = None
            notes.append(f"{name}: torch.compile unavailable ({type(exc).__name__}: {str(exc)[:120]}); eager")

    def __call__(self, *args):
        if self.compiled is not None:
            try:
                return self.compiled(*args)
            except Exception as exc:  # noqa: BLE001
                self.compiled = None
                self.notes.append(f"{self.name}: compiled call failed ({type(exc).__name__}: {str(exc)[:120]}); "
                                  "eager from here")
        return self.module(*args)


class TrainStep:
    """`codec`/`disc` are the modules; `g_model`/`d_model` the same wrapped for DDP (or the modules themselves)."""

    def __init__(self, cfg: Config, codec: torch.nn.Module, disc: torch.nn.Module | None, device: torch.device,
                 g_model: torch.nn.Module | None = None, d_model: torch.nn.Module | None = None,
                 distributed: bool = False):
        tc, lc = cfg.train, cfg.loss
        self.cfg = cfg
        self.codec, self.disc = codec, disc
        self.device = device
        self.distributed = distributed
        self.notes: list[str] = []  # what the fast path had to give up (compile failures), for the log
        g_model, d_model = g_model or codec, d_model or disc
        if tc.compile:
            g_model = _Compiled(g_model, "generator", self.notes)
            d_model = _Compiled(d_model, "discriminators", self.notes) if d_model is not None else None
        self.g_model, self.d_model = g_model, d_model
        # The generator's step runs the discriminators frozen: unwrapped from DDP (no gradient all-reduce for
        # nothing), compiled like the rest when asked.
        self.d_frozen = disc
        if disc is not None and tc.compile:
            self.d_frozen = d_model if not distributed else _Compiled(disc, "discriminators (frozen)", self.notes)
        self.bf16 = tc.precision == "bf16"
        # The model trains on what encoding gives it: audio normalised by its level envelope.
        self.level = LevelCoder.for_model(cfg.model.sample_rate, cfg.model.hop_length)
        self.weights = lc.weights()
        codec.quantizer.rate_temperature = lc.rate_temperature if lc.rate else None
        self.mel_loss = MultiScaleMelLoss(cfg.model.sample_rate, lc.mel_windows, lc.mel_n_mels, lc.mel_fmin,
                                          lc.mel_fmax, lc.mel_filterbank).to(device)
        self.stft_loss = MultiResolutionSTFTLoss(lc.stft_windows)
        self.complex_loss = ComplexSTFTLoss(lc.stft_windows)
        # Fused AdamW: one kernel over every parameter instead of about ten per parameter (the single-tensor
        # path, the CPU's default, was 40-45 % of a step's operator calls: benchmarks/train_speed.py); the same update.
        self.opt_g = torch.optim.AdamW(codec.parameters(), lr=tc.lr, betas=tc.betas, fused=True)
        self.sched_g = torch.optim.lr_scheduler.ExponentialLR(self.opt_g, tc.lr_decay)
        self.opt_d = self.sched_d = None
        if disc is not None:
            self.opt_d = torch.optim.AdamW(disc.parameters(), lr=tc.lr, betas=tc.betas, fused=True)
            self.sched_d = torch.optim.lr_scheduler.ExponentialLR(self.opt_d, tc.lr_decay)
        self.bad_since_sync: torch.Tensor | None = None  # device flag: a non-finite loss or gradient since
        self.bad_step: torch.Tensor | None = None  # the last check, and the first step where it happened

    @property
    def parts(self) -> Parts:
        return Parts(self.codec, self.opt_g, self.sched_g, self.disc, self.opt_d, self.sched_d)

    @contextlib.contextmanager
    def _warmup(self, opt: torch.optim.Optimizer, step: int):
        """During `train.warmup_steps`, the optimiser steps with its scheduled rate scaled by (step + 1) / warmup;
        the schedule itself is left as it is."""
        warmup = self.cfg.train.warmup_steps
        if step >= warmup:
            yield
            return
        scheduled = [group["lr"] for group in opt.param_groups]
        for group in opt.param_groups:
            group["lr"] = group["lr"] * (step + 1) / warmup
        try:
            yield
        finally:
            for group, lr in zip(opt.param_groups, scheduled):
                group["lr"] = lr

    def _autocast(self):
        return torch.autocast(self.device.type, dtype=torch.bfloat16) if self.bf16 else contextlib.nullcontext()

    def terms(self, audio: torch.Tensor, out, gan_on: bool) -> dict[str, torch.Tensor]:
        """The generator's loss terms with a non-zero weight, by `LOSS_TERMS` name. audio, out.audio `[B, 1, T]`;
        the spectral terms in float32."""
        w, recon = self.weights, out.audio.float()
        terms: dict[str, torch.Tensor] = {}
        spectra = Spectra(audio.flatten(0, 1), recon.flatten(0, 1))  # each window's STFTs once, for every loss
        mel = self.mel_loss(audio, recon, spectra)
        terms["mel"], terms["magnitude"], terms["level"] = mel.log_mel, mel.linear, mel.level
        if w["waveform_l1"]:
            terms["waveform_l1"] = waveform_l1(audio, recon)
        if w["stft"]:
            terms["stft"] = self.stft_loss(audio, recon, spectra)
        if w["complex_stft"]:
            terms["complex_stft"] = self.complex_loss(audio, recon, spectra)
        terms["commitment"] = out.commitment_loss
        terms["codebook"] = out.codebook_loss
        if w["rate"]:
            terms["rate"] = out.rate
        if gan_on:
            # The discriminator is frozen here; its unwrapped module avoids a gradient all-reduce for nothing.
            self.disc.requires_grad_(False)
            with self._autocast():
                fake = self.d_frozen(out.audio)
                with torch.no_grad():
                    real = self.d_frozen(audio)
            self.disc.requires_grad_(True)
            terms["adversarial"] = generator_adversarial_loss(fake)
            terms["feature_matching"] = feature_matching_loss(real, fake)
        return terms

    def __call__(self, audio: torch.Tensor, step: int, gan_on: bool, sync: bool = True,
                 profile: dict[str, float] | None = None) -> dict[str, float] | None:
        """Update on one batch `[B, 1, T]`. With `sync`, returns the logged figures (and raises `TrainingDiverged`
        if any step since the last sync had a NaN/inf loss or gradient); without, returns None and copies
        nothing to the host. `profile`: seconds per phase are added to it (synchronising after each phase)."""
        tc = self.cfg.train
        clock = _Clock(profile, self.device)
        audio, _ = normalize(self.level, audio)
        self.codec.train()
        with self._autocast():
            out = self.g_model(audio)
        clock("generator forward")
        logs: dict[str, torch.Tensor | float] = {}
        if gan_on:
            self.disc.train()
            # Real and generated audio in one call: one launch per layer, and one compiled graph.
            with self._autocast():
                both = self.d_model(torch.cat([audio, out.audio.detach()]))
            n = audio.shape[0]
            d_loss = discriminator_loss([[f[:n] for f in d] for d in both], [[f[n:] for f in d] for d in both])
            self.opt_d.zero_grad(set_to_none=True)
            d_loss.backward()
            logs["grad_norm_d"] = torch.nn.utils.clip_grad_norm_(self.disc.parameters(), tc.discriminator_grad_clip)
            with self._warmup(self.opt_d, step):
                self.opt_d.step()
            logs["loss_d"] = d_loss.detach()
            clock("discriminators (forward, backward, step)")

        terms = self.terms(audio, out, gan_on)
        loss = sum(self.weights[k] * v for k, v in terms.items() if self.weights[k])
        clock("generator losses")
        self.opt_g.zero_grad(set_to_none=True)
        loss.backward()
        clock("generator backward")
        grad_norm = torch.nn.utils.clip_grad_norm_(self.codec.parameters(), tc.grad_clip)
        bad = ~(torch.isfinite(loss.detach()) & torch.isfinite(grad_norm))
        if self.bad_since_sync is None:
            self.bad_since_sync, self.bad_step = bad, torch.full_like(grad_norm, float(step))
        else:
            self.bad_step = torch.where(self.bad_since_sync, self.bad_step, torch.full_like(grad_norm, float(step)))
            self.bad_since_sync = self.bad_since_sync | bad
        if sync:
            self.check_finite(loss)
        with self._warmup(self.opt_g, step):
            self.opt_g.step()
        self.sched_g.step()
        if gan_on:
            self.sched_d.step()
        clock("optimiser steps")
        if not sync:
            return None
        logs.update({f"loss_{k}": v.detach() for k, v in terms.items()})
        logs["loss"] = loss.detach()
        logs["grad_norm_g"] = grad_norm
        # One copy to the host, at synchronised steps only.
        values = dict(zip(logs, torch.stack([v.float().reshape(()) for v in logs.values()]).tolist()))
        values["lr"] = self.sched_g.get_last_lr()[0]
        return values

    def check_finite(self, loss: torch.Tensor | None = None, collective: bool = True) -> None:
        """Read the device's NaN flag (a host synchronisation); raise `TrainingDiverged` if it is set.

        Under DDP the flags of all ranks are combined (every rank must call this at the same step), so that all
        stop together; `collective=False` reads this rank's flag alone (before a save only the main rank makes)."""
        if self.bad_since_sync is None:
            return
        flag = self.bad_since_sync.float()
        if self.distributed and collective:
            dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        bad, first = bool(flag > 0), int(self.bad_step)
        self.bad_since_sync = self.bad_step = None
        if bad:
            what = f" (loss {float(loss.detach()):.4g})" if loss is not None else ""
            raise TrainingDiverged(f"step {first}: loss or gradient is not finite{what}")


class _Clock:
    """Adds the time since the last mark to `profile[phase]`, synchronising the device first (profiling only)."""

    def __init__(self, profile: dict[str, float] | None, device: torch.device):
        self.profile, self.device = profile, device
        self.t = time.perf_counter() if profile is not None else 0.0

    def __call__(self, phase: str) -> None:
        if self.profile is None:
            return
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        now = time.perf_counter()
        self.profile[phase] = self.profile.get(phase, 0.0) + now - self.t
        self.t = now
