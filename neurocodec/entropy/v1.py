"""The 1.x context model (read so that files written before 2.0 still decode; `neurocodec fit-entropy` fits it too).

Codebook q at frame t is coded with a table chosen by a context:
  * q = 0: the previous frame's code in codebook 0 (the coarse codes move slowly);
  * q > 0: the same frame's code in codebook q - 1 (what the coarser stage chose shapes the residual).
A context is not the raw code but a cluster of codes: `context_map[q, code]` ∈ [0, n_contexts - 1), fitted so
that codes with similar successor distributions share a table. Context `n_contexts - 1` is the "no context" table
(the first frame of a chunk, for q = 0).
"""

from __future__ import annotations

import numpy as np

from ..errors import FormatError
from .rangecoder import (PRECISION, TOTAL, Envelope, check_room, cluster, decoder, decoding, quantize_table,
                         read_points, write_points)
from .tables import EntropyModel


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


def encode_chunk(model: EntropyModel, codes: np.ndarray, points: np.ndarray | None = None,
                 level: Envelope | None = None) -> bytes:
    """codes `[C, n_q, F]` (and level `points` `[C, ceil(F / spacing)]` with `level`) → payload bytes: one
    range-coder state for the chunk; the points of every channel first, then codes in channel, codebook, frame
    order."""
    import constriction

    channels, n_q, frames = codes.shape
    if n_q > model.n_q:
        raise FormatError(f"{n_q} codebooks but the entropy model has {model.n_q}")
    family = constriction.stream.model.Categorical(perfect=False)
    enc = constriction.stream.queue.RangeEncoder()
    write_points(enc, family, points, level, channels, frames)
    for c in range(channels):
        ctx = contexts(model, codes[c])
        for q in range(n_q):
            enc.encode(codes[c, q].astype(np.int32), family, _probs(model, q, ctx[q]))
    return enc.get_compressed().astype("<u4").tobytes()


def decode_chunk(model: EntropyModel, payload: bytes, channels: int, n_q: int, frames: int,
                 level: Envelope | None = None) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """payload → codes `[C, n_q, F]` int32, and with `level` → (codes, points `[C, ceil(F / spacing)]` int64).
    Raises FormatError for a payload that is not a whole number of words, that is too short for the codes it
    claims (so decoding work is tied to the bytes in the file), that holds data past its last code (the decoder
    must consume its payload), or a level point outside the envelope's range (never trusted)."""
    dec, family = decoder(payload)
    if n_q > model.n_q:
        raise FormatError(f"{n_q} codebooks but the entropy model has {model.n_q}")
    check_room(payload, channels * n_q * frames, model.min_bits_per_symbol)
    codes = np.empty((channels, n_q, frames), np.int32)
    start = model.n_contexts - 1
    with decoding():
        if level is not None:
            points = read_points(dec, family, channels, frames, level)
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
            assign = cluster(pair, groups, iterations, prior)
            cmap[q] = assign
            for g in range(groups):
                freqs[q, g] = quantize_table(pair[assign == g].sum(axis=0) + prior)
        freqs[q, n_contexts - 1] = quantize_table(marginal + prior)
    return EntropyModel(freqs, cmap)


