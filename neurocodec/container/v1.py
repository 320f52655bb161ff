"""The 1.x framing (read only, so that files written before 2.0 still decode): fixed-size chunk headers with a
CRC-32, a fixed-size index and trailer."""

from __future__ import annotations

import struct

from .chunk import Chunk, Miss, miss, verified_chunk
from .header import Header, crc32

CHUNK_SYNC = b"\xffNCK"
INDEX_SYNC = b"\xffNCX"
TRAILER_MAGIC = b"NCD\xff"
CHUNK = struct.Struct("<4sIQHBBII")  # sync, index, first frame, frames, n_q, flags, payload size, payload CRC
CHUNK_HEADER_SIZE = CHUNK.size + 4  # + header CRC
INDEX_HEAD = struct.Struct("<4sIQQ")  # sync, chunk count, total frames, length
INDEX_ENTRY = struct.Struct("<QQ")  # byte offset, first frame
TRAILER = struct.Struct("<QI4s")  # index offset, CRC of the index offset, end magic
MIN_CHUNK_BYTES = CHUNK_HEADER_SIZE  # the fewest bytes a chunk takes (how many chunks damaged bytes could hold)


def segment_frames(header: Header) -> None:
    """1.x chunks carry no codebook counts per segment."""
    return None


def chunk_at(data: bytes, pos: int, header: Header) -> Chunk | Miss:
    """A chunk whose header verifies at `pos`, or a one-line reason why there is none."""
    if pos + CHUNK_HEADER_SIZE > len(data):
        return miss("truncated chunk header")
    sync, index, first, frames, n_q, _flags, size, payload_crc = CHUNK.unpack_from(data, pos)
    if sync != CHUNK_SYNC:
        return miss("no chunk sync word")
    if crc32(data[pos: pos + CHUNK.size]) != struct.unpack_from("<I", data, pos + CHUNK.size)[0]:
        return miss("chunk header CRC-32 mismatch")
    head = Chunk(index, first, frames, n_q, b"", pos, CHUNK_HEADER_SIZE)
    return verified_chunk(data, pos, header, head, size, payload_crc, None)


def index_at(data: bytes, pos: int) -> tuple[int, int, int, int] | None:
    """(chunk count, total frames, length, end offset) if a verified index starts at `pos`."""
    if pos + INDEX_HEAD.size + 4 > len(data) or data[pos: pos + 4] != INDEX_SYNC:
        return None
    _, count, frames, length = INDEX_HEAD.unpack_from(data, pos)
    if count > (len(data) - pos - INDEX_HEAD.size) // INDEX_ENTRY.size:
        return None
    end = pos + INDEX_HEAD.size + count * INDEX_ENTRY.size
    if end + 4 > len(data) or crc32(data[pos:end]) != struct.unpack_from("<I", data, end)[0]:
        return None
    return count, frames, length, end + 4


def index_cost(data: bytes, pos: int) -> int:
    """Bytes an index candidate at `pos` makes the reader go over (0 where there is none)."""
    if data[pos: pos + len(INDEX_SYNC)] != INDEX_SYNC or pos + INDEX_HEAD.size > len(data):
        return 0
    count = INDEX_HEAD.unpack_from(data, pos)[1]
    return count * INDEX_ENTRY.size if count <= (len(data) - pos - INDEX_HEAD.size) // INDEX_ENTRY.size else 0


TRAILER_SIZE = TRAILER.size


def trailer_intact(data: bytes, end: int, index_pos: int) -> bool:
    """The trailer at `end` (after the index at `index_pos`) is as written."""
    _, trailer_crc, magic = TRAILER.unpack_from(data, end)
    return magic == TRAILER_MAGIC and trailer_crc == crc32(data[end: end + 8])
