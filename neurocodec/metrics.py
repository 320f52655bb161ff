"""Quality metrics on numpy arrays `[T]` (mono) at a given sample rate, shared by training and evaluation.

Training's validation records name a metric measured with n_q codebooks `"{metric}@{n_q}"` (`at_n_q`, `split_key`).

SNR and SI-SDR are computed after delay alignment: a codec that delays its output by a few samples would
otherwise score near -∞ dB while sounding perfect (this mistake hides in many codec comparisons).
"""

from __future__ import annotations

import numpy as np
import torch

from .audio import resample
from .errors import MissingDependencyError
from .spectral import MelSpectrogram, log_mel, stft

EPS = 1e-12


def at_n_q(metric: str, n_q: int) -> str:
    """The record key of `metric` measured with `n_q` codebooks: "mel_distance@8"."""
    return f"{metric}@{n_q}"


def split_key(key: str) -> tuple[str, int] | None:
    """("mel_distance", 8) for "mel_distance@8"; None for a key that names no per-n_q metric."""
    metric, sep, n_q = key.partition("@")
    return (metric, int(n_q)) if sep and n_q.isdigit() else None


def n_q_values(record: dict, metric: str) -> list[int]:
    """The codebook counts at which `record` holds `metric`, ascending."""
    return sorted(parsed[1] for parsed in map(split_key, record) if parsed and parsed[0] == metric)


def align(ref: np.ndarray, est: np.ndarray, max_lag: int = 2000) -> tuple[np.ndarray, np.ndarray, int]:
    """Shift `est` by the lag in [-max_lag, max_lag] that maximises cross-correlation; returns the overlap.

    Returns (ref', est', lag) where `est[t + lag]` lines up with `ref[t]`.
    """
    n = min(len(ref), len(est))
    ref, est = ref[:n].astype(np.float64), est[:n].astype(np.float64)
    if n == 0:
        return ref, est, 0
    size = 1 << int(np.ceil(np.log2(2 * n)))
    xcorr = np.fft.irfft(np.fft.rfft(est, size) * np.conj(np.fft.rfft(ref, size)), size)
    lags = np.concatenate([np.arange(0, max_lag + 1), np.arange(-max_lag, 0)])
    lag = int(lags[np.argmax(xcorr[lags])])
    if lag >= 0:
        return ref[: n - lag], est[lag:n], lag
    return ref[-lag:n], est[: n + lag], lag


def snr(ref: np.ndarray, est: np.ndarray, aligned: bool = True) -> float:
    """10·log10(|ref|² / |ref − est|²) in dB."""
    if aligned:
        ref, est, _ = align(ref, est)
    noise = np.sum((ref - est) ** 2)
    return float(10 * np.log10((np.sum(ref**2) + EPS) / (noise + EPS)))


def si_sdr(ref: np.ndarray, est: np.ndarray, aligned: bool = True) -> float:
    """Scale-invariant SDR in dB: the reference is scaled to best fit the estimate (zero-mean signals)."""
    if aligned:
        ref, est, _ = align(ref, est)
    ref = ref - ref.mean()
    est = est - est.mean()
    alpha = np.dot(est, ref) / (np.dot(ref, ref) + EPS)
    target = alpha * ref
    return float(10 * np.log10((np.sum(target**2) + EPS) / (np.sum((est - target) ** 2) + EPS)))


def rms_ratio(ref: np.ndarray, est: np.ndarray) -> float:
    """RMS of the estimate over RMS of the reference: 1 is right, < 1 is amplitude collapse.

    NaN for a silent reference (RMS below -100 dBFS), where a ratio means nothing.
    """
    ref_rms = np.sqrt(np.mean(ref.astype(np.float64) ** 2))
    if not ref_rms > 1e-5:
        return float("nan")
    return float(np.sqrt(np.mean(est.astype(np.float64) ** 2)) / ref_rms)


