"""Entropy coding of RVQ codes with integer probability tables and constriction's range coder.

Context model. Codebook q at frame t is coded with a table chosen by a context:
  * q = 0: the previous frame's code in codebook 0 (the coarse codes move slowly);
  * q > 0: the same frame's code in codebook q - 1 (what the coarser stage chose shapes the residual).
A context is not the raw code (1024 tables per codebook would not fit in a small model file) but a cluster of
codes: `context_map[q, code]` ∈ [0, n_contexts - 1), fitted so that codes with similar successor distributions
share a table. Context `n_contexts - 1` is the "no context" table (the first frame of a chunk, for q = 0).

Tables are integers (`freqs[q, ctx, k]` ≥ 1, each row summing to exactly 2**PRECISION) stored with the model.
They reach constriction as exact dyadic floats, so its fixed-point model is the same on every machine: decoding
is bit-exact whatever the hardware. No torch here.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass

import numpy as np

from .container import LevelExtension
from .errors import FormatError

PRECISION = 16
TOTAL = 1 << PRECISION
UNIFORM_SHA256 = "0" * 64
# A range coder's output may fall short of the codes' information content by its final flush at most: two words.
SLACK_BITS = 64


@dataclass(frozen=True)
class EntropyModel:
    """`freqs` `[n_q, n_contexts, codebook_size]` int64; `context_map` `[n_q, codebook_size]` int64."""

    freqs: np.ndarray
    context_map: np.ndarray

    @property
    def n_q(self) -> int:
        return self.freqs.shape[0]

    @property
    def n_contexts(self) -> int:
        return self.freqs.shape[1]

    @property
    def codebook_size(self) -> int:
        return self.freqs.shape[2]

    @property
    def sha256(self) -> str:
        """Identity written into .ncd headers; the uniform model is all zeros."""
        if self.is_uniform:
            return UNIFORM_SHA256
        h = hashlib.sha256()
        for a in (self.freqs, self.context_map):
            h.update(str(a.shape).encode())
            h.update(np.ascontiguousarray(a, dtype="<i8").tobytes())
        return h.hexdigest()

    @property
    def min_bits_per_symbol(self) -> float:
        """The fewest bits any code can cost under these tables (its most probable entry, a hair generous for
        constriction's fixed-point rounding): what a payload must hold per code it claims."""
        p_max = min(1.0, float(self.freqs.max()) / TOTAL * (1 + 2.0**-12))
        return -math.log2(p_max)

    @property
    def is_uniform(self) -> bool:
        return self.n_contexts == 1 and _is_uniform(self.freqs)

    def validate(self) -> None:
        if self.freqs.ndim != 3 or self.context_map.shape != (self.n_q, self.codebook_size):
            raise FormatError("entropy model tables have inconsistent shapes")
        if self.freqs.min() < 1 or np.any(self.freqs.sum(axis=-1) != TOTAL):
            raise FormatError(f"entropy model rows must be ≥ 1 and sum to 2**{PRECISION}")
        if self.context_map.min() < 0 or self.context_map.max() >= max(1, self.n_contexts - 1):
            raise FormatError("entropy context map points outside its tables")

    def tensors(self) -> dict[str, np.ndarray]:
        return {"entropy.freqs": self.freqs.astype(np.int32), "entropy.context_map": self.context_map.astype(np.int32)}

    @classmethod
    def from_tensors(cls, tensors: dict[str, np.ndarray]) -> "EntropyModel":
        model = cls(np.asarray(tensors["entropy.freqs"], np.int64), np.asarray(tensors["entropy.context_map"], np.int64))
        model.validate()
        return model


def _is_uniform(freqs: np.ndarray) -> bool:
    return bool(np.array_equal(freqs, uniform_freqs(freqs.shape[-1])[None, None].repeat(freqs.shape[0], 0)))


def uniform_freqs(codebook_size: int) -> np.ndarray:
    """The flattest integer table: 2**PRECISION split as evenly as integers allow."""
    base, extra = divmod(TOTAL, codebook_size)
    row = np.full(codebook_size, base, np.int64)
    row[:extra] += 1
    return row


def uniform_model(n_q: int, codebook_size: int) -> EntropyModel:
    """No statistics: costs ≈ log2(codebook_size) bits per code, the fixed-width size."""
    if codebook_size > TOTAL:
        raise FormatError(f"codebook_size {codebook_size} exceeds 2**{PRECISION}")
    freqs = uniform_freqs(codebook_size)[None, None].repeat(n_q, 0)
    return EntropyModel(freqs, np.zeros((n_q, codebook_size), np.int64))


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


def contexts(model: EntropyModel, codes: np.ndarray) -> np.ndarray:
    """codes `[n_q, F]` → context index `[n_q, F]` of every code (what the coder conditions on)."""
    n_q, frames = codes.shape
    ctx = np.empty((n_q, frames), np.int64)
    start = model.n_contexts - 1
    ctx[0, 0] = start
    if frames > 1:
        ctx[0, 1:] = model.context_map[0, codes[0, :-1]]
    if n_q > 1:
        ctx[1:] = model.context_map[np.arange(1, n_q)[:, None], codes[:-1]]
    if model.n_contexts == 1:
        ctx[:] = 0
    return ctx


def _probs(model: EntropyModel, q: int, ctx: np.ndarray) -> np.ndarray:
    return model.freqs[q, ctx].astype(np.float64) / TOTAL


def level_table(levels: int) -> np.ndarray:
    """The fixed table of a level point's change from the one before, `[2 * levels - 1]` (index `delta + levels -
    1`): `max(1, 2**(12 - |delta| // 3))` for a change, the rest of 2**16 for none. Integers only: the same
    everywhere. With 0.5 dB steps: none costs about 1.4 bits, 1.5 dB about 5, 3 dB about 6."""
    delta = np.abs(np.arange(-(levels - 1), levels))
    freqs = np.left_shift(1, np.maximum(0, 12 - delta // 3)).astype(np.int64)
    freqs[levels - 1] = 0
    freqs[levels - 1] = TOTAL - freqs.sum()
    return freqs


def level_reference(level: LevelExtension) -> int:
    """The point a chunk's first point is coded against: the one nearest the target level."""
    return min(level.levels - 1, max(0, round((level.target_db - level.floor_db) / level.step_db)))


def _decode_points(dec, family, channels: int, frames: int, level: LevelExtension) -> np.ndarray:
    table = level_table(level.levels).astype(np.float64) / TOTAL
    count = level.points(frames)
    points = np.empty((channels, count), np.int64)
    for c in range(channels):
        delta = dec.decode(family, np.tile(table, (count, 1))).astype(np.int64)
        points[c] = level_reference(level) + np.cumsum(delta - (level.levels - 1))
    if points.size and (points.min() < 0 or points.max() >= level.levels):
        raise FormatError("a level point is outside the envelope's range")
    return points


def decode_points(payload: bytes, channels: int, frames: int, level: LevelExtension) -> np.ndarray:
    """Only the level points `[C, ceil(F / spacing)]` at the start of a chunk's payload (they need no entropy
    model): what `neurocodec info` shows of the envelope. Raises FormatError as `decode_chunk`."""
    import constriction

    if len(payload) % 4:
        raise FormatError("payload is not a whole number of 32-bit words")
    dec = constriction.stream.queue.RangeDecoder(np.frombuffer(payload, "<u4").astype(np.uint32))
    try:
        return _decode_points(dec, constriction.stream.model.Categorical(perfect=False), channels, frames, level)
    except (ValueError, RuntimeError, AssertionError) as exc:
        raise FormatError(f"entropy decoding failed ({exc})") from None


def level_bits(points: np.ndarray, level: LevelExtension) -> float:
    """Ideal code length in bits of one chunk's points `[C, P]` (what they add to the payload, ± the coder's
    rounding)."""
    table = level_table(level.levels)
    delta = np.diff(np.asarray(points, np.int64), axis=-1, prepend=level_reference(level)) + level.levels - 1
    return float(np.sum(PRECISION - np.log2(table[delta])))


def encode_chunk(model: EntropyModel, codes: np.ndarray, points: np.ndarray | None = None,
                 level: LevelExtension | None = None) -> bytes:
    """codes `[C, n_q, F]` (and level `points` `[C, ceil(F / spacing)]` with `level`) → payload bytes: one
    range-coder state for the chunk; the points of every channel first, then codes in channel, codebook, frame
    order."""
    import constriction

    channels, n_q, frames = codes.shape
    if n_q > model.n_q:
        raise FormatError(f"{n_q} codebooks but the entropy model has {model.n_q}")
    family = constriction.stream.model.Categorical(perfect=False)
    enc = constriction.stream.queue.RangeEncoder()
    if level is not None:
        points = np.asarray(points, np.int64)
        if points.shape != (channels, level.points(frames)) or points.min(initial=0) < 0 or \
                points.max(initial=0) >= level.levels:
            raise FormatError(f"level points of shape {points.shape} do not fit a chunk of {frames} frames")
        probs = level_table(level.levels).astype(np.float64) / TOTAL
        ref = level_reference(level)
        for c in range(channels):
            delta = np.diff(points[c], prepend=ref) + level.levels - 1
            enc.encode(delta.astype(np.int32), family, np.tile(probs, (len(delta), 1)))
    for c in range(channels):
        ctx = contexts(model, codes[c])
        for q in range(n_q):
            enc.encode(codes[c, q].astype(np.int32), family, _probs(model, q, ctx[q]))
    return enc.get_compressed().astype("<u4").tobytes()


def decode_chunk(model: EntropyModel, payload: bytes, channels: int, n_q: int, frames: int,
                 level: LevelExtension | None = None) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """payload → codes `[C, n_q, F]` int32, and with `level` → (codes, points `[C, ceil(F / spacing)]` int64).
    Raises FormatError for a payload that is not a whole number of words, that is too short for the codes it
    claims (so decoding work is tied to the bytes in the file), that holds data past its last code (the decoder
    must consume its payload), or a level point outside the envelope's range (never trusted)."""
    import constriction

    if len(payload) % 4:
        raise FormatError("payload is not a whole number of 32-bit words")
    if n_q > model.n_q:
        raise FormatError(f"{n_q} codebooks but the entropy model has {model.n_q}")
    symbols = channels * n_q * frames
    if len(payload) * 8 + SLACK_BITS < symbols * model.min_bits_per_symbol:
        raise FormatError(f"payload of {len(payload)} bytes is too short for the {symbols} codes it claims")
    family = constriction.stream.model.Categorical(perfect=False)
    words = np.frombuffer(payload, "<u4").astype(np.uint32)
    dec = constriction.stream.queue.RangeDecoder(words)
    codes = np.empty((channels, n_q, frames), np.int32)
    start = model.n_contexts - 1
    try:
        if level is not None:
            points = _decode_points(dec, family, channels, frames, level)
        for c in range(channels):
            if model.n_contexts == 1:
                for q in range(n_q):
                    codes[c, q] = dec.decode(family, _probs(model, q, np.zeros(frames, np.int64)))
                continue
            # Codebook 0 conditions on its own previous frame: decoded frame by frame.
            prev = start
            for t in range(frames):
                codes[c, 0, t] = dec.decode(family, _probs(model, 0, np.array([prev])))[0]
                prev = model.context_map[0, codes[c, 0, t]]
            for q in range(1, n_q):
                ctx = model.context_map[q, codes[c, q - 1]]
                codes[c, q] = dec.decode(family, _probs(model, q, ctx))
    except (ValueError, RuntimeError, AssertionError) as exc:
        raise FormatError(f"entropy decoding failed ({exc})") from None
    if not dec.maybe_exhausted():
        raise FormatError("payload holds data past its last code")
    return codes if level is None else (codes, points)


def code_bits(model: EntropyModel, codes: np.ndarray) -> float:
    """Ideal code length in bits of codes `[C, n_q, F]` under the model (what a range coder achieves ± a word)."""
    total = 0.0
    for c in range(codes.shape[0]):
        ctx = contexts(model, codes[c])
        for q in range(codes.shape[1]):
            f = model.freqs[q, ctx[q], codes[c, q]]
            total += float(np.sum(PRECISION - np.log2(f)))
    return total


def fit(codes: list[np.ndarray], n_q: int, codebook_size: int, n_contexts: int = 16, iterations: int = 12,
        prior: float = 0.5) -> EntropyModel:
    """Fit tables to code sequences (each `[n_q', F]`, n_q' ≤ n_q, e.g. one per training file).

    Contexts are found by distributional clustering: each conditioning code is assigned to the cluster whose
    table codes its successors in the fewest bits, tables are re-estimated from their members, repeat.
    `prior` is added to every count, so codes never seen still get a small probability.
    """
    k = codebook_size
    groups = n_contexts - 1
    freqs = np.empty((n_q, n_contexts, k), np.int64)
    cmap = np.zeros((n_q, k), np.int64)
    for q in range(n_q):
        pair = np.zeros((k, k), np.float64)  # [conditioning code, code]
        marginal = np.zeros(k, np.float64)
        first = np.zeros(k, np.float64)
        for seq in codes:
            if seq.shape[0] <= q or seq.shape[1] == 0:
                continue
            cur = seq[q]
            cond = seq[q, :-1] if q == 0 else seq[q - 1]
            target = cur[1:] if q == 0 else cur
            np.add.at(pair, (cond, target), 1)
            np.add.at(marginal, cur, 1)
            first[cur[0]] += 1
        if groups >= 1:
            assign = _cluster(pair, groups, iterations, prior)
            cmap[q] = assign
            for g in range(groups):
                freqs[q, g] = quantize_table(pair[assign == g].sum(axis=0) + prior)
        freqs[q, n_contexts - 1] = quantize_table(marginal + prior)
    return EntropyModel(freqs, cmap)


def _cluster(pair: np.ndarray, groups: int, iterations: int, prior: float) -> np.ndarray:
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
