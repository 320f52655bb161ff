"""One training step: discriminator update, then generator update on the weighted loss terms of `LOSS_TERMS`.

The step owns the loss modules, the optimisers and their schedules; the loop (`trainer.py`) owns data, evaluation,
checkpoints and time. Every term is computed under its `LOSS_TERMS` name and logged unweighted as "loss_<name>".
"""

from __future__ import annotations

import torch
import torch.distributed as dist

from ..config import Config
from .diagnostics import TrainingDiverged
from .discriminators import discriminator_loss, feature_matching_loss, generator_adversarial_loss
from .losses import ComplexSTFTLoss, MultiResolutionSTFTLoss, MultiScaleMelLoss, waveform_l1
from .state import Parts


class TrainStep:
    """`codec`/`disc` are the modules; `g_model`/`d_model` the same wrapped for DDP (or the modules themselves)."""

    def __init__(self, cfg: Config, codec: torch.nn.Module, disc: torch.nn.Module | None, device: torch.device,
                 g_model: torch.nn.Module | None = None, d_model: torch.nn.Module | None = None,
                 distributed: bool = False):
        tc, lc = cfg.train, cfg.loss
        self.cfg = cfg
        self.codec, self.disc = codec, disc
        self.g_model, self.d_model = g_model or codec, d_model or disc
        self.device = device
        self.distributed = distributed
        self.weights = lc.weights()
        self.mel_loss = MultiScaleMelLoss(cfg.model.sample_rate, lc.mel_windows, lc.mel_n_mels, lc.mel_fmin,
                                          lc.mel_fmax, lc.mel_filterbank).to(device)
        self.stft_loss = MultiResolutionSTFTLoss(lc.stft_windows)
        self.complex_loss = ComplexSTFTLoss(lc.stft_windows)
        self.opt_g = torch.optim.AdamW(codec.parameters(), lr=tc.lr, betas=tc.betas)
        self.sched_g = torch.optim.lr_scheduler.ExponentialLR(self.opt_g, tc.lr_decay)
        self.opt_d = self.sched_d = None
        if disc is not None:
            self.opt_d = torch.optim.AdamW(disc.parameters(), lr=tc.lr, betas=tc.betas)
            self.sched_d = torch.optim.lr_scheduler.ExponentialLR(self.opt_d, tc.lr_decay)

    @property
    def parts(self) -> Parts:
        return Parts(self.codec, self.opt_g, self.sched_g, self.disc, self.opt_d, self.sched_d)

    def terms(self, audio: torch.Tensor, out, gan_on: bool) -> dict[str, torch.Tensor]:
        """The generator's loss terms with a non-zero weight, by `LOSS_TERMS` name. audio, out.audio `[B, 1, T]`."""
        w, recon = self.weights, out.audio
        terms: dict[str, torch.Tensor] = {}
        mel = self.mel_loss(audio, recon)
        terms["mel"], terms["magnitude"], terms["level"] = mel.log_mel, mel.linear, mel.level
        if w["waveform_l1"]:
            terms["waveform_l1"] = waveform_l1(audio, recon)
        if w["stft"]:
            terms["stft"] = self.stft_loss(audio, recon)
        if w["complex_stft"]:
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
        return terms

    def __call__(self, audio: torch.Tensor, step: int, gan_on: bool) -> dict[str, float]:
        """Update on one batch `[B, 1, T]`; returns the logged figures. Raises `TrainingDiverged` on NaN/inf."""
        tc = self.cfg.train
        self.codec.train()
        out = self.g_model(audio)
        logs: dict[str, float] = {}
        if gan_on:
            self.disc.train()
            d_loss = discriminator_loss(self.d_model(audio), self.d_model(out.audio.detach()))
            self.opt_d.zero_grad(set_to_none=True)
            d_loss.backward()
            logs["grad_norm_d"] = float(torch.nn.utils.clip_grad_norm_(self.disc.parameters(), tc.discriminator_grad_clip))
            self.opt_d.step()
            logs["loss_d"] = float(d_loss.detach())

        terms = self.terms(audio, out, gan_on)
        loss = sum(self.weights[k] * v for k, v in terms.items() if self.weights[k])
        self.opt_g.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(self.codec.parameters(), tc.grad_clip)
        finite = torch.isfinite(loss.detach()) & torch.isfinite(grad_norm)
        if self.distributed:
            flag = finite.float().to(self.device)
            dist.all_reduce(flag, op=dist.ReduceOp.MIN)
            finite = flag > 0
        if not bool(finite):
            raise TrainingDiverged(f"step {step}: loss or gradient is not finite (loss {float(loss.detach()):.4g})")
        self.opt_g.step()
        self.sched_g.step()
        if gan_on:
            self.sched_d.step()
        logs.update({f"loss_{k}": float(v.detach()) for k, v in terms.items()})
        logs["loss"] = float(loss.detach())
        logs["grad_norm_g"] = float(grad_norm)
        logs["lr"] = self.sched_g.get_last_lr()[0]
        return logs