def mel_distance(ref: np.ndarray, est: np.ndarray, sample_rate: int,
                 windows=(32, 64, 128, 256, 512, 1024, 2048), n_mels=(5, 10, 20, 40, 80, 160, 320)) -> float:
    """DAC's mel distance: mean over scales of L1 between log10 mel spectrograms (lower is better)."""
    n = min(len(ref), len(est))
    r = torch.from_numpy(np.ascontiguousarray(ref[:n], dtype=np.float32))[None]
    e = torch.from_numpy(np.ascontiguousarray(est[:n], dtype=np.float32))[None]
    total = 0.0
    with torch.inference_mode():
        for w, m in zip(windows, n_mels):
            mel = MelSpectrogram(sample_rate, w, m)
            total += float((log_mel(mel(r)) - log_mel(mel(e))).abs().mean())
    return total / len(windows)


def stft_distance(ref: np.ndarray, est: np.ndarray, windows=(512, 1024, 2048)) -> float:
    """Mean over windows of L1 between log magnitudes (natural log), the multi-resolution STFT distance."""
    n = min(len(ref), len(est))
    r = torch.from_numpy(np.ascontiguousarray(ref[:n], dtype=np.float32))[None]
    e = torch.from_numpy(np.ascontiguousarray(est[:n], dtype=np.float32))[None]
    with torch.inference_mode():
        return float(np.mean([
            float((stft(r, w).abs().clamp_min(1e-5).log() - stft(e, w).abs().clamp_min(1e-5).log()).abs().mean())
            for w in windows
        ]))


def _aligned_16k(ref: np.ndarray, est: np.ndarray, sample_rate: int) -> tuple[np.ndarray, np.ndarray]:
    """Both signals at 16 kHz (what PESQ-WB and STOI are defined on), delay-aligned."""
    ref16, est16 = resample(ref[None], sample_rate, 16000)[0], resample(est[None], sample_rate, 16000)[0]
    return align(ref16, est16)[:2]


def pesq_wb(ref: np.ndarray, est: np.ndarray, sample_rate: int) -> float:
    """Wide-band PESQ (MOS-LQO, 1.04–4.64) at 16 kHz, after delay alignment."""
    try:
        from pesq import pesq
    except ImportError:
        raise MissingDependencyError("PESQ needs the pesq package: pip install 'neurocodec[eval]'") from None
    return float(pesq(16000, *_aligned_16k(ref, est, sample_rate), "wb"))


def stoi(ref: np.ndarray, est: np.ndarray, sample_rate: int) -> float:
    """Short-time objective intelligibility (0–1) at 16 kHz, after delay alignment."""
    try:
        from pystoi import stoi as _stoi
    except ImportError:
        raise MissingDependencyError("STOI needs the pystoi package: pip install 'neurocodec[eval]'") from None
    return float(_stoi(*_aligned_16k(ref, est, sample_rate), 16000, extended=False))


def dnsmos(audio: np.ndarray, sample_rate: int) -> dict[str, float]:
    """DNSMOS P.835 of `audio` `[T]` alone (no reference): {"dnsmos_sig", "dnsmos_bak", "dnsmos_ovrl"}, 1-5 (signal,
    background, overall), from the ONNX models the `speechmos` package ships (run by ONNX Runtime, at 16 kHz)."""
    try:
        from speechmos import dnsmos as _dnsmos
    except ImportError:
        raise MissingDependencyError("DNSMOS needs speechmos and onnxruntime: pip install 'neurocodec[eval]'") from None
    x = np.clip(resample(np.asarray(audio, np.float32)[None], sample_rate, 16000)[0], -1.0, 1.0)
    scores = _dnsmos.run(x.astype(np.float32), 16000)
    return {"dnsmos_sig": float(scores["sig_mos"]), "dnsmos_bak": float(scores["bak_mos"]),
            "dnsmos_ovrl": float(scores["ovrl_mos"])}
