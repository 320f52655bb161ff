"""Generator losses. Each takes reference and estimate `[B, 1, T]` and returns a scalar.

Several losses look at the same STFTs (window w, hop w/4): `Spectra` computes each window's STFT of reference and
estimate once per step and hands it to every loss that asks for it.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from ..spectral import MelSpectrogram, log_mel, stft


class Spectra:
    """Complex STFTs of reference and estimate `[B, T]`, computed once per window length on first use."""

    def __init__(self, ref: torch.Tensor, est: torch.Tensor):
        self.ref, self.est = ref, est
        self._cache: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}

    def __call__(self, window: int) -> tuple[torch.Tensor, torch.Tensor]:
        if window not in self._cache:
            self._cache[window] = (stft(self.ref, window), stft(self.est, window))
        return self._cache[window]


def _spectra(ref: torch.Tensor, est: torch.Tensor, spectra: Spectra | None) -> Spectra:
    return spectra if spectra is not None else Spectra(ref.flatten(0, 1), est.flatten(0, 1))


class MelLosses(NamedTuple):
    log_mel: torch.Tensor  # DAC's term
    linear: torch.Tensor  # L1 between linear mel magnitudes
    level: torch.Tensor  # L1 between log time-averaged band powers (see LossConfig.level)


class MultiScaleMelLoss(nn.Module):
    """DAC's mel loss: Σ over windows of L1 between log10(clamp(mel, 1e-5)) of reference and estimate.

    `linear` also returns Σ L1 between the linear mel magnitudes, a term that holds the output level: in log
    space a uniform gain error costs little where the signal is quiet, so the level can sag early in training.
    """

    def __init__(self, sample_rate: int, windows, n_mels, fmin: float = 0.0, fmax: float | None = None,
                 filterbank: str = "librosa"):
        super().__init__()
        if len(windows) != len(n_mels):
            raise ValueError("mel_windows and mel_n_mels must have the same length")
        self.mels = nn.ModuleList(
            MelSpectrogram(sample_rate, w, m, fmin, fmax, filterbank) for w, m in zip(windows, n_mels)
        )

    def forward(self, ref: torch.Tensor, est: torch.Tensor, spectra: Spectra | None = None) -> MelLosses:
        """ref, est `[B, 1, T]` → the three terms, each summed over scales."""
        spectra = _spectra(ref, est, spectra)
        log_loss = ref.new_zeros(())
        lin_loss = ref.new_zeros(())
        level = ref.new_zeros(())
        for mel in self.mels:
            s_ref, s_est = spectra(mel.window_length)
            m_ref, m_est = mel.from_stft(s_ref), mel.from_stft(s_est)
            log_loss = log_loss + F.l1_loss(log_mel(m_est), log_mel(m_ref))
            lin_loss = lin_loss + F.l1_loss(m_est, m_ref)
            # log10 of amplitude (half the log of power), so a uniform gain g costs |log10 g| per band; the power
            # floor 1e-10 matches the amplitude floor 1e-5 of the log-mel term.
            p_ref, p_est = m_ref.square().mean(dim=-1), m_est.square().mean(dim=-1)
            level = level + 0.5 * F.l1_loss(p_est.clamp_min(1e-10).log10(), p_ref.clamp_min(1e-10).log10())
        return MelLosses(log_loss, lin_loss, level)


class MultiResolutionSTFTLoss(nn.Module):
    """Spectral convergence + log-magnitude L1, summed over windows (Parallel WaveGAN)."""

    def __init__(self, windows=(512, 1024, 2048)):
        super().__init__()
        self.windows = tuple(windows)

    def forward(self, ref: torch.Tensor, est: torch.Tensor, spectra: Spectra | None = None) -> torch.Tensor:
        spectra = _spectra(ref, est, spectra)
        loss = ref.new_zeros(())
        for w in self.windows:
            s_ref, s_est = spectra(w)
            m_ref, m_est = s_ref.abs(), s_est.abs()
            sc = torch.linalg.norm(m_ref - m_est) / torch.linalg.norm(m_ref).clamp_min(1e-7)
            loss = loss + sc + F.l1_loss(m_est.clamp_min(1e-5).log(), m_ref.clamp_min(1e-5).log())
        return loss


class ComplexSTFTLoss(nn.Module):
    """L1 between power-law compressed complex STFTs (|X|^0.3 with X's phase), summed over windows.

    Phase-aware: unlike magnitude losses it is minimised only by the right phase, and the compression keeps loud
    bins from dominating. It gives the decoder a direct phase signal long before a discriminator can.
    """

    def __init__(self, windows=(512, 1024, 2048)):
        super().__init__()
        self.windows = tuple(windows)

    @staticmethod
    def _compress(spec: torch.Tensor) -> torch.Tensor:
        mag = spec.abs().clamp_min(1e-7)
        return torch.view_as_real(spec * mag.pow(-0.7))

    def forward(self, ref: torch.Tensor, est: torch.Tensor, spectra: Spectra | None = None) -> torch.Tensor:
        spectra = _spectra(ref, est, spectra)
        loss = ref.new_zeros(())
        for w in self.windows:
            s_ref, s_est = spectra(w)
            loss = loss + F.l1_loss(self._compress(s_est), self._compress(s_ref))
        return loss


def waveform_l1(ref: torch.Tensor, est: torch.Tensor) -> torch.Tensor:
    return F.l1_loss(est, ref)
