"""Codes as they travel between the model, variable rate and the file: `[C, n_q, F]` integer arrays where -1
marks a codebook a frame does not keep (the decoder adds nothing for it), and the code blocks of a stream. NumPy
only: the container's payload layout and the model's streams both use it.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np


class CodeBlock(NamedTuple):
    codes: np.ndarray  # [C, n_q, k] int64 (-1: a codebook this frame does not keep)
    points: np.ndarray | None  # [C, j]: the level envelope's next points (they run ahead of the codes), or None


def frame_counts(n_qs: np.ndarray, segment: int, frames: int) -> np.ndarray:
    """Codebooks per frame `[F]` from codebooks per segment `[ceil(F / segment)]`."""
    return np.repeat(np.asarray(n_qs, np.int64), segment)[:frames]


def keep_codebooks(codes: np.ndarray, present: np.ndarray) -> np.ndarray:
    """codes `[C, n_q, F]` as a reader decodes them: -1 (absent, the decoder adds nothing) beyond each frame's
    `present` `[F]` codebooks."""
    return np.where(np.arange(codes.shape[1])[None, :, None] < np.asarray(present)[None, None, :], codes, -1)


def present_counts(codes: np.ndarray) -> np.ndarray:
    """codes `[C, n_q, F]` → codebooks each frame keeps `[F]` (those before the first -1 of channel 0; the
    channels share their counts)."""
    kept = np.asarray(codes[0]) >= 0 if codes.shape[0] else np.zeros(codes.shape[1:], bool)
    return np.cumprod(kept, axis=0).sum(axis=0)


def join_blocks(blocks: list[CodeBlock], channels: int, n_q: int) -> CodeBlock:
    """Code blocks in order → one (codes `[C, n_q, k]`, points `[C, j]`, each possibly empty)."""
    codes = [np.zeros((channels, n_q, 0), np.int64)] + [b.codes for b in blocks]
    points = [np.zeros((channels, 0), np.int64)] + [b.points for b in blocks if b.points is not None]
    return CodeBlock(np.concatenate(codes, axis=-1), np.concatenate(points, axis=-1))
