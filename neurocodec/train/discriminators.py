"""Discriminators (DAC/HiFi-GAN style) and the least-squares GAN and feature-matching losses.

Each sub-discriminator returns its list of feature maps; the last one is the real/fake score map.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import weight_norm

from ..config import DiscriminatorConfig
from ..spectral import stft


def _wn2d(*args, **kwargs) -> nn.Module:
    return weight_norm(nn.Conv2d(*args, **kwargs))


class PeriodDiscriminator(nn.Module):
    """Folds audio `[B, 1, T]` into `[B, 1, T/p, p]` and applies 2-D convs along time: sees periodic structure."""

    def __init__(self, period: int, channels: tuple[int, ...]):
        super().__init__()
        self.period = period
        chans = (1, *channels)
        self.convs = nn.ModuleList(
            _wn2d(chans[i], chans[i + 1], (5, 1), (3, 1) if i < len(channels) - 1 else (1, 1), padding=(2, 0))
            for i in range(len(channels))
        )
        self.post = _wn2d(chans[-1], 1, (3, 1), padding=(1, 0))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = F.pad(x, (0, (-x.shape[-1]) % self.period), mode="reflect")
        x = x.reshape(x.shape[0], 1, -1, self.period)
        feats = []
        for conv in self.convs:
            x = F.leaky_relu(conv(x), 0.1)
            feats.append(x)
        feats.append(self.post(x))
        return feats


class BandSTFTDiscriminator(nn.Module):
    """Complex STFT (real, imag as channels) split into frequency bands, each with its own conv stack (DAC MRD)."""

    def __init__(self, window_length: int, channels: int, bands: tuple[tuple[float, float], ...]):
        super().__init__()
        self.window_length = window_length
        n_bins = window_length // 2 + 1
        self.bands = [(int(lo * n_bins), int(hi * n_bins)) for lo, hi in bands]
        ch = channels

        def stack() -> nn.ModuleList:
            return nn.ModuleList([
                _wn2d(2, ch, (3, 9), (1, 1), padding=(1, 4)),
                _wn2d(ch, ch, (3, 9), (1, 2), padding=(1, 4)),
                _wn2d(ch, ch, (3, 9), (1, 2), padding=(1, 4)),
                _wn2d(ch, ch, (3, 9), (1, 2), padding=(1, 4)),
                _wn2d(ch, ch, (3, 3), (1, 1), padding=(1, 1)),
            ])

        self.band_convs = nn.ModuleList(stack() for _ in self.bands)
        self.post = _wn2d(ch, 1, (3, 3), padding=(1, 1))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        spec = stft(x[:, 0], self.window_length)  # [B, F, frames]
        spec = torch.view_as_real(spec).permute(0, 3, 2, 1)  # [B, 2, frames, F]
        feats, outs = [], []
        for (lo, hi), convs in zip(self.bands, self.band_convs):
            h = spec[..., lo:hi]
            for conv in convs:
                h = F.leaky_relu(conv(h), 0.1)
                feats.append(h)
            outs.append(h)
        h = torch.cat(outs, dim=-1)
        feats.append(self.post(h))
        return feats


class Discriminator(nn.Module):
    """Multi-period + multi-band multi-resolution complex-STFT discriminators."""

    def __init__(self, cfg: DiscriminatorConfig):
        super().__init__()
        self.discriminators = nn.ModuleList(
            [PeriodDiscriminator(p, cfg.mpd_channels) for p in cfg.periods]
            + [BandSTFTDiscriminator(w, cfg.stft_channels, cfg.bands) for w in cfg.stft_windows]
        )

    def forward(self, audio: torch.Tensor) -> list[list[torch.Tensor]]:
        """audio `[B, 1, T]` → per sub-discriminator, its feature maps (last = score map)."""
        # DAC normalises the discriminator's input (zero mean, peak 0.8): it judges texture, not level; the
        # level is the reconstruction losses' job.
        audio = audio - audio.mean(dim=-1, keepdim=True)
        audio = 0.8 * audio / (audio.abs().amax(dim=-1, keepdim=True) + 1e-9)
        return [d(audio) for d in self.discriminators]


def discriminator_loss(real: list[list[torch.Tensor]], fake: list[list[torch.Tensor]]) -> torch.Tensor:
    """LSGAN: real scores → 1, fake scores → 0."""
    loss = real[0][-1].new_zeros((), dtype=torch.float32)
    for r, f in zip(real, fake):
        loss = loss + (1 - r[-1].float()).pow(2).mean() + f[-1].float().pow(2).mean()
    return loss


def generator_adversarial_loss(fake: list[list[torch.Tensor]]) -> torch.Tensor:
    loss = fake[0][-1].new_zeros((), dtype=torch.float32)
    for f in fake:
        loss = loss + (1 - f[-1].float()).pow(2).mean()
    return loss


def feature_matching_loss(real: list[list[torch.Tensor]], fake: list[list[torch.Tensor]]) -> torch.Tensor:
    """L1 between the discriminator's feature maps of real and generated audio (all but the score maps)."""
    loss = real[0][-1].new_zeros((), dtype=torch.float32)
    for r, f in zip(real, fake):
        for fr, ff in zip(r[:-1], f[:-1]):
            loss = loss + F.l1_loss(ff.float(), fr.detach().float())
    return loss
