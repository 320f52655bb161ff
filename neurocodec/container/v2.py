"""The 2.x framing (what the writer writes): chunk headers of variable-length integers checked by 16 bits of a
CRC-32, a delta-coded index, a 6-byte trailer; and the writer."""

from __future__ import annotations

import struct
from typing import BinaryIO

from ..errors import FormatError
from .chunk import Chunk, Miss, max_payload, miss, verified_chunk
from .header import MAX_CHUNK_FRAMES, MAX_VARINT, Header, crc32, read_varint, varint

CHUNK_SYNC = b"\xffC"
INDEX_SYNC = b"\xffX"
TRAILER_MAGIC = b"N\xff"
TRAILER = struct.Struct("<I2s")  # bytes from the index's first byte to the end of the file, end magic
CHUNK_MIN = 2 + 1 + 1 + 1 + 1 + 4 + 2  # sync, 1-byte varints and n_q, payload CRC, header check
CHUNK_MAX = 2 + 3 * MAX_VARINT + 1 + 4 + 2  # the same with 10-byte varints
MIN_CHUNK_BYTES = CHUNK_MIN
TRAILER_SIZE = TRAILER.size


def segment_frames(header: Header) -> int:
    """2.x chunks carry a codebook count per segment of this many frames."""
    return header.segment_frames


def chunk_header(first: int, frames: int, n_q: int, size: int, payload_crc: int) -> bytes:
    """A 2.x chunk header (any values: the writer checks them, tests of the reader need hostile ones)."""
    head = CHUNK_SYNC + varint(first) + varint(frames) + bytes([n_q % 256]) + varint(size) + \
        struct.pack("<I", payload_crc)
    return head + struct.pack("<H", crc32(head) & 0xFFFF)


def index_bytes(entries: list[tuple[int, int]], total: int, length: int, count: int | None = None) -> bytes:
    """A 2.x index of `entries` (byte offset, first frame) and the trailer after it (`count`: the count field, if
    not the entries')."""
    coded = _IndexEntries()
    for off, first in entries:
        coded.add(off, first)
    return coded.index(total, length, count)


class _IndexEntries:
    """An index's entries as they are written, already in their delta-coded bytes (a few bytes per chunk: an
    endless live stream's index stays small)."""

    def __init__(self):
        self.body, self.count, self.last_offset, self.last_frame = bytearray(), 0, 0, 0

    def add(self, offset: int, first: int) -> None:
        self.body += varint(max(0, offset - self.last_offset)) + varint(max(0, first - self.last_frame))
        self.count, self.last_offset, self.last_frame = self.count + 1, offset, first

    def index(self, total: int, length: int, count: int | None = None) -> bytes:
        body = INDEX_SYNC + varint(self.count if count is None else count) + varint(total) + varint(length) + \
            bytes(self.body)
        body += struct.pack("<I", crc32(body))
        return body + TRAILER.pack(len(body) + TRAILER.size, TRAILER_MAGIC)


class Writer:
    """Writes a 2.x .ncd stream front to back (never seeks, so stdout and pipes work)."""

    def __init__(self, out: BinaryIO, header: Header):
        self.out = out
        self.header = header
        self.pos = 0
        self.entries = _IndexEntries()
        self.next_frame = 0
        self._write(header.pack())

    def _write(self, data: bytes) -> None:
        self.out.write(data)
        self.pos += len(data)

    def write_chunk(self, payload: bytes, frame_count: int, n_q: int) -> None:
        if not 1 <= frame_count <= MAX_CHUNK_FRAMES:
            raise FormatError(f"chunk of {frame_count} frames: must be 1 to {MAX_CHUNK_FRAMES}")
        if not 1 <= n_q <= self.header.model_n_q:
            raise FormatError(f"chunk with {n_q} codebooks: the model has {self.header.model_n_q}")
        level = self.header.level
        if level is not None and self.next_frame % level.spacing_frames:
            raise FormatError(f"chunk at frame {self.next_frame}: with a level envelope, chunks start at multiples "
                              f"of {level.spacing_frames} frames")
        if len(payload) > max_payload(self.header.channels, n_q, frame_count, level, self.header.segment_frames):
            raise FormatError("chunk payload exceeds the format's bound")  # pragma: no cover - a coder bug
        self.entries.add(self.pos, self.next_frame)
        self._write(chunk_header(self.next_frame, frame_count, n_q, len(payload), crc32(payload)) + payload)
        self.next_frame += frame_count

    def close(self, length: int) -> None:
        """Write the index and trailer. `length`: samples per channel at the original rate."""
        self._write(self.entries.index(self.next_frame, length))


def chunk_at(data: bytes, pos: int, header: Header) -> Chunk | Miss:
    """A chunk whose header verifies at `pos`, or a one-line reason why there is none: sync, varints (first frame,
    frame count), n_q, varint payload size, payload CRC-32, then the low 16 bits of the CRC-32 of those bytes,
    checked before any field is trusted."""
    if data[pos: pos + 2] != CHUNK_SYNC:
        return miss("no chunk sync word")
    end = min(len(data), pos + CHUNK_MAX)
    try:
        first, at = read_varint(data, pos + 2, end)
        frames, at = read_varint(data, at, end)
        if at + 1 > end:
            raise FormatError("truncated")
        n_q = data[at]
        size, at = read_varint(data, at + 1, end)
    except FormatError:
        return miss("truncated or damaged chunk header")
    if at + 6 > len(data):
        return miss("truncated chunk header")
    payload_crc, check = struct.unpack_from("<IH", data, at)
    if crc32(data[pos: at + 4]) & 0xFFFF != check:
        return miss("chunk header check mismatch")
    head = Chunk(-1, first, frames, n_q, b"", pos, at + 6 - pos)
    return verified_chunk(data, pos, header, head, size, payload_crc, header.segment_frames)


def index_at(data: bytes, pos: int) -> tuple[int, int, int, int] | None:
    """(chunk count, total frames, length, end offset) if a verified index starts at `pos`: sync, varints (count,
    total frames, length), per chunk varints (offset and first frame, each as the change from the chunk before),
    CRC-32. The entries are checked by the CRC only when the count fits the bytes left (each takes at least two)."""
    if data[pos: pos + 2] != INDEX_SYNC:
        return None
    try:
        count, at = read_varint(data, pos + 2, len(data))
        frames, at = read_varint(data, at, len(data))
        length, at = read_varint(data, at, len(data))
        if count > (len(data) - at) // 2:
            return None
        for _ in range(2 * count):
            _, at = read_varint(data, at, len(data))
    except FormatError:
        return None
    if at + 4 > len(data) or crc32(data[pos:at]) != struct.unpack_from("<I", data, at)[0]:
        return None
    return count, frames, length, at + 4


def index_cost(data: bytes, pos: int) -> int:
    """Bytes an index candidate at `pos` makes the reader go over (0 where there is none)."""
    if data[pos: pos + len(INDEX_SYNC)] != INDEX_SYNC:
        return 0
    try:
        count = read_varint(data, pos + 2, len(data))[0]
    except FormatError:
        return 0
    return min(len(data) - pos, 2 * MAX_VARINT * count)


def trailer_intact(data: bytes, end: int, index_pos: int) -> bool:
    """The trailer at `end` (after the index at `index_pos`) is as written."""
    back, magic = TRAILER.unpack_from(data, end)
    return magic == TRAILER_MAGIC and back == end + TRAILER.size - index_pos
