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

import math
from typing import Callable, Iterable, Iterator

import numpy as np

from .codes import CodeBlock, frame_counts, keep_codebooks
from .dsp import mel_magnitude
from .fileio import release_free_memory
from .level import LevelCoder
from .stream import EncodedAudio, decode_audio, encode_audio, stream_encode
from .windows import Net

SCALES = ((512, 64), (1024, 80))  # (window, mel bands): speech-codec resolutions
LOUDNESS_POWER = 0.3  # of mel power (0.6 of mel magnitude)
DEAD_ZONE = 0.25  # loudness differences within this fraction of the smaller loudness do not count (PESQ's masking)


def segment_terms(ref: np.ndarray, est: np.ndarray, sample_rate: int, segment_samples: float, segments: int,
                  asymmetry: float = 1.0, dead_zone: float = DEAD_ZONE, loudness_power: float = LOUDNESS_POWER,
                  fmax: float | None = None) -> np.ndarray:
    """The sums behind `segment_distances`, per scale and segment, so that windows of a long input add up to the
    whole: ref, est `[C, T]` → `[len(SCALES), 3, segments]`: the loudness difference beyond the dead zone summed
    over the STFT frames centred in each segment (each frame's mean over channels and mel bands), the input's
    loudness summed the same way, and the frame count."""
    n = min(ref.shape[-1], est.shape[-1])
    r, e = ref[:, :n], est[:, :n]
    terms = np.zeros((len(SCALES), 3, segments))
    for i, (window, bands) in enumerate(SCALES):
        power = np.float32(2 * loudness_power)
        loud_r = mel_magnitude(r, sample_rate, window, bands, fmax) ** power
        loud_e = mel_magnitude(e, sample_rate, window, bands, fmax) ** power
        margin = np.float32(dead_zone) * np.minimum(loud_r, loud_e)
        diff = (np.maximum(loud_r - loud_e - margin, 0)
                + np.float32(asymmetry) * np.maximum(loud_e - loud_r - margin, 0)).mean(axis=(0, 1))
        centre = np.arange(len(diff)) * (window // 4)  # stft's hop is a quarter window, frames centred
        seg = np.minimum((centre / segment_samples).astype(np.int64), segments - 1)
        terms[i, 0] = np.bincount(seg, weights=diff, minlength=segments)
        terms[i, 1] = np.bincount(seg, weights=loud_r.mean(axis=(0, 1)), minlength=segments)
        terms[i, 2] = np.bincount(seg, minlength=segments)
    return terms


def distances(terms: np.ndarray, relative: float | None = None) -> np.ndarray:
    """`segment_terms` `[scales, 3, segments]` (of a whole input, or windows of it joined along segments) → the
    distance per segment `[segments]` (see `segment_distances`)."""
    sums, level, counts = terms[:, 0], terms[:, 1], terms[:, 2]
    per_frame = sums / np.maximum(counts, 1)
    mean_level = level.sum(axis=1, keepdims=True) / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    if relative is None:
        total = np.where(counts > 0, per_frame / np.maximum(mean_level, 1e-9), 0.0)
    else:
        own = level / np.maximum(counts, 1)
        total = per_frame / (own + relative * mean_level + 1e-9)
    return total.sum(axis=0) / len(SCALES)


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
    return distances(segment_terms(ref, est, sample_rate, segment_samples, segments, asymmetry, dead_zone,
                                   loudness_power, fmax), relative)


def distortion_table(net: Net, audio: np.ndarray, encoded: EncodedAudio, segment_frames: int) -> np.ndarray:
    """`[n_q, segments]`: the distortion of each segment with 1 … n_q codebooks (n_q: the codes'). `audio` `[C, T]`
    is the input at `encoded.sample_rate`."""
    return np.stack([distances(t) for t in _terms_table(net, audio, encoded, segment_frames)])


def _terms_table(net: Net, audio: np.ndarray, encoded: EncodedAudio, segment_frames: int) -> np.ndarray:
    """`[n_q, scales, 3, segments]`: `segment_terms` of the decoding with 1 … n_q codebooks."""
    n_q, frames = encoded.codes.shape[1:]
    segments = -(-frames // segment_frames)
    hop = net.hop_length * encoded.sample_rate / net.sample_rate
    return np.stack([segment_terms(audio, decode_audio(net, encoded._replace(codes=encoded.codes[:, :n])),
                                   encoded.sample_rate, segment_frames * hop, segments)
                     for n in range(1, n_q + 1)])


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


WINDOW_SECONDS = 30.0  # the distortions are measured window by window: memory follows this, not the input
CONTEXT_SECONDS = 2.0  # … each with this much audio either side (the level analysis looks ±1.6 s around a point)
WINDOW_ELEMENTS = int(WINDOW_SECONDS * 48_000 * 2)  # … fewer seconds for many channels (all channels, samples)


def measure(net: Net, blocks: Iterable[np.ndarray], sample_rate: int, channels: int, segment_frames: int,
            loop: bool = True) -> np.ndarray:
    """Audio blocks `[C, n]` → the distortion table `[n_q, segments]` of the whole input (every codebook count),
    measured in windows of about `WINDOW_SECONDS` with `CONTEXT_SECONDS` either side, so that memory is bounded
    whatever the input's length. The sums of each window's own segments join into the whole file's table (the
    distance is relative to the whole input's loudness, as for one window covering it)."""
    segment_samples = segment_frames * net.hop_length * sample_rate / net.sample_rate
    seconds = max(2 * CONTEXT_SECONDS, min(WINDOW_SECONDS, WINDOW_ELEMENTS / (channels * sample_rate)))
    window = max(1, round(seconds * sample_rate / segment_samples))  # segments a window owns
    context = math.ceil(CONTEXT_SECONDS * sample_rate / segment_samples)
    parts: list[np.ndarray] = []
    held, start = np.zeros((channels, 0), np.float32), 0  # audio from sample `start` on
    first = 0  # the first segment the next window owns

    def window_terms(last: bool) -> np.ndarray:
        lo = max(0, first - context)
        begin = round(lo * segment_samples)
        end = held.shape[-1] + start if last else round((first + window + context) * segment_samples)
        audio = held[:, begin - start: end - start]
        encoded = encode_audio(net, audio, sample_rate, net.n_q, loop=loop)
        terms = _terms_table(net, audio, encoded, segment_frames)
        own = first - lo
        terms = terms[..., own:] if last else terms[..., own: own + window]
        # Kept compact: the input's loudness and the frame counts are the same for every codebook count.
        return np.concatenate([terms[:, :, 0], terms[0, :, 1:].transpose(1, 0, 2)], axis=0)

    for block in blocks:
        held = np.concatenate([held, block], axis=-1)
        while start + held.shape[-1] >= round((first + window + context) * segment_samples) + 1:
            parts.append(window_terms(last=False))
            release_free_memory()  # a window's temporaries, freed, go back to the system: the peak stays one window's
            first += window
            keep_from = round(max(0, first - context) * segment_samples)
            held, start = held[:, keep_from - start:], keep_from
    if start + held.shape[-1] > round(first * segment_samples) or not parts:
        parts.append(window_terms(last=True))
    joined = np.concatenate(parts, axis=-1)  # [n_q + 2, scales, segments]
    n_q = joined.shape[0] - 2
    return np.stack([distances(np.stack([joined[n], joined[n_q], joined[n_q + 1]], axis=1)) for n in range(n_q)])


def encode_blocks(net: Net, blocks: Callable[[], Iterable[np.ndarray]], sample_rate: int, channels: int,
                  reference_n_q: int, segment_frames: int, loop: bool = True) -> Iterator[CodeBlock]:
    """Variable rate as a source of code blocks, as `stream.stream_encode` is for constant rate: audio blocks
    `[C, n]` → code blocks (-1 beyond each segment's codebooks) with the level envelope's points, for the quality
    of constant `reference_n_q` codebooks. Two passes over the input (`blocks()` gives its blocks afresh each
    call): the distortions of every codebook count, window by window (`measure`), then the codebooks per segment
    for the whole file (`choose`), then the input encoded again keeping those (with `loop`, the level envelope is
    corrected for the codebooks each frame keeps, as the reader will decode them). Memory is bounded by the
    window, not the input. A net that searches (analysis by synthesis) searches in both passes."""
    counts = choose(measure(net, blocks(), sample_rate, channels, segment_frames, loop), reference_n_q)
    release_free_memory()

    def keep(codes: np.ndarray, first: int) -> np.ndarray:
        lo, offset = divmod(first, segment_frames)
        mine = counts[lo: lo + -(-(offset + codes.shape[-1]) // segment_frames)]
        mine = np.concatenate([mine, np.full(max(0, -(-(offset + codes.shape[-1]) // segment_frames) - len(mine)),
                                             counts[-1] if len(counts) else net.n_q)])  # a frame past the table
        return keep_codebooks(codes, frame_counts(mine, segment_frames, offset + codes.shape[-1])[offset:])

    yield from stream_encode(net, blocks(), sample_rate, channels, net.n_q, level=LevelCoder.for_model(
        net.sample_rate, net.hop_length), loop=loop, stage=keep)
