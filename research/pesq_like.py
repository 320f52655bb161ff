"""A PESQ-structured disturbance for variable-rate experiments (`research/vbr_allocations.py --allocations
pesqlikeR`): our own code after the structure of ITU-T P.862 / P.862.2, not a PESQ implementation.

Both signals at 16 kHz are scaled to 79 dB SPL in 300-3500 Hz; 32 ms Hann frames every 16 ms; power in 49 bands
equally spaced on a Bark scale (z = 6 asinh(f / 600)); the reference's long-term band powers are equalised to the
decoding's and the decoding's frame powers to the reference's (smoothed, clipped), as P.862 does; Zwicker loudness
(exponent 0.23) above the absolute threshold of hearing (Terhardt's formula, in dB SPL); per band the loudness
difference beyond a dead zone of a quarter of the smaller loudness; per frame its L2 over bands (symmetric) and its
L1 weighted by the asymmetry factor ((P_dec + c) / (P_ref + c)) ** 1.2, zero below 3, at most 12; frame
disturbances over 20-frame intervals in L6, intervals in L2; raw MOS 4.5 - 0.1 symmetric - 0.0309 asymmetric.
`segment_drops` is the raw-MOS drop when one segment alone comes from another decoding (the frame disturbances
are local, so each segment costs a re-aggregation, no new spectra).
"""

from __future__ import annotations

import numpy as np

RATE = 16000
N_FFT, HOP = 512, 256
LEVEL_DB = 79.0  # P.862's listening level
ZWICKER = 0.23
ASYMMETRY_OFFSET = 200.0  # band power (mean-square, SPL units) added to both sides of the asymmetry ratio
INTERVAL = 20  # frames per split-second interval, half-overlapping


def _bands(count: int = 49) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(band matrix `[bands, bins]`, band centres in Hz `[bands]`, bin frequencies `[bins]`); empty bands dropped."""
    freqs = np.arange(N_FFT // 2 + 1) * RATE / N_FFT
    bark = 6 * np.arcsinh(freqs / 600)
    edges = np.linspace(0, bark[-1] + 1e-6, count + 1)
    index = np.clip(np.searchsorted(edges, bark, side="right") - 1, 0, count - 1)
    index[0] = -1  # no DC
    used = np.unique(index[index >= 0])
    matrix = (index[None, :] == used[:, None]).astype(np.float64)
    return matrix, (matrix @ freqs) / matrix.sum(1), freqs


BANDS, CENTRES, FREQS = _bands()
_k = np.maximum(CENTRES, 20.0) / 1000
THRESHOLD = 10 ** ((3.64 * _k ** -0.8 - 6.5 * np.exp(-0.6 * (_k - 3.3) ** 2) + 1e-3 * _k ** 4) / 10)  # [bands]
WINDOW = np.hanning(N_FFT + 1)[:-1]
SPEECH_BAND = (FREQS >= 300) & (FREQS <= 3500)


def band_powers(x: np.ndarray) -> np.ndarray:
    """`[T]` at 16 kHz → band powers `[frames, bands]` in SPL units (mean-square, levelled to LEVEL_DB)."""
    frames = max(1 + (len(x) - N_FFT) // HOP, 0)
    index = np.arange(N_FFT)[None] + HOP * np.arange(frames)[:, None]
    power = 2 * np.abs(np.fft.rfft(x[index] * WINDOW, axis=1)) ** 2 / (N_FFT * np.sum(WINDOW ** 2))
    level = power[:, SPEECH_BAND].sum(1).mean() if frames else 1.0
    return (power @ BANDS.T) * (10 ** (LEVEL_DB / 10) / max(level, 1e-20))


def _audible(p: np.ndarray, factor: float = 1.0) -> np.ndarray:
    return np.where(p > factor * THRESHOLD, p, 0.0)


def frame_disturbances(ref: np.ndarray, dec: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """ref, dec `[T]` at 16 kHz → (symmetric, asymmetric) disturbance per frame, each `[frames]`."""
    n = min(len(ref), len(dec))
    pr, pd = band_powers(ref[:n]), band_powers(dec[:n])
    active = _audible(pr).sum(1) >= 10 ** ((LEVEL_DB - 30) / 10)
    if active.any():
        ratio = (_audible(pd, 100)[active].mean(0) + 100 * THRESHOLD) / (_audible(pr, 100)[active].mean(0) + 100 * THRESHOLD)
        pr = pr * np.clip(ratio, 0.01, 100)
    offset = 10 ** ((LEVEL_DB - 33) / 10)
    gain = (_audible(pr).sum(1) + offset) / (_audible(pd).sum(1) + offset)
    gain[1:] = 0.8 * gain[1:] + 0.2 * gain[:-1]
    pd = pd * np.clip(gain, 3e-4, 5)[:, None]

    def loudness(p: np.ndarray) -> np.ndarray:
        return np.where(p > THRESHOLD, (2 * THRESHOLD) ** ZWICKER * ((0.5 + 0.5 * p / THRESHOLD) ** ZWICKER - 1), 0.0)

    lr, ld = loudness(pr), loudness(pd)
    diff = ld - lr
    diff = np.sign(diff) * np.maximum(np.abs(diff) - 0.25 * np.minimum(lr, ld), 0)
    factor = ((pd + ASYMMETRY_OFFSET) / (pr + ASYMMETRY_OFFSET)) ** 1.2
    factor = np.where(factor < 3, 0.0, np.minimum(factor, 12))
    weight = ((_audible(pr).sum(1) * 10 ** (7 - LEVEL_DB / 10) + 1e5) / 1e7) ** 0.04  # P.862's frame weighting
    symmetric = np.sqrt((diff ** 2).sum(1)) / weight
    asymmetric = np.abs(diff * factor).sum(1) / weight
    return np.minimum(symmetric, 45), np.minimum(asymmetric, 45)


def raw_mos(symmetric: np.ndarray, asymmetric: np.ndarray) -> float:
    """Frame disturbances `[frames]` → 4.5 - 0.1 D_sym - 0.0309 D_asym (L6 over intervals, L2 over time)."""
    def aggregate(d: np.ndarray) -> float:
        starts = np.arange(0, max(len(d) - INTERVAL, 0) + 1, INTERVAL // 2)
        intervals = np.stack([d[s:s + INTERVAL] for s in starts])
        return float(np.sqrt(np.mean(np.mean(intervals ** 6, axis=1) ** (1 / 3))))
    return 4.5 - 0.1 * aggregate(symmetric) - 0.0309 * aggregate(asymmetric)


def segment_drops(ref: np.ndarray, decodings: list[np.ndarray], reference: int, segment_samples: float,
                  segments: int) -> np.ndarray:
    """`[n_q, segments]`: raw MOS of the decoding with `reference` codebooks minus that with one segment taken from
    the decoding with n codebooks (ref and decodings `[T]` at 16 kHz, segments of `segment_samples` at 16 kHz)."""
    frames = [frame_disturbances(ref, d) for d in decodings]
    count = len(frames[0][0])
    segment = np.minimum(((np.arange(count) * HOP + N_FFT / 2) / segment_samples).astype(np.int64), segments - 1)
    base_s, base_a = frames[reference - 1]
    base = raw_mos(base_s, base_a)
    drops = np.zeros((len(decodings), segments))
    for n, (sym, asym) in enumerate(frames):
        for s in range(segments if n != reference - 1 else 0):
            here = segment == s
            if here.any():
                drops[n, s] = base - raw_mos(np.where(here, sym, base_s), np.where(here, asym, base_a))
    return drops
