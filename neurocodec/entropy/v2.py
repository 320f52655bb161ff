"""The 2.x context model: two experts mixed in the log domain, integers only, and the 2.x chunk payload.

Codebook q at frame t is conditioned on both things the decoder already has: the same codebook's code at frame
t - 1 ("prev", how the coarse description moves) and the same frame's code in codebook q - 1 ("coarse", what the
coarser stage chose). Each expert is a clustered table of log2-probabilities in 1/8-bit units (int8); they are
mixed as a product of experts over the marginal, L = prev[q, p] + coarse[q, c] - marginal[q], and L becomes
integer frequencies through a fixed integer power-of-two table. No floating point decides a frequency, so the
tables (and the codes they decode to) are the same on every machine and thread count.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field

import numpy as np

from ..codes import frame_counts
from ..errors import FormatError
from .rangecoder import (PRECISION, TOTAL, UNIFORM_SHA256, Envelope, check_room, cluster, decoder, decoding,
                         read_side, segment_table, write_points)

LOG_UNIT = 8  # log2-probabilities are stored in 1/8 bit
# 2**30 * 2**(-j / 8), j = 0..7, rounded: the only "exp" the mixer uses (integers, so identical everywhere).
_FRAC = np.array([1073741824, 984625563, 902905664, 827967972, 759250125, 696235378, 638450708, 585463278], np.int64)
_MAX_SHIFT = 28  # weights below 2**-28 of the largest are 0 before the floor of 1
MAX_FREQ = TOTAL // 2  # the mixer never gives a code more than half the mass
_DIFFS = np.arange(LOG_UNIT * _MAX_SHIFT + LOG_UNIT)
_WEIGHTS = _FRAC[_DIFFS % LOG_UNIT] >> (_DIFFS // LOG_UNIT)  # 2**30 * 2**(-d / 8) for every clipped difference d


def mix_freqs(logits: np.ndarray) -> np.ndarray:
    """Integer log2-probabilities in 1/8 bit `[..., K]` (int64) → frequencies `[..., K]` ≥ 1 summing to 2**16.

    w = 2**((L - max L) / 8) as `_FRAC[d % 8] >> (d // 8)`; f = 1 + floor(w * (2**16 - K) / sum w); what integer
    division leaves goes to the first most probable code; that code keeps at most 2**15, the others share the
    rest. Integer arithmetic only."""
    logits = np.asarray(logits, np.int64)
    k = logits.shape[-1]
    d = np.minimum(logits.max(axis=-1, keepdims=True) - logits, LOG_UNIT * _MAX_SHIFT + LOG_UNIT - 1)
    w = _WEIGHTS[d]
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
            # `mix_freqs` never gives a code more than MAX_FREQ (the trained models' tables reach it): the bound
            # holds without building every codebook's tables at each start.
            p_max = float(self.probs(0).max()) if self.is_uniform else MAX_FREQ / TOTAL
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


def encode_chunk_v2(model: MixModel, codes: np.ndarray, points: np.ndarray | None, level: Envelope | None,
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
    write_points(enc, family, points, level, channels, frames)
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


def decode_chunk_v2(model: MixModel, payload: bytes, channels: int, n_q: int, frames: int,
                    level: Envelope | None, segment: int
                    ) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
    """payload → (codes `[C, n_q, F]` int32 (0 where a segment coded fewer codebooks), level points
    `[C, ceil(F / spacing)]` or None, codebooks per segment `[ceil(F / segment)]`). Raises FormatError as
    `decode_chunk`, and for a segment count outside 1 … n_q."""
    dec, family = decoder(payload)
    if n_q > model.n_q:
        raise FormatError(f"{n_q} codebooks but the entropy model has {model.n_q}")
    # A codebook per frame at least before the segments' counts are known, then all the codes they claim.
    check_room(payload, channels * frames, model.min_bits_per_symbol, "it claims at least")
    codes = np.zeros((channels, n_q, frames), np.int32)
    g = model.groups
    with decoding():
        points, n_qs = read_side(dec, family, channels, n_q, frames, level, segment)
        present = frame_counts(n_qs, segment, frames)
        check_room(payload, channels * int(present.sum()), model.min_bits_per_symbol)
        tables = [model.probs(q) for q in range(n_q)]
        # Python ints and lists in the loop: it runs once per code, and NumPy scalars cost more than the decode.
        pmap, cmap, counts = model.prev_map.tolist(), model.coarse_map.tolist(), present.tolist()
        for ch in range(channels):
            out = [[0] * frames for _ in range(n_q)]
            last = [0] * n_q  # each codebook's code at the previous frame
            before = 0
            for t in range(frames):
                up = counts[t]
                coarse_row = g
                for q in range(up):
                    row = (pmap[q][last[q]] if q < before else g) * (g + 1) + coarse_row
                    code = int(dec.decode(family, tables[q][row:row + 1])[0])
                    out[q][t] = last[q] = code
                    if q + 1 < up:
                        coarse_row = cmap[q + 1][code]
                before = up
            codes[ch] = out
    if not dec.maybe_exhausted():
        raise FormatError("payload holds data past its last code")
    return codes, points, n_qs


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
            assign = cluster(pair, groups, iterations, prior)
            cmap[q] = assign
            for gi in range(groups):
                table[q, gi] = logs(pair[assign == gi].sum(axis=0) + prior)
    model = MixModel(prev, prev_map, coarse, coarse_map, marginal)
    model.validate()
    return model

