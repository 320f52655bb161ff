"""Quality-targeted variable rate: per 0.2 s segment, the fewest codebooks that keep the file at a quality target.

The encoder runs the decoder. For every codebook count n from 1 to the model's, the codes cut to n codebooks are
decoded (level restored, at the input's rate, as a reader would) and each segment's distortion is measured against
the input in a loudness domain (`segment_distances`: mel power to the 0.3, the compression of perceptual loudness
models and of PESQ, L1 beyond PESQ's masking dead zone of a quarter of the smaller loudness, relative to the
input's mean loudness), so that small errors on a loud vowel are masked as PESQ masks them and the same ones in a
quiet passage are not. `--quality Q` targets the mean distortion that constant Q kbps gives this very input, and
spends codebooks where they buy the most: each segment takes the count minimising distortion + λ · codebooks,
with the largest λ whose mean distortion stays within the target (equal marginal returns: the fewest codebooks for
that quality).
Easy segments (pauses, sustained notes) fall below Q kbps, hard ones rise above it, up to every codebook.
"""

from __future__ import annotations

from typing import Iterable, Iterator

import numpy as np
import torch

from .codes import CodeBlock, frame_counts, keep_codebooks
from .model import Codec
from .spectral import MelSpectrogram
from .stream import EncodedAudio, decode_audio, encode_audio

SCALES = ((512, 64), (1024, 80))  # (window, mel bands): speech-codec resolutions
LOUDNESS_POWER = 0.3  # of mel power (0.6 of mel magnitude)
DEAD_ZONE = 0.25  # loudness differences within this fraction of the smaller loudness do not count (PESQ's masking)


