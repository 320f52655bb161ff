"""Decoders: latent `[B, latent_dim, T_frames]` → audio `[B, 1, T_frames * hop_length]`.

Like the encoders, each reports `context_frames` (one-sided receptive field in frames) for windowed inference.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ..config import ConvDecoderConfig, ISTFTDecoderConfig
from .layers import ConvNeXtBlock, ResidualUnit, Snake1d, WNConv1d, WNConvTranspose1d


class DecoderBlock(nn.Module):
    """Transposed conv upsampling by `stride`, then three residual units (dilations 1, 3, 9)."""

    def __init__(self, in_dim: int, out_dim: int, stride: int):
        super().__init__()
        self.block = nn.Sequential(
            Snake1d(in_dim),
            WNConvTranspose1d(
                in_dim,
                out_dim,
                kernel_size=2 * stride,
                stride=stride,
                padding=math.ceil(stride / 2),
                output_padding=stride % 2,  # odd strides would otherwise lose one sample per frame
            ),
            ResidualUnit(out_dim, dilation=1),
            ResidualUnit(out_dim, dilation=3),
            ResidualUnit(out_dim, dilation=9),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block(x)


class ConvDecoder(nn.Module):
    """DAC-style decoder ending in tanh, so the output is a valid waveform in [-1, 1]."""

    def __init__(self, cfg: ConvDecoderConfig, hop_length: int, latent_dim: int):
        super().__init__()
        d = cfg.channels
        layers: list[nn.Module] = [WNConv1d(latent_dim, d, kernel_size=7, padding=3)]
        reach = 3.0  # one-sided receptive field in frames
        samples_per_step = float(hop_length)
        for stride in cfg.strides:
            layers.append(DecoderBlock(d, d // 2, stride))
            samples_per_step /= stride
            reach += 2 * stride * samples_per_step / hop_length + 39 * samples_per_step / hop_length
            d //= 2
        layers += [Snake1d(d), WNConv1d(d, 1, kernel_size=7, padding=3), nn.Tanh()]
        reach += 3 / hop_length
        self.block = nn.Sequential(*layers)
        self.context_frames = math.ceil(reach) + 1

    def forward(self, latent: torch.Tensor, first_frame: int = 0) -> torch.Tensor:
        return self.block(latent)


class ISTFTDecoder(nn.Module):
    """Vocos-style: ConvNeXt at the frame rate → log magnitude and phase → inverse STFT by overlap-add.

    "Same" padding: the overlap-add output is trimmed by `(n_fft - hop) / 2` on both sides, so `F` frames give
    exactly `F * hop` samples, aligned with the encoders' frames. No tanh: the level is learned, and inference
    clips the waveform to [-1, 1] when writing it.
    """

    def __init__(self, cfg: ISTFTDecoderConfig, hop_length: int, latent_dim: int):
        super().__init__()
        self.n_fft = cfg.n_fft
        self.hop_length = hop_length
        self.causal = cfg.causal
        # Samples trimmed from the overlap-add's (left, right) ends: "same" padding, or causal (frame f's window
        # ends at (f + 1) · hop; the last n_fft - hop samples then wait for later frames).
        side = (cfg.n_fft - hop_length) // 2
        self.trim = (cfg.n_fft - hop_length, 0) if cfg.causal else (side, side)
        self.embed_pad = (6, 0) if cfg.causal else (3, 3)
        self.embed = nn.Conv1d(latent_dim, cfg.dim, kernel_size=7)
        self.norm = nn.LayerNorm(cfg.dim, eps=1e-6)
        self.blocks = nn.ModuleList(
            ConvNeXtBlock(cfg.dim, cfg.intermediate_dim, layer_scale=1 / cfg.n_blocks, causal=cfg.causal)
            for _ in range(cfg.n_blocks)
        )
        self.final_norm = nn.LayerNorm(cfg.dim, eps=1e-6)
        self.head = nn.Linear(cfg.dim, cfg.n_fft + 2)
        self.register_buffer("window", torch.hann_window(cfg.n_fft), persistent=False)
        one_side = 3 + 3 * cfg.n_blocks + math.ceil(cfg.n_fft / hop_length) + 1
        self.context_frames = 2 * one_side if cfg.causal else one_side  # causal: all of it on one side
        self.phase_reference = cfg.phase_reference

    def reference_phase(self, first_frame: int, frames: int) -> torch.Tensor:
        """`[n_fft/2+1, frames]` phase advance of each bin's centre frequency since frame 0.

        Computed as integers modulo n_fft so it stays exact at any frame index (float32 would drift within
        minutes of audio), which keeps windowed decoding equal to one pass.
        """
        k = torch.arange(self.n_fft // 2 + 1, dtype=torch.int64)
        t = torch.arange(first_frame, first_frame + frames, dtype=torch.int64)
        cycles = (k[:, None] * ((t[None, :] * self.hop_length) % self.n_fft)) % self.n_fft
        return cycles.to(torch.float32) * (2 * math.pi / self.n_fft)

    def forward(self, latent: torch.Tensor, first_frame: int = 0) -> torch.Tensor:
        """latent `[B, latent_dim, F]` → audio `[B, 1, F * hop]`; `first_frame` is the index of latent frame 0 in
        the whole signal (it matters only with `phase_reference`)."""
        h = self.embed(nn.functional.pad(latent, self.embed_pad))
        h = self.norm(h.transpose(1, 2))
        for block in self.blocks:
            h = block(h.transpose(1, 2)).transpose(1, 2)
        # The spectrum and the inverse STFT run in float32 whatever the autocast around (bf16 training).
        h = self.head(self.final_norm(h)).transpose(1, 2).float()  # [B, n_fft + 2, F]
        log_mag, phase = h.chunk(2, dim=1)
        # The clamp bounds exp() so an untrained or diverging model cannot produce inf.
        mag = log_mag.clamp(max=6.0).exp()
        if self.phase_reference:
            phase = phase + self.reference_phase(first_frame, phase.shape[-1]).to(phase.device)
        spec = torch.polar(mag, phase)
        return self._istft(spec)

    def _istft(self, spec: torch.Tensor) -> torch.Tensor:
        """Inverse STFT with "same" padding. spec `[B, n_fft/2+1, F]` → audio `[B, 1, F * hop]`."""
        frames = spec.shape[-1]
        full = (frames - 1) * self.hop_length + self.n_fft
        ifft = torch.fft.irfft(spec, n=self.n_fft, dim=1, norm="backward") * self.window[None, :, None]
        y = nn.functional.fold(ifft, (1, full), kernel_size=(1, self.n_fft), stride=(1, self.hop_length))
        # Causal: the window envelope as if the frames still to come were there, so that the last n_fft - hop
        # samples (waiting for them) come out partly summed, never divided by a vanishing envelope.
        pending = math.ceil(self.n_fft / self.hop_length) if self.causal else 0
        env = nn.functional.fold(
            self.window.square()[None, :, None].expand(1, -1, frames + pending),
            (1, full + pending * self.hop_length),
            kernel_size=(1, self.n_fft),
            stride=(1, self.hop_length),
        )
        lo, hi = self.trim[0], full - self.trim[1]
        y = y[..., lo:hi] / env[..., lo:hi].clamp_min(1e-11)
        return y.reshape(spec.shape[0], 1, -1)


def build_decoder(cfg: ConvDecoderConfig | ISTFTDecoderConfig, hop_length: int, latent_dim: int) -> nn.Module:
    if isinstance(cfg, ConvDecoderConfig):
        return ConvDecoder(cfg, hop_length, latent_dim)
    return ISTFTDecoder(cfg, hop_length, latent_dim)
