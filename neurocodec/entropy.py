"""Entropy coding of RVQ codes with integer probability tables and constriction's range coder.

Two context models, one per format generation: `MixModel` (`.ncd` 2.x, below) and `EntropyModel` (1.x files).

1.x context model. Codebook q at frame t is coded with a table chosen by a context:
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
from contextlib import contextmanager
from dataclasses import dataclass, field

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
    """A model's entropy coding: the 1.x tables, `freqs` `[n_q, n_contexts, codebook_size]` int64 and
    `context_map` `[n_q, codebook_size]` int64 (`sha256` is their identity), and the 2.x context model `mix`
    (None: uniform; `coder` is what a 2.x file uses)."""

    freqs: np.ndarray
    context_map: np.ndarray
    mix: "MixModel | None" = None

    @property
    def coder(self) -> "MixModel":
        """The 2.x context model (the uniform one when the checkpoint carries none)."""
        if self.mix is not None:
            return self.mix
        return MixModel.uniform(self.n_q, self.codebook_size)

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
        """Stored as the narrowest integers that hold them (a frequency is at most 2**16 - codebook_size + 1)."""
        out = {"entropy.freqs": self.freqs.astype(np.uint16 if self.freqs.max() < 1 << 16 else np.int32),
               "entropy.context_map": self.context_map.astype(np.int16 if self.context_map.max() < 1 << 15
                                                               else np.int32)}
        return out | (self.mix.tensors() if self.mix is not None else {})

    @classmethod
    def from_tensors(cls, tensors: dict[str, np.ndarray]) -> "EntropyModel":
        mix = MixModel.from_tensors(tensors) if "entropy.mix.prev" in tensors else None
        model = cls(np.asarray(tensors["entropy.freqs"], np.int64), np.asarray(tensors["entropy.context_map"], np.int64),
                    mix)
        model.validate()
        if mix is not None and (mix.n_q, mix.codebook_size) != (model.n_q, model.codebook_size):
            raise FormatError("the mixed context model does not fit the codebooks")
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


def _decoder(payload: bytes):
    """(range decoder over `payload`, the symbol family); FormatError for a payload of partial 32-bit words."""
    import constriction

    if len(payload) % 4:
        raise FormatError("payload is not a whole number of 32-bit words")
    return (constriction.stream.queue.RangeDecoder(np.frombuffer(payload, "<u4").astype(np.uint32)),
            constriction.stream.model.Categorical(perfect=False))


@contextmanager
def _decoding():
    """What the range decoder raises on a damaged payload becomes a FormatError."""
    try:
        yield
    except (ValueError, RuntimeError, AssertionError) as exc:
        raise FormatError(f"entropy decoding failed ({exc})") from None


def _check_room(payload: bytes, symbols: int, min_bits: float, claim: str = "it claims") -> None:
    """A payload must hold the codes its chunk claims at their cheapest: decoding work is tied to its bytes."""
    if len(payload) * 8 + SLACK_BITS < symbols * min_bits:
        raise FormatError(f"payload of {len(payload)} bytes is too short for the {symbols} codes {claim}")


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
    dec, family = _decoder(payload)
    with _decoding():
        return _decode_points(dec, family, channels, frames, level)


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
    _encode_points(enc, family, points, level, channels, frames)
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
    dec, family = _decoder(payload)
    if n_q > model.n_q:
        raise FormatError(f"{n_q} codebooks but the entropy model has {model.n_q}")
    _check_room(payload, channels * n_q * frames, model.min_bits_per_symbol)
    codes = np.empty((channels, n_q, frames), np.int32)
    start = model.n_contexts - 1
    with _decoding():
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


# --------------------------------------------------------------------------------------------------------------
# The 2.x context model: two experts mixed in the log domain, integers only.
#
# Codebook q at frame t is conditioned on both things the decoder already has: the same codebook's code at frame
# t - 1 ("prev", how the coarse description moves) and the same frame's code in codebook q - 1 ("coarse", what the
# coarser stage chose). Each expert is a clustered table of log2-probabilities in 1/8-bit units (int8); they are
# mixed as a product of experts over the marginal, L = prev[q, p] + coarse[q, c] - marginal[q], and L becomes
# integer frequencies through a fixed integer power-of-two table. No floating point decides a frequency, so the
# tables (and the codes they decode to) are the same on every machine and thread count.

LOG_UNIT = 8  # log2-probabilities are stored in 1/8 bit
# 2**30 * 2**(-j / 8), j = 0..7, rounded: the only "exp" the mixer uses (integers, so identical everywhere).
_FRAC = np.array([1073741824, 984625563, 902905664, 827967972, 759250125, 696235378, 638450708, 585463278], np.int64)
_MAX_SHIFT = 28  # weights below 2**-28 of the largest are 0 before the floor of 1
MAX_FREQ = TOTAL // 2  # the mixer never gives a code more than half the mass


def mix_freqs(logits: np.ndarray) -> np.ndarray:
    """Integer log2-probabilities in 1/8 bit `[..., K]` (int64) → frequencies `[..., K]` ≥ 1 summing to 2**16.

    w = 2**((L - max L) / 8) as `_FRAC[d % 8] >> (d // 8)`; f = 1 + floor(w * (2**16 - K) / sum w); what integer
    division leaves goes to the first most probable code; that code keeps at most 2**15, the others share the
    rest. Integer arithmetic only."""
    logits = np.asarray(logits, np.int64)
    k = logits.shape[-1]
    d = np.minimum(logits.max(axis=-1, keepdims=True) - logits, LOG_UNIT * _MAX_SHIFT + LOG_UNIT - 1)
    w = _FRAC[d % LOG_UNIT] >> (d // LOG_UNIT)
    freqs = 1 + (w * (TOTAL - k)) // w.sum(axis=-1, keepdims=True)
    top = np.argmax(w, axis=-1)[..., None]
    np.put_along_axis(freqs, top, np.take_along_axis(freqs, top, -1) + TOTAL - freqs.sum(-1, keepdims=True), -1)
    # No code above half the mass: every code costs at least a bit, so a payload's bytes bound the codes it holds
    # (the reader's work); codes that predictable are rare. The excess is shared by the others, the first
    # ones (in code order) taking what division leaves.
    excess = np.maximum(np.take_along_axis(freqs, top, -1) - MAX_FREQ, 0)
    share, extra = np.divmod(excess, k - 1)
    idx = np.arange(k)
    rank = idx - (idx > top)  # place among the other codes
    freqs = freqs + np.where(idx == top, -excess, share + (rank < extra))
    return freqs


@dataclass(frozen=True)
class MixModel:
    """The 2.x context model. `prev`, `coarse` `[n_q, G + 1, K]` and `marginal` `[n_q, K]`: log2-probabilities in
    1/8 bit (int8 range); `prev_map`, `coarse_map` `[n_q, K]`: the cluster 0 … G - 1 of a conditioning code. Row
    G of both experts is "no context" (the chunk's first frame, a codebook absent at t - 1, codebook 0's coarser
    code) and holds the marginal. All zero: the uniform model (fixed-width cost, identity all zeros)."""

    prev: np.ndarray
    prev_map: np.ndarray
    coarse: np.ndarray
    coarse_map: np.ndarray
    marginal: np.ndarray
    _cache: dict = field(default_factory=dict, compare=False, repr=False)

    @property
    def n_q(self) -> int:
        return self.prev.shape[0]

    @property
    def groups(self) -> int:
        """G: contexts per expert besides "no context"."""
        return self.prev.shape[1] - 1

    @property
    def codebook_size(self) -> int:
        return self.prev.shape[2]

    @property
    def is_uniform(self) -> bool:
        return not (self.prev.any() or self.coarse.any() or self.marginal.any())

    @property
    def sha256(self) -> str:
        """Identity written into 2.x headers (all zeros: uniform)."""
        if self.is_uniform:
            return UNIFORM_SHA256
        h = hashlib.sha256(b"neurocodec-mix-1")
        for a in (self.prev, self.prev_map, self.coarse, self.coarse_map, self.marginal):
            h.update(str(a.shape).encode())
            h.update(np.ascontiguousarray(a, dtype="<i8").tobytes())
        return h.hexdigest()

    def validate(self) -> None:
        n_q, g1, k = self.prev.shape
        if g1 < 1 or self.coarse.shape != (n_q, g1, k) or self.marginal.shape != (n_q, k) or \
                self.prev_map.shape != (n_q, k) or self.coarse_map.shape != (n_q, k):
            raise FormatError("mixed context model tables have inconsistent shapes")
        for a in (self.prev, self.coarse, self.marginal):
            if a.min(initial=0) < -128 or a.max(initial=0) > 127:
                raise FormatError("mixed context model log-probabilities outside int8")
        for m in (self.prev_map, self.coarse_map):
            if m.min(initial=0) < 0 or m.max(initial=0) >= max(1, g1 - 1):
                raise FormatError("mixed context map points outside its tables")

    def probs(self, q: int) -> np.ndarray:
        """Codebook q's coding tables `[(G + 1) ** 2, K]` float64 (row `p * (G + 1) + c`): integer frequencies
        over 2**16, exact in binary floating point. Computed once per codebook."""
        if q not in self._cache:
            g1 = self.groups + 1
            logits = (self.prev[q].astype(np.int64)[:, None, :] + self.coarse[q].astype(np.int64)[None, :, :]
                      - self.marginal[q].astype(np.int64))
            self._cache[q] = mix_freqs(logits.reshape(g1 * g1, -1)).astype(np.float64) / TOTAL
        return self._cache[q]

    @property
    def min_bits_per_symbol(self) -> float:
        """The fewest bits any code costs (over every codebook's tables; a hair generous for constriction's
        rounding): what a payload must hold per code it claims."""
        if "min_bits" not in self._cache:
            p_max = max(float(self.probs(q).max()) for q in range(self.n_q))
            self._cache["min_bits"] = -math.log2(min(1.0, p_max * (1 + 2.0**-12)))
        return self._cache["min_bits"]

    def tensors(self) -> dict[str, np.ndarray]:
        return {"entropy.mix.prev": self.prev.astype(np.int8), "entropy.mix.prev_map": self.prev_map.astype(np.int16),
                "entropy.mix.coarse": self.coarse.astype(np.int8),
                "entropy.mix.coarse_map": self.coarse_map.astype(np.int16),
                "entropy.mix.marginal": self.marginal.astype(np.int8)}

    @classmethod
    def from_tensors(cls, tensors: dict[str, np.ndarray]) -> "MixModel":
        model = cls(*(np.asarray(tensors[f"entropy.mix.{k}"], np.int64)
                      for k in ("prev", "prev_map", "coarse", "coarse_map", "marginal")))
        model.validate()
        return model

    @classmethod
    def uniform(cls, n_q: int, codebook_size: int) -> "MixModel":
        if codebook_size > TOTAL:
            raise FormatError(f"codebook_size {codebook_size} exceeds 2**{PRECISION}")
        z = np.zeros((n_q, 2, codebook_size), np.int64)
        return cls(z, np.zeros((n_q, codebook_size), np.int64), z.copy(), np.zeros((n_q, codebook_size), np.int64),
                   np.zeros((n_q, codebook_size), np.int64))


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


def frame_counts(n_qs: np.ndarray, segment: int, frames: int) -> np.ndarray:
    """Codebooks per frame `[F]` from codebooks per segment `[ceil(F / segment)]`."""
    return np.repeat(np.asarray(n_qs, np.int64), segment)[:frames]


def keep_codebooks(codes: np.ndarray, present: np.ndarray) -> np.ndarray:
    """codes `[C, n_q, F]` as a reader decodes them: -1 (absent, the decoder adds nothing) beyond each frame's
    `present` `[F]` codebooks."""
    return np.where(np.arange(codes.shape[1])[None, :, None] < np.asarray(present)[None, None, :], codes, -1)


def mix_contexts(model: MixModel, codes: np.ndarray, present: np.ndarray
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """codes `[n_q, F]` of one channel and `present` `[F]` (codebooks coded at each frame) → (the codebook, table
    row and code of every coded symbol, in coding order: frame by frame, codebooks coarse to fine; `[N]` each)."""
    n_q, frames = codes.shape
    g = model.groups
    qs = np.arange(n_q)[:, None]
    coded = qs < present[None, :]  # [n_q, F]
    before = np.zeros_like(coded)
    before[:, 1:] = coded[:, :-1]
    prev_codes = np.zeros_like(codes)
    prev_codes[:, 1:] = codes[:, :-1]
    p = np.where(before, model.prev_map[qs, prev_codes], g)
    coarse_codes = np.zeros_like(codes)
    coarse_codes[1:] = codes[:-1]
    c = np.where(qs > 0, model.coarse_map[qs, coarse_codes], g)
    rows = p * (g + 1) + c
    order = coded.T  # frame-major
    return np.broadcast_to(qs, codes.shape).T[order], rows.T[order], codes.T[order]


def encode_chunk_v2(model: MixModel, codes: np.ndarray, points: np.ndarray | None, level: LevelExtension | None,
                    n_qs: np.ndarray, segment: int) -> bytes:
    """A 2.x chunk payload: codes `[C, n_q, F]` (codebooks beyond a segment's count are ignored), level `points`
    `[C, ceil(F / spacing)]` with `level`, and `n_qs` `[ceil(F / segment)]` codebooks per segment (shared by the
    channels, each ≤ n_q) → bytes. Order: points of every channel, segment counts, then each channel's codes
    frame by frame, coarse to fine."""
    import constriction

    channels, n_q, frames = codes.shape
    n_qs = np.asarray(n_qs, np.int64)
    if n_q > model.n_q:
        raise FormatError(f"{n_q} codebooks but the entropy model has {model.n_q}")
    if n_qs.shape != (-(-frames // segment),) or n_qs.min(initial=1) < 1 or n_qs.max(initial=1) > n_q:
        raise FormatError(f"codebook counts {n_qs.tolist()} do not fit a chunk of {frames} frames, {n_q} codebooks")
    family = constriction.stream.model.Categorical(perfect=False)
    enc = constriction.stream.queue.RangeEncoder()
    _encode_points(enc, family, points, level, channels, frames)
    table = segment_table(n_q).astype(np.float64) / TOTAL
    delta = np.diff(n_qs, prepend=n_q) + len(table) // 2
    enc.encode(delta.astype(np.int32), family, np.tile(table, (len(delta), 1)))
    present = frame_counts(n_qs, segment, frames)
    for ch in range(channels):
        qs, rows, symbols = mix_contexts(model, codes[ch], present)
        probs = np.empty((len(rows), model.codebook_size), np.float64)
        for q in np.unique(qs):
            sel = qs == q
            probs[sel] = model.probs(int(q))[rows[sel]]
        enc.encode(symbols.astype(np.int32), family, probs)
    return enc.get_compressed().astype("<u4").tobytes()


def _encode_points(enc, family, points, level, channels: int, frames: int) -> None:
    """The level points `[C, ceil(F / spacing)]` that start a payload (1.1 and 2.x alike), if there is a level."""
    if level is None:
        return
    points = np.asarray(points, np.int64)
    if points.shape != (channels, level.points(frames)) or points.min(initial=0) < 0 or \
            points.max(initial=0) >= level.levels:
        raise FormatError(f"level points of shape {points.shape} do not fit a chunk of {frames} frames")
    probs = level_table(level.levels).astype(np.float64) / TOTAL
    ref = level_reference(level)
    for c in range(channels):
        delta = np.diff(points[c], prepend=ref) + level.levels - 1
        enc.encode(delta.astype(np.int32), family, np.tile(probs, (len(delta), 1)))


def decode_chunk_v2(model: MixModel, payload: bytes, channels: int, n_q: int, frames: int,
                    level: LevelExtension | None, segment: int
                    ) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
    """payload → (codes `[C, n_q, F]` int32 (0 where a segment coded fewer codebooks), level points
    `[C, ceil(F / spacing)]` or None, codebooks per segment `[ceil(F / segment)]`). Raises FormatError as
    `decode_chunk`, and for a segment count outside 1 … n_q."""
    dec, family = _decoder(payload)
    if n_q > model.n_q:
        raise FormatError(f"{n_q} codebooks but the entropy model has {model.n_q}")
    # A codebook per frame at least before the segments' counts are known, then all the codes they claim.
    _check_room(payload, channels * frames, model.min_bits_per_symbol, "it claims at least")
    codes = np.zeros((channels, n_q, frames), np.int32)
    g = model.groups
    with _decoding():
        points, n_qs = _decode_side(dec, family, channels, n_q, frames, level, segment)
        present = frame_counts(n_qs, segment, frames)
        _check_room(payload, channels * int(present.sum()), model.min_bits_per_symbol)
        tables = [model.probs(q) for q in range(n_q)]
        pmap, cmap = model.prev_map, model.coarse_map
        for ch in range(channels):
            out = codes[ch]
            before = 0
            for t in range(frames):
                up = present[t]
                coarse_row = g
                for q in range(up):
                    row = (pmap[q, out[q, t - 1]] if q < before else g) * (g + 1) + coarse_row
                    code = int(dec.decode(family, tables[q][row:row + 1])[0])
                    out[q, t] = code
                    if q + 1 < up:
                        coarse_row = cmap[q + 1, code]
                before = up
    if not dec.maybe_exhausted():
        raise FormatError("payload holds data past its last code")
    return codes, points, n_qs


def _decode_side(dec, family, channels: int, n_q: int, frames: int, level: LevelExtension | None, segment: int
                 ) -> tuple[np.ndarray | None, np.ndarray]:
    points = _decode_points(dec, family, channels, frames, level) if level is not None else None
    count = -(-frames // segment)
    table = segment_table(n_q).astype(np.float64) / TOTAL
    n_qs = n_q + np.cumsum(dec.decode(family, np.tile(table, (count, 1))).astype(np.int64) - len(table) // 2)
    if n_qs.min() < 1 or n_qs.max() > n_q:
        raise FormatError("a segment's codebook count is outside 1 … the chunk's n_q")
    return points, n_qs


def decode_side(payload: bytes, channels: int, n_q: int, frames: int, level: LevelExtension | None,
                segment: int) -> tuple[np.ndarray | None, np.ndarray]:
    """Only what a 2.x payload starts with (fixed tables, no entropy model): (level points `[C, ceil(F /
    spacing)]` or None, codebooks per segment `[ceil(F / segment)]`). What `neurocodec info` shows."""
    dec, family = _decoder(payload)
    with _decoding():
        return _decode_side(dec, family, channels, n_q, frames, level, segment)


def mix_bits(model: MixModel, codes: np.ndarray, n_qs: np.ndarray | None = None, segment: int = 1) -> float:
    """Ideal code length in bits of codes `[C, n_q, F]` under the mixed model (all codebooks at every frame, or
    `n_qs` per segment)."""
    channels, n_q, frames = codes.shape
    present = np.full(frames, n_q) if n_qs is None else frame_counts(n_qs, segment, frames)
    total = 0.0
    for ch in range(channels):
        qs, rows, symbols = mix_contexts(model, codes[ch], present)
        for q in np.unique(qs):
            sel = qs == q
            total -= float(np.log2(model.probs(int(q))[rows[sel], symbols[sel]]).sum())
    return total


def fit_mix(codes: list[np.ndarray], n_q: int, codebook_size: int, groups: int = 15, iterations: int = 12,
            prior: float = 0.5) -> MixModel:
    """Fit the 2.x experts to code sequences (each `[n_q', F]`, n_q' ≤ n_q): each expert's contexts by
    distributional clustering (as `fit`), its tables as log2-probabilities rounded to 1/8 bit."""
    k = codebook_size
    shape = (n_q, groups + 1, k)
    prev, coarse = np.zeros(shape, np.int64), np.zeros(shape, np.int64)
    prev_map, coarse_map = np.zeros((n_q, k), np.int64), np.zeros((n_q, k), np.int64)
    marginal = np.zeros((n_q, k), np.int64)

    def logs(counts: np.ndarray) -> np.ndarray:
        p = counts / counts.sum(axis=-1, keepdims=True)
        return np.clip(np.round(LOG_UNIT * np.log2(p)), -128, 127).astype(np.int64)

    for q in range(n_q):
        pair_prev = np.zeros((k, k))
        pair_coarse = np.zeros((k, k))
        counts = np.zeros(k)
        for seq in codes:
            if seq.shape[0] <= q or seq.shape[1] == 0:
                continue
            np.add.at(counts, seq[q], 1)
            np.add.at(pair_prev, (seq[q, :-1], seq[q, 1:]), 1)
            if q > 0:
                np.add.at(pair_coarse, (seq[q - 1], seq[q]), 1)
        marginal[q] = logs(counts + prior)
        for pair, table, cmap, used in ((pair_prev, prev, prev_map, True), (pair_coarse, coarse, coarse_map, q > 0)):
            table[q, groups] = marginal[q]
            if not used:
                table[q, :groups] = marginal[q]
                continue
            assign = _cluster(pair, groups, iterations, prior)
            cmap[q] = assign
            for gi in range(groups):
                table[q, gi] = logs(pair[assign == gi].sum(axis=0) + prior)
    model = MixModel(prev, prev_map, coarse, coarse_map, marginal)
    model.validate()
    return model
