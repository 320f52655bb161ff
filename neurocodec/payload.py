"""Chunk payloads, one layout per format generation, chosen once from a file's header (`layout`): how a chunk's
payload becomes codes and side information, the fewest bits a code can cost, and which tables' identity the header
names. The writer writes 2.x only (`encode_chunk`).

1.x: level points, then codes under the 1.x context model (`entropy.v1`), all chunk codebooks at every frame.
2.x: level points, codebook counts per segment, then codes under the mixed context model (`entropy.v2`); codes a
segment does not keep come back as -1.
"""

from __future__ import annotations

import numpy as np

from . import entropy
from .codes import CodeBlock, frame_counts, keep_codebooks, present_counts
from .container import Chunk, Header
from .entropy import EntropyModel


class Layout1:
    """The 1.x payload (read only)."""

    def __init__(self, header: Header):
        self.header = header

    def tables_sha256(self, tables: EntropyModel) -> str:
        return tables.sha256

    def min_bits(self, tables: EntropyModel) -> float:
        """The fewest bits a code costs under these tables (what a payload must hold per code it claims)."""
        return tables.min_bits_per_symbol

    def decode(self, chunk: Chunk, tables: EntropyModel) -> np.ndarray | CodeBlock:
        """payload → codes `[C, n_q, F]`, or a `CodeBlock` with the level points for a file that has them.
        Raises FormatError."""
        h = self.header
        block = entropy.decode_chunk(tables, chunk.payload, h.channels, chunk.n_q, chunk.frame_count, h.level)
        return CodeBlock(*block) if h.level is not None else block

    def side(self, chunk: Chunk) -> tuple[np.ndarray | None, np.ndarray]:
        """(level points `[C, P]` or None, codebooks per frame `[F]`) without the entropy tables."""
        h = self.header
        points = entropy.decode_points(chunk.payload, h.channels, chunk.frame_count, h.level) if h.level else None
        return points, np.full(chunk.frame_count, chunk.n_q)


class Layout2:
    """The 2.x payload (what the writer writes)."""

    def __init__(self, header: Header):
        self.header = header

    def tables_sha256(self, tables: EntropyModel) -> str:
        return tables.coder.sha256

    def min_bits(self, tables: EntropyModel) -> float:
        return tables.coder.min_bits_per_symbol

    def decode(self, chunk: Chunk, tables: EntropyModel) -> np.ndarray | CodeBlock:
        """payload → codes `[C, n_q, F]` (-1 where a segment coded fewer codebooks), or a `CodeBlock` with the level
        points for a file that has them. Raises FormatError."""
        h = self.header
        codes, points, n_qs = entropy.decode_chunk_v2(tables.coder, chunk.payload, h.channels, chunk.n_q,
                                                      chunk.frame_count, h.level, h.segment_frames)
        codes = keep_codebooks(codes, frame_counts(n_qs, h.segment_frames, chunk.frame_count))
        return CodeBlock(codes, points) if h.level is not None else codes

    def side(self, chunk: Chunk) -> tuple[np.ndarray | None, np.ndarray]:
        h = self.header
        points, counts = entropy.decode_side(chunk.payload, h.channels, chunk.n_q, chunk.frame_count, h.level,
                                             h.segment_frames)
        return points, frame_counts(counts, h.segment_frames, chunk.frame_count)


Layout = Layout1 | Layout2
_LAYOUTS = {1: Layout1, 2: Layout2}


def layout(header: Header) -> Layout:
    """The payload layout of the header's generation (the container only reads headers it knows)."""
    return _LAYOUTS[header.version_major](header)


def encode_chunk(tables: EntropyModel, header: Header, codes: np.ndarray, points: np.ndarray | None
                 ) -> tuple[bytes, int]:
    """A 2.x chunk: codes `[C, n_q, F]` (-1 beyond the codebooks a frame keeps; each segment of
    `header.segment_frames` keeps one count) and level points `[C, ceil(F / spacing)]` → (payload, the chunk's
    n_q: its largest segment count)."""
    segment = header.segment_frames
    counts = present_counts(codes)[::segment]
    top = int(counts.max())
    return entropy.encode_chunk_v2(tables.coder, codes[:, :top], points, header.level, counts, segment), top
