"""What both layouts' chunks have in common: the chunk as read, the parsed file, the payload bound, and the checks
made once a chunk header has verified."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from .header import MAX_CHUNK_FRAMES, MAX_FRAME, Header, LevelExtension, crc32

MAX_BITS_PER_SYMBOL = 32  # a range coder with 24-bit probabilities never spends more per symbol


@dataclass(frozen=True)
class Chunk:
    """One independently decodable run of frames. `payload` is the entropy coder's output."""

    index: int  # 1.x chunks carry a number; 2.x chunks -1 (named by their first frame)
    first_frame: int
    frame_count: int
    n_q: int
    payload: bytes
    offset: int = 0  # byte offset of the chunk in the file (set by the reader)
    header_size: int = 0  # bytes before the payload (1.x: 40; 2.x: 12 to 26)

    @property
    def size(self) -> int:
        return self.header_size + len(self.payload)

    @property
    def label(self) -> str:
        """How messages name it: 1.x chunks carry a number, 2.x chunks are named by their first frame."""
        return f"chunk {self.index}" if self.index >= 0 else f"chunk at frame {self.first_frame}"


@dataclass
class ParsedFile:
    """What a reader recovered. `damage` lists, one line each, everything found wrong (empty: an intact file)."""

    header: Header
    chunks: list[Chunk]
    length: int | None  # samples per channel: the index's figure, else the header's, else None
    total_frames: int | None
    size: int
    damage: list[str] = field(default_factory=list)
    lost: list[tuple[int, int]] = field(default_factory=list)  # [first frame, end frame) not recoverable


def max_payload(channels: int, n_q: int, frames: int, level: LevelExtension | None = None,
                segment_frames: int | None = None) -> int:
    """The largest payload a valid chunk can have: bounds every allocation before the data is decoded.
    `segment_frames`: 2.x chunks also carry a codebook count per segment (shared by the channels)."""
    symbols = channels * (n_q * frames + (level.points(frames) if level else 0))
    symbols += -(-frames // segment_frames) if segment_frames else 0
    return 4 * (-(-(symbols * MAX_BITS_PER_SYMBOL) // 32)) + 16


class Miss(str):
    """Why no chunk verifies at a position; `spent`: payload bytes checksummed in vain (a verified header whose
    payload failed its CRC)."""

    spent = 0


def miss(reason: str, spent: int = 0) -> Miss:
    out = Miss(reason)
    out.spent = spent
    return out


def verified_chunk(data: bytes, pos: int, header: Header, head: Chunk, size: int, payload_crc: int,
                   segment_frames: int | None) -> Chunk | Miss:
    """After a chunk header verified (its fields are as written, `head` without its payload): refuse values no
    writer produces, then bound, find and check the payload of `size` bytes (both layouts; `segment_frames`: the
    layout's segment counts, None in 1.x)."""
    first, frames, n_q = head.first_frame, head.frame_count, head.n_q
    if not 1 <= frames <= MAX_CHUNK_FRAMES or not 1 <= n_q <= header.model_n_q or first > MAX_FRAME:
        return miss(f"chunk header out of bounds ({frames} frames, {n_q} codebooks)")
    if size > max_payload(header.channels, n_q, frames, header.level, segment_frames):
        return miss(f"chunk payload size {size} exceeds the bound for its frames")
    if header.level is not None and first % header.level.spacing_frames:
        return miss(f"chunk starts at frame {first}, not a multiple of the level envelope's "
                    f"{header.level.spacing_frames}")
    start = pos + head.header_size
    if start + size > len(data):
        return miss(f"{head.label} truncated: payload needs {size} bytes, {len(data) - start} left")
    payload = data[start: start + size]
    if crc32(payload) != payload_crc:
        return miss(f"{head.label} (frames {first}-{first + frames - 1}) payload CRC-32 mismatch", size)
    return dataclasses.replace(head, payload=payload)
