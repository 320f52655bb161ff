"""Spectral features in torch, shared by training losses and evaluation metrics. The mel filterbank is
`dsp.mel_filters` (librosa's; NumPy, shared with the paths that run without torch)."""

from __future__ import annotations

import numpy as np
import torch

from .dsp import mel_filters


def random_filters(n_fft: int, n_mels: int, seed: int = 0) -> np.ndarray:
    """A random-noise "filterbank": the bug that made a user's codec collapse. Only for tests of the alarms."""
    return np.abs(np.random.default_rng(seed).standard_normal((n_mels, n_fft // 2 + 1))).astype(np.float32)


def stft(audio: torch.Tensor, window_length: int, hop_length: int | None = None) -> torch.Tensor:
    """audio `[B, T]` → complex STFT `[B, window_length // 2 + 1, frames]` (Hann window, centred, hop = win / 4)."""
    window = torch.hann_window(window_length, device=audio.device, dtype=audio.dtype)
    return torch.stft(
        audio,
        n_fft=window_length,
        hop_length=hop_length or window_length // 4,
        window=window,
        center=True,
        pad_mode="reflect" if audio.shape[-1] > window_length // 2 else "constant",
        return_complex=True,
    )


class MelSpectrogram(torch.nn.Module):
    """audio `[B, T]` → mel magnitude `[B, n_mels, frames]` (magnitude STFT, then the filterbank)."""

    def __init__(self, sample_rate: int, window_length: int, n_mels: int, fmin: float = 0.0,
                 fmax: float | None = None, filterbank: str = "librosa"):
        super().__init__()
        self.window_length = window_length
        if filterbank == "librosa":
            fb = mel_filters(sample_rate, window_length, n_mels, fmin, fmax)
        elif filterbank == "random":
            fb = random_filters(window_length, n_mels)
        else:
            raise ValueError(f"unknown filterbank {filterbank!r}")
        self.register_buffer("filters", torch.from_numpy(np.ascontiguousarray(fb, dtype=np.float32)), persistent=False)

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        return self.from_stft(stft(audio, self.window_length))

    def from_stft(self, spec: torch.Tensor) -> torch.Tensor:
        """complex `stft(audio, window_length)` `[B, F, frames]` → mel magnitude (for a spectrum already made)."""
        return torch.matmul(self.filters, spec.abs())


def log_mel(mel: torch.Tensor) -> torch.Tensor:
    return torch.log10(mel.clamp_min(1e-5))