def segment_distances(ref: np.ndarray, est: np.ndarray, sample_rate: int, segment_samples: float,
                      segments: int, relative: float | None = None, asymmetry: float = 1.0,
                      dead_zone: float = DEAD_ZONE, loudness_power: float = LOUDNESS_POWER,
                      fmax: float | None = None) -> np.ndarray:
    """Loudness-domain distance per segment: ref, est `[C, T]` → `[segments]`: per scale, L1 between mel
    loudness (power ** `loudness_power`) of the STFT frames centred in the segment beyond a dead zone of
    `dead_zone` x the smaller of the two loudnesses (as PESQ masks small differences), over the input's mean
    loudness (with `relative` = a: over the segment's own mean loudness + a x the input's, an alternative
    `research/vbr_allocations.py` compares; with `asymmetry` A, loudness the decoding adds counts A times what it
    misses; with `fmax`, mel bands up to that frequency only, e.g. the 8 kHz that PESQ-WB hears); mean over scales
    (`segment_samples` at `sample_rate`)."""
    n = min(ref.shape[-1], est.shape[-1])
    r = torch.from_numpy(np.ascontiguousarray(ref[:, :n], dtype=np.float32))
    e = torch.from_numpy(np.ascontiguousarray(est[:, :n], dtype=np.float32))
    total = np.zeros(segments)
    with torch.inference_mode():
        for window, bands in SCALES:
            mel = MelSpectrogram(sample_rate, window, bands, fmax=fmax)
            loud_r, loud_e = mel(r) ** (2 * loudness_power), mel(e) ** (2 * loudness_power)
            margin = dead_zone * torch.minimum(loud_r, loud_e)
            diff = ((loud_r - loud_e - margin).clamp_min(0)
                    + asymmetry * (loud_e - loud_r - margin).clamp_min(0)).mean(dim=(0, 1))
            if relative is None:
                diff = diff / loud_r.mean().clamp_min(1e-9)
            diff = diff.numpy()
            centre = np.arange(len(diff)) * (window // 4)  # stft's hop is a quarter window, frames centred
            seg = np.minimum((centre / segment_samples).astype(np.int64), segments - 1)
            sums = np.bincount(seg, weights=diff, minlength=segments)
            counts = np.bincount(seg, minlength=segments)
            if relative is None:
                total += np.where(counts > 0, sums / np.maximum(counts, 1), 0.0)
            else:
                level = loud_r.mean(dim=(0, 1)).numpy()
                own = np.bincount(seg, weights=level, minlength=segments) / np.maximum(counts, 1)
                total += sums / np.maximum(counts, 1) / (own + relative * level.mean() + 1e-9)
    return total / len(SCALES)


def distortion_table(codec: Codec, audio: np.ndarray, encoded: EncodedAudio, segment_frames: int) -> np.ndarray:
    """`[n_q, segments]`: the distortion of each segment with 1 … n_q codebooks (n_q: the codes'). `audio` `[C, T]`
    is the input at `encoded.sample_rate`."""
    n_q, frames = encoded.codes.shape[1:]
    segments = -(-frames // segment_frames)
    hop = codec.hop_length * encoded.sample_rate / codec.sample_rate
    table = np.empty((n_q, segments))
    for n in range(1, n_q + 1):
        est = decode_audio(codec, encoded._replace(codes=encoded.codes[:, :n]))
        table[n - 1] = segment_distances(audio, est, encoded.sample_rate, segment_frames * hop, segments)
    return table


def choose(table: np.ndarray, reference_n_q: int, cost: np.ndarray | None = None) -> np.ndarray:
    """Codebooks per segment `[segments]` from distortions `table` `[n_q, segments]`: argmin over n of
    distortion + λ · cost, with the largest λ (bisection) whose mean distortion is within that of constant
    `reference_n_q` codebooks. `cost` `[n_q, segments]`: each segment's cost with 1 … n_q codebooks (None: n, every
    codebook costs the same, as `--quality` does; `research/vbr_allocations.py` compares bits under the context
    model, which spend fewer codebooks where the fine ones are cheap and lose more PESQ for it)."""
    if cost is None:
        cost = np.broadcast_to(np.arange(1, table.shape[0] + 1.0)[:, None], table.shape)
    cost = cost / max(float(cost[-1].mean()) / table.shape[0], 1e-9)  # in units of the mean codebook's cost
    target = float(table[reference_n_q - 1].mean())

    def pick(lam: float) -> np.ndarray:
        return (table + lam * cost).argmin(axis=0) + 1

    def mean(n: np.ndarray) -> float:
        return float(table[n - 1, np.arange(table.shape[1])].mean())

    step = np.diff(cost, axis=0)
    least = float(step[step > 0].min()) if (step > 0).any() else 1.0
    low, high = 0.0, (float(np.ptp(table)) + 1.0) / least  # λ = high: one codebook everywhere
    if mean(pick(high)) <= target:
        return pick(high)
    for _ in range(60):
        mid = (low + high) / 2
        low, high = (mid, high) if mean(pick(mid)) <= target else (low, mid)
    return pick(low)


def encode(codec: Codec, audio: np.ndarray, sample_rate: int, reference_n_q: int, segment_frames: int,
           loop: bool = True, search=None) -> EncodedAudio:
    """audio `[C, T]` → codes of every codebook `[C, n_q, T_frames]`, -1 beyond each segment's codebooks, with the
    level envelope, for the quality of constant `reference_n_q` codebooks. With `loop`, the distortions are
    measured with the envelope corrected for every codebook (so that the model's own level error does not count as
    distortion), then the same codes are encoded again and the envelope corrected for the codebooks each frame
    keeps, as the reader will decode them. `search`: analysis by synthesis for every codebook (`stream_encode`; it
    then runs twice with `loop`)."""
    every = codec.n_q
    encoded = encode_audio(codec, audio, sample_rate, every, loop=loop, search=search)
    counts = choose(distortion_table(codec, audio, encoded, segment_frames), reference_n_q)
    present = frame_counts(counts, segment_frames, encoded.codes.shape[-1])

    def keep(codes: np.ndarray, first: int) -> np.ndarray:
        return keep_codebooks(codes, present[first: first + codes.shape[-1]])

    if loop:
        return encode_audio(codec, audio, sample_rate, every, stage=keep, search=search)
    return encoded._replace(codes=keep(encoded.codes, 0))


def encode_blocks(codec: Codec, blocks: Iterable[np.ndarray], sample_rate: int, channels: int, reference_n_q: int,
                  segment_frames: int, loop: bool = True, search=None) -> Iterator[CodeBlock]:
    """Variable rate as a source of code blocks, as `stream.stream_encode` is for constant rate: audio blocks
    `[C, n]` → code blocks (-1 beyond each segment's codebooks) with the level envelope's points. It holds the
    whole input and its decodings (`encode`)."""
    audio = np.concatenate([np.zeros((channels, 0), np.float32)] + list(blocks), axis=-1)
    encoded = encode(codec, audio, sample_rate, reference_n_q, segment_frames, loop, search)
    del audio
    yield CodeBlock(encoded.codes, encoded.points)
