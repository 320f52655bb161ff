"""Encoders: audio `[B, 1, T]` (T a multiple of `hop_length`) → latent `[B, latent_dim, T / hop_length]`.

Each encoder reports `context_frames`: how many frames of its input on either side can influence a frame of its
output. Windowed inference pads every compute window with that much real context, which makes windowed output equal to
one-pass output (see `neurocodec.windows`).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ..config import ConvEncoderConfig, STFTEncoderConfig
from .layers import ConvNeXtBlock, ResidualUnit, Snake1d, WNConv1d


class EncoderBlock(nn.Module):
    """Three residual units at `dim // 2` channels, then a strided conv to `dim` channels."""

    def __init__(self, dim: int, stride: int):
        super().__init__()
        self.block = nn.Sequential(
            ResidualUnit(dim // 2, dilation=1),
            ResidualUnit(dim // 2, dilation=3),
            ResidualUnit(dim // 2, dilation=9),
            Snake1d(dim // 2),
            WNConv1d(dim // 2, dim, kernel_size=2 * stride, stride=stride, padding=math.ceil(stride / 2)),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block(x)


class ConvEncoder(nn.Module):
    """DAC-style strided convolutional encoder."""

    def __init__(self, cfg: ConvEncoderConfig, hop_length: int, latent_dim: int):
        super().__init__()
        d = cfg.channels
        layers: list[nn.Module] = [WNConv1d(1, d, kernel_size=7, padding=3)]
        reach = 3.0  # one-sided receptive field in input samples
        rate = 1
        for stride in cfg.strides:
            d *= 2
            layers.append(EncoderBlock(d, stride))
            reach += 3 * (1 + 3 + 9) * rate + 2 * stride * rate
            rate *= stride
        layers += [Snake1d(d), WNConv1d(d, latent_dim, kernel_size=3, padding=1)]
        reach += rate
        self.block = nn.Sequential(*layers)
        self.hop_length = hop_length
        self.context_frames = math.ceil(reach / hop_length) + 1

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        return self.block(audio)


class STFTEncoder(nn.Module):
    """STFT features → ConvNeXt at the frame rate.

    Features per bin: log magnitude and the power-law compressed complex spectrum (real, imaginary), so the
    encoder sees phase as well as magnitude. Frames are aligned so that frame f is centred on sample
    `f * hop + hop / 2`, which gives exactly `T / hop` frames and the same alignment as the conv encoder.
    """

    def __init__(self, cfg: STFTEncoderConfig, hop_length: int, latent_dim: int):
        super().__init__()
        self.n_fft = cfg.n_fft
        self.hop_length = hop_length
        self.causal = cfg.causal
        # Centred: frame f's window is centred on f · hop + hop / 2; causal: it ends at (f + 1) · hop.
        side = (cfg.n_fft - hop_length) // 2
        self.pad = (cfg.n_fft - hop_length, 0) if cfg.causal else (side, side)
        self.register_buffer("window", torch.hann_window(cfg.n_fft), persistent=False)
        n_bins = cfg.n_fft // 2 + 1
        self.embed_pad = (2, 0) if cfg.causal else (1, 1)
        self.embed = nn.Conv1d(3 * n_bins, cfg.dim, kernel_size=3)
        self.norm = nn.LayerNorm(cfg.dim, eps=1e-6)
        self.blocks = nn.ModuleList(
            ConvNeXtBlock(cfg.dim, 3 * cfg.dim, layer_scale=1 / cfg.n_blocks, causal=cfg.causal)
            for _ in range(cfg.n_blocks)
        )
        self.final_norm = nn.LayerNorm(cfg.dim, eps=1e-6)
        self.proj = nn.Conv1d(cfg.dim, latent_dim, kernel_size=1)
        # A causal encoder's reach is all on the left, twice as far (windowed inference gives both sides as much).
        one_side = math.ceil(cfg.n_fft / hop_length) + 1 + 3 * cfg.n_blocks + 1
        self.context_frames = 2 * one_side if cfg.causal else one_side

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        # The features in float64, cast to float32 at the end: float32 FFT rounding is noise of about 1e-7 of the
        # frame's energy, which the log magnitude of an empty band (|X| near 1e-5) turns into differences of
        # 0.1 between FFT implementations; in float64 every implementation agrees (the light runtime's NumPy too).
        x = nn.functional.pad(audio[:, 0].double(), self.pad)
        spec = torch.stft(
            x, self.n_fft, self.hop_length, window=self.window.double(), center=False, return_complex=True
        )  # [B, n_bins, frames]
        mag = spec.abs().clamp_min(1e-5)
        compressed = spec * mag.pow(-0.7)  # |X|^0.3 with the phase of X
        feats = torch.cat([mag.log(), compressed.real, compressed.imag], dim=1).to(audio.dtype)
        h = self.embed(nn.functional.pad(feats, self.embed_pad))
        h = self.norm(h.transpose(1, 2)).transpose(1, 2)
        for block in self.blocks:
            h = block(h)
        h = self.final_norm(h.transpose(1, 2)).transpose(1, 2)
        return self.proj(h)


def build_encoder(cfg: ConvEncoderConfig | STFTEncoderConfig, hop_length: int, latent_dim: int) -> nn.Module:
    if isinstance(cfg, ConvEncoderConfig):
        return ConvEncoder(cfg, hop_length, latent_dim)
    return STFTEncoder(cfg, hop_length, latent_dim)
