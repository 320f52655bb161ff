"""Signal processing in NumPy, for the paths that run without torch: framing, Hann windows, STFT and its inverse by
overlap-add, and the mel filterbank (`librosa.filters.mel`: Slaney scale and norm, what DAC uses; for common rates
from a table librosa wrote, `tools/mel_tables.py`, so that inference never pays for importing librosa)."""

from __future__ import annotations

import functools

import numpy as np

from .errors import MissingDependencyError


def hann(n: int) -> np.ndarray:
    """Periodic Hann window `[n]` float32 (`torch.hann_window`'s default)."""
    return (0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n) / n)).astype(np.float32)


def frames(x: np.ndarray, size: int, hop: int) -> np.ndarray:
    """x `[..., T]` → a strided view `[..., n, size]` of the `n = 1 + (T - size) // hop` whole frames."""
    return np.lib.stride_tricks.sliding_window_view(x, size, axis=-1)[..., ::hop, :]


def stft(x: np.ndarray, n_fft: int, hop: int, center: bool = True, dtype=np.float32) -> np.ndarray:
    """x `[..., T]` → complex STFT `[..., n_fft // 2 + 1, frames]` computed in `dtype` (complex64 for float32),
    Hann window (`torch.stft`'s framing; with `center`, reflect-padded by n_fft / 2, or zero-padded when the input
    is too short to reflect)."""
    x = np.asarray(x, dtype)
    if center:
        mode = "reflect" if x.shape[-1] > n_fft // 2 else "constant"
        x = np.pad(x, [(0, 0)] * (x.ndim - 1) + [(n_fft // 2, n_fft // 2)], mode=mode)
    spec = np.fft.rfft(frames(x, n_fft, hop) * hann(n_fft).astype(dtype), axis=-1)
    return np.swapaxes(spec.astype(np.result_type(dtype, np.complex64)), -1, -2)


def overlap_add(spec: np.ndarray, n_fft: int, hop: int, trim: int) -> np.ndarray:
    """Inverse STFT: spec `[B, n_fft // 2 + 1, F]` → audio `[B, (F - 1) * hop + n_fft - 2 * trim]` float32: the
    windowed frames overlap-added and divided by the summed squared window (`torch.istft`), `trim` samples cut
    from either end. `n_fft` must be a multiple of `hop`."""
    batch, _, count = spec.shape
    overlap = n_fft // hop
    window = hann(n_fft)
    pieces = (np.fft.irfft(spec, n=n_fft, axis=1).astype(np.float32) * window[None, :, None])  # [B, n_fft, F]
    pieces = pieces.reshape(batch, overlap, hop, count)  # frame f's k-th hop lands on output block f + k
    out = np.zeros((batch, count + overlap - 1, hop), np.float32)
    for k in range(overlap):
        out[:, k:k + count] += pieces[:, k].transpose(0, 2, 1)
    env = np.zeros((count + overlap - 1, hop), np.float32)
    square = np.square(window).reshape(overlap, hop)
    for k in range(overlap):
        env[k:k + count] += square[k]
    full = out.reshape(batch, -1)
    end = full.shape[-1] - trim
    return full[:, trim:end] / np.maximum(env.reshape(-1)[trim:end], np.float32(1e-11))


@functools.lru_cache(maxsize=1)
def _tables() -> dict[str, np.ndarray]:
    """librosa's filterbanks for common rates, written by `tools/mel_tables.py` (a test holds them equal)."""
    from importlib import resources

    with resources.files("neurocodec").joinpath("mel_tables.npz").open("rb") as f, np.load(f) as data:
        return {name: data[name] for name in data.files}


@functools.lru_cache(maxsize=64)
def mel_filters(sample_rate: int, n_fft: int, n_mels: int, fmin: float = 0.0, fmax: float | None = None) -> np.ndarray:
    """`[n_mels, n_fft // 2 + 1]` Slaney mel filterbank from librosa: from the table librosa wrote for common rates
    and the encoder's measures (so that encoding does not import librosa: 130 MB), else from librosa itself."""
    table = _tables().get(f"{sample_rate}_{n_fft}_{n_mels}") if fmin == 0.0 and fmax is None else None
    if table is not None:
        return table
    try:
        import librosa
    except ImportError:
        raise MissingDependencyError("librosa is needed for mel spectrograms: pip install librosa") from None
    return librosa.filters.mel(sr=sample_rate, n_fft=n_fft, n_mels=n_mels, fmin=fmin, fmax=fmax, htk=False, norm="slaney")


def mel_magnitude(x: np.ndarray, sample_rate: int, window: int, n_mels: int, fmax: float | None = None) -> np.ndarray:
    """x `[C, T]` → mel magnitude `[C, n_mels, frames]` (Hann STFT, centred, hop = window / 4)."""
    return np.matmul(mel_filters(sample_rate, window, n_mels, fmax=fmax).astype(np.float32),
                     np.abs(stft(x, window, window // 4)))
