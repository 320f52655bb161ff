"""What both generations' entropy coding shares: integer probability tables (each row sums to exactly 2**PRECISION
and reaches constriction's range coder as exact dyadic floats, so decoding is bit-exact on every machine), the
range decoder's guards, distributional clustering for fitting contexts, and the side information every payload
starts with: the level envelope's points (fixed table) and, in 2.x, the codebook count per segment.

No torch, and no container: the level envelope's parameters come as any object with `levels`, `spacing_frames`,
`target_db`, `floor_db` and `step_db` (the header's `Envelope`).
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Protocol

import numpy as np

from ..errors import FormatError

PRECISION = 16
TOTAL = 1 << PRECISION
UNIFORM_SHA256 = "0" * 64
# A range coder's output may fall short of the codes' information content by its final flush at most: two words.
SLACK_BITS = 64



class Envelope(Protocol):
    """The level envelope's parameters as a payload needs them: a point every `spacing_frames` frames, point `i`
    meaning `floor_db + i * step_db` dBFS, `0 ≤ i < levels`; the model saw `target_db`."""

    spacing_frames: int
    target_db: float
    floor_db: float
    step_db: float
    levels: int


def envelope_points(level: Envelope, frames: int) -> int:
    """Points in a chunk of `frames` frames (one at each multiple of `spacing_frames` from its start)."""
    return -(-frames // level.spacing_frames)


def uniform_freqs(codebook_size: int) -> np.ndarray:
    """The flattest integer table: 2**PRECISION split as evenly as integers allow."""
    base, extra = divmod(TOTAL, codebook_size)
    row = np.full(codebook_size, base, np.int64)
    row[:extra] += 1
    return row



def quantize_table(counts: np.ndarray) -> np.ndarray:
    """Float counts `[..., K]` → integer frequencies ≥ 1 summing to 2**PRECISION per row (largest remainders)."""
    counts = np.asarray(counts, np.float64)
    k = counts.shape[-1]
    p = counts / counts.sum(axis=-1, keepdims=True)
    spare = TOTAL - k  # every code keeps at least 1
    scaled = p * spare
    freqs = np.floor(scaled).astype(np.int64)
    short = spare - freqs.sum(axis=-1)
    order = np.argsort(-(scaled - freqs), axis=-1, kind="stable")
    rows = np.arange(k)[None, :] < short.reshape(-1, 1)
    bump = np.zeros_like(freqs).reshape(-1, k)
    np.put_along_axis(bump, order.reshape(-1, k), rows.astype(np.int64), axis=-1)
    return freqs + bump.reshape(freqs.shape) + 1



def cluster(pair: np.ndarray, groups: int, iterations: int, prior: float) -> np.ndarray:
    """Assign each row of `pair` (successor counts) to one of `groups` tables minimising total code length."""
    k = pair.shape[0]
    weight = pair.sum(axis=1)
    # Start from the most frequent conditioning codes as seeds, then Lloyd iterations in cross-entropy.
    seeds = np.argsort(-weight, kind="stable")[np.arange(groups) % k]
    assign = np.full(k, 0, np.int64)
    tables = np.log(pair[seeds] + prior) - np.log((pair[seeds] + prior).sum(axis=1, keepdims=True))
    for it in range(iterations):
        cost = -pair @ tables.T  # [k, groups]: nats to code row i's successors with table g
        new = cost.argmin(axis=1)
        new[weight == 0] = 0
        if it > 0 and np.array_equal(new, assign):
            break
        assign = new
        for g in range(groups):
            members = pair[assign == g].sum(axis=0) + prior
            tables[g] = np.log(members) - np.log(members.sum())
    return assign



def level_table(levels: int) -> np.ndarray:
    """The fixed table of a level point's change from the one before, `[2 * levels - 1]` (index `delta + levels -
    1`): `max(1, 2**(12 - |delta| // 3))` for a change, the rest of 2**16 for none. Integers only: the same
    everywhere. With 0.5 dB steps: none costs about 1.4 bits, 1.5 dB about 5, 3 dB about 6."""
    delta = np.abs(np.arange(-(levels - 1), levels))
    freqs = np.left_shift(1, np.maximum(0, 12 - delta // 3)).astype(np.int64)
    freqs[levels - 1] = 0
    freqs[levels - 1] = TOTAL - freqs.sum()
    return freqs


def level_reference(level: Envelope) -> int:
    """The point a chunk's first point is coded against: the one nearest the target level."""
    return min(level.levels - 1, max(0, round((level.target_db - level.floor_db) / level.step_db)))


def decoder(payload: bytes):
    """(range decoder over `payload`, the symbol family); FormatError for a payload of partial 32-bit words."""
    import constriction

    if len(payload) % 4:
        raise FormatError("payload is not a whole number of 32-bit words")
    return (constriction.stream.queue.RangeDecoder(np.frombuffer(payload, "<u4").astype(np.uint32)),
            constriction.stream.model.Categorical(perfect=False))


@contextmanager
def decoding():
    """What the range decoder raises on a damaged payload becomes a FormatError."""
    try:
        yield
    except (ValueError, RuntimeError, AssertionError) as exc:
        raise FormatError(f"entropy decoding failed ({exc})") from None


def check_room(payload: bytes, symbols: int, min_bits: float, claim: str = "it claims") -> None:
    """A payload must hold the codes its chunk claims at their cheapest: decoding work is tied to its bytes."""
    if len(payload) * 8 + SLACK_BITS < symbols * min_bits:
        raise FormatError(f"payload of {len(payload)} bytes is too short for the {symbols} codes {claim}")


def read_points(dec, family, channels: int, frames: int, level: Envelope) -> np.ndarray:
    table = level_table(level.levels).astype(np.float64) / TOTAL
    count = envelope_points(level, frames)
    points = np.empty((channels, count), np.int64)
    for c in range(channels):
        delta = dec.decode(family, np.tile(table, (count, 1))).astype(np.int64)
        points[c] = level_reference(level) + np.cumsum(delta - (level.levels - 1))
    if points.size and (points.min() < 0 or points.max() >= level.levels):
        raise FormatError("a level point is outside the envelope's range")
    return points


def decode_points(payload: bytes, channels: int, frames: int, level: Envelope) -> np.ndarray:
    """Only the level points `[C, ceil(F / spacing)]` at the start of a chunk's payload (they need no entropy
    model): what `neurocodec info` shows of the envelope. Raises FormatError as `decode_chunk`."""
    dec, family = decoder(payload)
    with decoding():
        return read_points(dec, family, channels, frames, level)


def level_bits(points: np.ndarray, level: Envelope) -> float:
    """Ideal code length in bits of one chunk's points `[C, P]` (what they add to the payload, ± the coder's
    rounding)."""
    table = level_table(level.levels)
    delta = np.diff(np.asarray(points, np.int64), axis=-1, prepend=level_reference(level)) + level.levels - 1
    return float(np.sum(PRECISION - np.log2(table[delta])))



def write_points(enc, family, points, level, channels: int, frames: int) -> None:
    """The level points `[C, ceil(F / spacing)]` that start a payload (1.1 and 2.x alike), if there is a level."""
    if level is None:
        return
    points = np.asarray(points, np.int64)
    if points.shape != (channels, envelope_points(level, frames)) or points.min(initial=0) < 0 or \
            points.max(initial=0) >= level.levels:
        raise FormatError(f"level points of shape {points.shape} do not fit a chunk of {frames} frames")
    probs = level_table(level.levels).astype(np.float64) / TOTAL
    ref = level_reference(level)
    for c in range(channels):
        delta = np.diff(points[c], prepend=ref) + level.levels - 1
        enc.encode(delta.astype(np.int32), family, np.tile(probs, (len(delta), 1)))



def segment_table(n_q: int) -> np.ndarray:
    """The fixed table of a segment's codebook count's change from the one before, `[2 * m - 1]` with
    m = max(n_q, 2) (index `delta + m - 1`): `max(1, 2**(12 - 2 |delta|))` for a change, the rest of 2**16 for none
    (≈ 0.13 bit)."""
    m = max(n_q, 2)
    delta = np.abs(np.arange(-(m - 1), m))
    freqs = np.left_shift(1, np.maximum(0, 12 - 2 * delta)).astype(np.int64)
    freqs[m - 1] = 0
    freqs[m - 1] = TOTAL - freqs.sum()
    return freqs



def read_side(dec, family, channels: int, n_q: int, frames: int, level: Envelope | None, segment: int
                 ) -> tuple[np.ndarray | None, np.ndarray]:
    points = read_points(dec, family, channels, frames, level) if level is not None else None
    count = -(-frames // segment)
    table = segment_table(n_q).astype(np.float64) / TOTAL
    n_qs = n_q + np.cumsum(dec.decode(family, np.tile(table, (count, 1))).astype(np.int64) - len(table) // 2)
    if n_qs.min() < 1 or n_qs.max() > n_q:
        raise FormatError("a segment's codebook count is outside 1 … the chunk's n_q")
    return points, n_qs


def decode_side(payload: bytes, channels: int, n_q: int, frames: int, level: Envelope | None,
                segment: int) -> tuple[np.ndarray | None, np.ndarray]:
    """Only what a 2.x payload starts with (fixed tables, no entropy model): (level points `[C, ceil(F /
    spacing)]` or None, codebooks per segment `[ceil(F / segment)]`). What `neurocodec info` shows."""
    dec, family = decoder(payload)
    with decoding():
        return read_side(dec, family, channels, n_q, frames, level, segment)


