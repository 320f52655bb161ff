"""The `.ncd` container: reader of versions 1.x and 2.x, writer of 2.x. The byte-level contract is `formats/ncd.md`.

Version 2 is the lean layout (variable-length integers, 16-byte chunk headers, a delta-coded index, chunks sized
by bitrate); version 1 is read so that files written before it still decode.

No torch here: the container knows bytes, lengths and checksums, not models. Every length read from a file is
checked against a fixed bound and against what is left of the file before it is used, and a chunk's payload
length is trusted only after the chunk header's CRC-32 matched. A CRC proves that a field is as written, not that
it is sane: frame numbers, frame counts and lengths are also checked against what the bytes present can hold
(`ParsedFile.length` and the lost frames never exceed what the file's chunks and index justify), and
resynchronisation after damage costs time linear in the file's size.
"""

from __future__ import annotations

import dataclasses
import struct
import zlib
from dataclasses import dataclass, field
from typing import BinaryIO

from .errors import FormatError

MAGIC = b"\x89NCD\r\n\x1a\n"  # high bit catches 7-bit channels; CR LF / LF / ^Z catch text-mode damage
VERSION_MAJOR = 2  # what the writer writes
VERSION_MINOR = 0
READ_MAJORS = (1, 2)
UNKNOWN_LENGTH = 0xFFFF_FFFF_FFFF_FFFF

CHUNK_SYNC = b"\xffNCK"
INDEX_SYNC = b"\xffNCX"
TRAILER_MAGIC = b"NCD\xff"

MAX_HEADER = 4096
MAX_NAME = 64
MAX_CHANNELS = 255
MIN_SAMPLE_RATE = 1_000  # of the original audio and of the model: below it nothing is audio, and resampling
MAX_SAMPLE_RATE = 768_000  # to it costs without bound; the top is the highest PCM rate in common use
MAX_HOP = 1 << 16
MAX_MODEL_N_Q = 255  # a chunk's n_q is one byte
MAX_CODEBOOK_SIZE = 1 << 16
MAX_CHUNK_FRAMES = 4096
MAX_BITS_PER_SYMBOL = 32  # a range coder with 24-bit probabilities never spends more per symbol

# prefix: magic, major, minor, header size
PREFIX = struct.Struct("<8sBBH")
# fixed header fields after the prefix
FIXED = struct.Struct("<IHHIIIQ32s32sB")
CHUNK = struct.Struct("<4sIQHBBII")  # sync, index, first frame, frames, n_q, flags, payload size, payload CRC
CHUNK_HEADER_SIZE = CHUNK.size + 4  # + header CRC
INDEX_HEAD = struct.Struct("<4sIQQ")  # sync, chunk count, total frames, length
INDEX_ENTRY = struct.Struct("<QQ")  # byte offset, first frame
TRAILER = struct.Struct("<QI4s")  # index offset, CRC of the index offset, end magic

EXT_CRITICAL = 0x8000
EXT_LEVEL = 0x8001  # critical: every chunk's payload starts with the level envelope's points
LEVEL = struct.Struct("<HhhHh")  # spacing frames, target (0.01 dB), floor (0.01 dB), levels, step (0.01 dB)
MAX_LEVEL_POINTS = 256

# Version 2: the lean layout.
CHUNK_SYNC_V2 = b"\xffC"
INDEX_SYNC_V2 = b"\xffX"
TRAILER_MAGIC_V2 = b"N\xff"
TRAILER_V2 = struct.Struct("<I2s")  # bytes from the index's first byte to the end of the file, end magic
ID_BYTES = 8  # model and entropy identities: the first 8 bytes of their SHA-256
MAX_VARINT = 10  # bytes of a LEB128 integer below 2**64
MAX_FRAME = 1 << 48  # a chunk's first frame above this is out of spec, either layout (10^5 years at 75 Hz)
CHUNK_MIN_V2 = 2 + 1 + 1 + 1 + 1 + 4 + 2  # sync, 1-byte varints and n_q, payload CRC, header check
CHUNK_MAX_V2 = 2 + 3 * MAX_VARINT + 1 + 4 + 2  # the same with 10-byte varints
MAX_SEGMENT = MAX_CHUNK_FRAMES


def crc32(data: bytes) -> int:
    return zlib.crc32(data) & 0xFFFF_FFFF


def varint(value: int) -> bytes:
    """Unsigned LEB128: 7 bits per byte, low first, high bit set on all but the last."""
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def read_varint(data: bytes, pos: int, limit: int) -> tuple[int, int]:
    """(value, position after it) of the LEB128 integer at `pos`, which must end before `limit` and take at most
    `MAX_VARINT` bytes; raises FormatError otherwise."""
    value = shift = 0
    for i in range(pos, min(limit, pos + MAX_VARINT)):
        value |= (data[i] & 0x7F) << shift
        if not data[i] & 0x80:
            return value, i + 1
        shift += 7
    raise FormatError(f"variable-length integer at byte {pos} runs past its field")


@dataclass(frozen=True)
class LevelExtension:
    """The level envelope's parameters (extension `EXT_LEVEL`): a point every `spacing_frames` frames, point `i`
    meaning `floor_db + i * step_db` dBFS, `0 ≤ i < levels`; the model saw the audio scaled to `target_db`."""

    spacing_frames: int
    target_db: float
    floor_db: float
    step_db: float
    levels: int

    def pack(self) -> bytes:
        return LEVEL.pack(self.spacing_frames, round(self.target_db * 100), round(self.floor_db * 100),
                          self.levels, round(self.step_db * 100))

    @classmethod
    def unpack(cls, value: bytes) -> "LevelExtension":
        """Out-of-spec values are refused: they decide gains."""
        if len(value) != LEVEL.size:
            raise FormatError(f"level extension of {len(value)} bytes, expected {LEVEL.size}")
        spacing, target, floor, levels, step = LEVEL.unpack(value)
        if not (1 <= spacing <= MAX_CHUNK_FRAMES and 2 <= levels <= MAX_LEVEL_POINTS and 1 <= step <= 600
                and -9000 <= floor <= 0 and -6000 <= target <= 0 and floor + (levels - 1) * step <= 2400):
            raise FormatError("level extension out of spec (spacing, levels, step, floor or target)")
        return cls(spacing, target / 100, floor / 100, step / 100, levels)

    def points(self, frames: int) -> int:
        """Points in a chunk of `frames` frames (one at each multiple of `spacing_frames` from its start)."""
        return -(-frames // self.spacing_frames)


@dataclass(frozen=True)
class Header:
    """File-level facts. `length` is samples per channel at `sample_rate`, or None when unknown at write time."""

    sample_rate: int
    channels: int
    length: int | None
    model_name: str
    model_sha256: str  # hex
    entropy_sha256: str  # hex; all zeros: uniform (fixed-width equivalent) coding
    model_n_q: int
    codebook_size: int
    hop_length: int
    model_sample_rate: int
    extensions: tuple[tuple[int, bytes], ...] = ()  # (tag, value) of the optional fields
    version_minor: int = VERSION_MINOR  # as read
    level: LevelExtension | None = None  # the level envelope, if the file carries one (versions 1.1 and 2.x)
    version_major: int = VERSION_MAJOR  # as read; the writer writes 2
    segment_frames: int = 15  # 2.x: frames per segment of a chunk's codebook counts (VBR)

    def check(self) -> None:
        """Refuse values outside the format's limits (the reader refuses the same values)."""
        if len(self.model_name.encode("utf-8")) > MAX_NAME:
            raise FormatError(f"model name longer than {MAX_NAME} bytes: {self.model_name!r}")
        if not 1 <= self.channels <= MAX_CHANNELS:
            raise FormatError(f"{self.channels} channels: .ncd holds 1 to {MAX_CHANNELS}")
        for what, value in (("sample rate", self.sample_rate), ("model sample rate", self.model_sample_rate)):
            if not MIN_SAMPLE_RATE <= value <= MAX_SAMPLE_RATE:
                raise FormatError(f"{what} {value} Hz: .ncd holds {MIN_SAMPLE_RATE} to {MAX_SAMPLE_RATE} Hz")
        if not 1 <= self.model_n_q <= MAX_MODEL_N_Q or not 2 <= self.codebook_size <= MAX_CODEBOOK_SIZE:
            raise FormatError(f"model of {self.model_n_q} codebooks of {self.codebook_size} codes: .ncd holds 1 to "
                              f"{MAX_MODEL_N_Q} codebooks of 2 to {MAX_CODEBOOK_SIZE} codes")
        if not 1 <= self.hop_length <= MAX_HOP:
            raise FormatError(f"hop_length {self.hop_length}: .ncd holds 1 to {MAX_HOP}")
        if not 1 <= self.segment_frames <= MAX_SEGMENT:
            raise FormatError(f"segment of {self.segment_frames} frames: .ncd holds 1 to {MAX_SEGMENT}")

    def max_samples(self, frames: int) -> int:
        """The most samples per channel at `sample_rate` that `frames` frames can describe (+1 for rounding)."""
        return -(-frames * self.hop_length * self.sample_rate // self.model_sample_rate) + 1

    @property
    def chunk_sync(self) -> bytes:
        return CHUNK_SYNC if self.version_major == 1 else CHUNK_SYNC_V2

    @property
    def index_sync(self) -> bytes:
        return INDEX_SYNC if self.version_major == 1 else INDEX_SYNC_V2

    @property
    def min_chunk_bytes(self) -> int:
        """The fewest bytes a chunk of this layout takes (how many chunks damaged bytes could have held)."""
        return CHUNK_HEADER_SIZE if self.version_major == 1 else CHUNK_MIN_V2

    def pack(self, check: bool = True) -> bytes:
        """The header in the 2.x layout (the writer writes no other). `check=False` packs out-of-spec values too
        (for tests of the reader)."""
        if check:
            self.check()
        name = self.model_name.encode("utf-8")
        body = b"".join(varint(v) for v in (
            self.sample_rate, self.channels, self.model_n_q, self.codebook_size, self.hop_length,
            self.model_sample_rate, 0 if self.length is None else self.length + 1, self.segment_frames))
        body += bytes.fromhex(self.model_sha256)[:ID_BYTES] + bytes.fromhex(self.entropy_sha256)[:ID_BYTES]
        body += bytes([len(name)]) + name
        fields = list(self.extensions) + ([(EXT_LEVEL, self.level.pack())] if self.level else [])
        for tag, value in fields:
            body += struct.pack("<HH", tag, len(value)) + value
        size = PREFIX.size + len(body) + 4
        if size > MAX_HEADER:
            raise FormatError(f"header of {size} bytes exceeds {MAX_HEADER}")
        head = PREFIX.pack(MAGIC, VERSION_MAJOR, VERSION_MINOR, size) + body
        return head + struct.pack("<I", crc32(head))


@dataclass(frozen=True)
class Chunk:
    """One independently decodable run of frames. `payload` is the entropy coder's output."""

    index: int
    first_frame: int
    frame_count: int
    n_q: int
    payload: bytes
    offset: int = 0  # byte offset of the chunk in the file (set by the reader)
    header_size: int = CHUNK_HEADER_SIZE  # bytes before the payload (2.x: 12 to 26)

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


class Writer:
    """Writes a 2.x .ncd stream front to back (never seeks, so stdout and pipes work)."""

    def __init__(self, out: BinaryIO, header: Header):
        self.out = out
        self.header = header
        self.pos = 0
        self.entries: list[tuple[int, int]] = []
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
        self.entries.append((self.pos, self.next_frame))
        self._write(chunk_header(self.next_frame, frame_count, n_q, len(payload), crc32(payload)) + payload)
        self.next_frame += frame_count

    def close(self, length: int) -> None:
        """Write the index and trailer. `length`: samples per channel at the original rate."""
        self._write(index_bytes(self.entries, self.next_frame, length))


def chunk_header(first: int, frames: int, n_q: int, size: int, payload_crc: int) -> bytes:
    """A 2.x chunk header (any values: the writer checks them, tests of the reader need hostile ones)."""
    head = CHUNK_SYNC_V2 + varint(first) + varint(frames) + bytes([n_q % 256]) + varint(size) + \
        struct.pack("<I", payload_crc)
    return head + struct.pack("<H", crc32(head) & 0xFFFF)


def index_bytes(entries: list[tuple[int, int]], total: int, length: int, count: int | None = None) -> bytes:
    """A 2.x index of `entries` (byte offset, first frame) and the trailer after it (`count`: the count field, if
    not the entries')."""
    body = INDEX_SYNC_V2 + varint(len(entries) if count is None else count) + varint(total) + varint(length)
    last_offset = last_frame = 0
    for off, first in entries:
        body += varint(max(0, off - last_offset)) + varint(max(0, first - last_frame))
        last_offset, last_frame = off, first
    body += struct.pack("<I", crc32(body))
    return body + TRAILER_V2.pack(len(body) + TRAILER_V2.size, TRAILER_MAGIC_V2)


def parse_header(data: bytes) -> tuple[Header, int]:
    """Header from the start of `data` → (header, its size). Any fault here is fatal: nothing else can be trusted."""
    if len(data) < PREFIX.size:
        if MAGIC.startswith(data[: len(MAGIC)]):
            raise FormatError(f"truncated .ncd file: {len(data)} bytes, too short for a header")
        raise FormatError("not an .ncd file (too short, wrong magic)")
    magic, major, minor, size = PREFIX.unpack_from(data)
    if magic != MAGIC:
        if magic[1:4] == b"NCD" or data[1:4] == b"NCD":
            raise FormatError("damaged .ncd magic at byte 0: line endings were converted (opened in text mode?) "
                              "or the file was sent through a 7-bit channel")
        raise FormatError("not an .ncd file (wrong magic at byte 0)")
    if major not in READ_MAJORS:
        raise FormatError(f".ncd major version {major} is not supported (this reader knows "
                          f"{', '.join(f'{m}.x' for m in READ_MAJORS)})")
    smallest = PREFIX.size + (FIXED.size if major == 1 else 8 + 2 * ID_BYTES + 1) + 4
    if not smallest <= size <= MAX_HEADER:
        raise FormatError(f"header size {size} at byte 10 is out of bounds: the header is damaged")
    if len(data) < size:
        raise FormatError(f"truncated .ncd file: {len(data)} bytes, the header alone needs {size}")
    stored = struct.unpack_from("<I", data, size - 4)[0]
    if crc32(data[: size - 4]) != stored:
        raise FormatError("header CRC-32 mismatch (bytes 0-%d): the header is damaged" % (size - 1))
    end = size - 4
    segment = 15
    if major == 1:
        (sample_rate, channels, model_n_q, codebook_size, hop, model_sr, length, model_sha, entropy_sha,
         name_len) = FIXED.unpack_from(data, PREFIX.size)
        pos = PREFIX.size + FIXED.size
        length = None if length == UNKNOWN_LENGTH else length
    else:
        pos, values = PREFIX.size, []
        for _ in range(8):
            value, pos = read_varint(data, pos, end)
            values.append(value)
        sample_rate, channels, model_n_q, codebook_size, hop, model_sr, length, segment = values
        length = None if length == 0 else length - 1
        if pos + 2 * ID_BYTES + 1 > end:
            raise FormatError("header fields run past the header: the header is damaged")
        model_sha, entropy_sha = data[pos: pos + ID_BYTES], data[pos + ID_BYTES: pos + 2 * ID_BYTES]
        name_len = data[pos + 2 * ID_BYTES]
        pos += 2 * ID_BYTES + 1
    if name_len > MAX_NAME:
        raise FormatError(f"model name length {name_len} exceeds {MAX_NAME}: the header is out of spec")
    if pos + name_len > size - 4:
        raise FormatError("model name runs past the header: the header is damaged")
    try:
        name = data[pos: pos + name_len].decode("utf-8")
    except UnicodeDecodeError:
        raise FormatError("model name is not UTF-8: the header is damaged") from None
    pos += name_len
    extensions = []
    level = None
    while pos < size - 4:
        if pos + 4 > size - 4:
            raise FormatError(f"extension field at byte {pos} runs past the header")
        tag, ext_len = struct.unpack_from("<HH", data, pos)
        if pos + 4 + ext_len > size - 4:
            raise FormatError(f"extension field 0x{tag:04x} at byte {pos} runs past the header")
        value = data[pos + 4: pos + 4 + ext_len]
        if tag == EXT_LEVEL and level is None:
            try:
                level = LevelExtension.unpack(value)
            except FormatError as exc:
                raise FormatError(f"header out of spec at byte {pos}: {exc}") from None
        elif tag & EXT_CRITICAL:
            raise FormatError(f"unknown critical extension 0x{tag:04x} at byte {pos}: needs a newer reader")
        else:
            extensions.append((tag, value))  # unknown and optional: kept, not interpreted
        pos += 4 + ext_len
    header = Header(sample_rate, channels, length, name, model_sha.hex(), entropy_sha.hex(), model_n_q,
                    codebook_size, hop, model_sr, tuple(extensions), minor, level, major, segment)
    try:
        header.check()
    except FormatError as exc:
        raise FormatError(f"header out of spec: {exc}") from None
    return header, size


class Miss(str):
    """Why no chunk verifies at a position; `spent`: payload bytes checksummed in vain (a verified header whose
    payload failed its CRC)."""

    spent = 0


def _miss(reason: str, spent: int = 0) -> Miss:
    miss = Miss(reason)
    miss.spent = spent
    return miss


def _chunk_at(data: bytes, pos: int, header: Header) -> Chunk | Miss:
    """A chunk whose header verifies at `pos`, or a one-line reason why there is none."""
    if header.version_major != 1:
        return _chunk_at_v2(data, pos, header)
    if pos + CHUNK_HEADER_SIZE > len(data):
        return _miss("truncated chunk header")
    sync, index, first, frames, n_q, _flags, size, payload_crc = CHUNK.unpack_from(data, pos)
    if sync != CHUNK_SYNC:
        return _miss("no chunk sync word")
    if crc32(data[pos: pos + CHUNK.size]) != struct.unpack_from("<I", data, pos + CHUNK.size)[0]:
        return _miss("chunk header CRC-32 mismatch")
    return _verified_chunk(data, pos, header, Chunk(index, first, frames, n_q, b"", pos), size, payload_crc)


def _chunk_at_v2(data: bytes, pos: int, header: Header) -> Chunk | Miss:
    """`_chunk_at` for the 2.x layout: sync, varints (first frame, frame count), n_q, varint payload size, payload
    CRC-32, then the low 16 bits of the CRC-32 of those bytes, checked before any field is trusted."""
    if data[pos: pos + 2] != CHUNK_SYNC_V2:
        return _miss("no chunk sync word")
    end = min(len(data), pos + CHUNK_MAX_V2)
    try:
        first, at = read_varint(data, pos + 2, end)
        frames, at = read_varint(data, at, end)
        if at + 1 > end:
            raise FormatError("truncated")
        n_q = data[at]
        size, at = read_varint(data, at + 1, end)
    except FormatError:
        return _miss("truncated or damaged chunk header")
    if at + 6 > len(data):
        return _miss("truncated chunk header")
    payload_crc, check = struct.unpack_from("<IH", data, at)
    if crc32(data[pos: at + 4]) & 0xFFFF != check:
        return _miss("chunk header check mismatch")
    return _verified_chunk(data, pos, header, Chunk(-1, first, frames, n_q, b"", pos, at + 6 - pos), size,
                           payload_crc)


def _verified_chunk(data: bytes, pos: int, header: Header, head: Chunk, size: int, payload_crc: int
                    ) -> Chunk | Miss:
    """After a chunk header verified (its fields are as written, `head` without its payload): refuse values no
    writer produces, then bound, find and check the payload of `size` bytes (both layouts)."""
    first, frames, n_q = head.first_frame, head.frame_count, head.n_q
    if not 1 <= frames <= MAX_CHUNK_FRAMES or not 1 <= n_q <= header.model_n_q or first > MAX_FRAME:
        return _miss(f"chunk header out of bounds ({frames} frames, {n_q} codebooks)")
    segment = header.segment_frames if header.version_major != 1 else None
    if size > max_payload(header.channels, n_q, frames, header.level, segment):
        return _miss(f"chunk payload size {size} exceeds the bound for its frames")
    if header.level is not None and first % header.level.spacing_frames:
        return _miss(f"chunk starts at frame {first}, not a multiple of the level envelope's "
                     f"{header.level.spacing_frames}")
    start = pos + head.header_size
    if start + size > len(data):
        return _miss(f"{head.label} truncated: payload needs {size} bytes, {len(data) - start} left")
    payload = data[start: start + size]
    if crc32(payload) != payload_crc:
        return _miss(f"{head.label} (frames {first}-{first + frames - 1}) payload CRC-32 mismatch", size)
    return dataclasses.replace(head, payload=payload)


def justified_frames(header: Header, nbytes: int, min_bits_per_symbol: float | None = None) -> int:
    """The most frames `nbytes` bytes of chunks could hold: a chunk per `header.min_chunk_bytes` bytes of at most
    `MAX_CHUNK_FRAMES` frames, and with the entropy model's cheapest code, a code per channel and frame at that
    cost (plus the range coder's slack of 64 bits per chunk)."""
    chunks = -(-nbytes // header.min_chunk_bytes)
    frames = chunks * MAX_CHUNK_FRAMES
    if min_bits_per_symbol:
        frames = min(frames, int((nbytes * 8 + chunks * 64) / (header.channels * min_bits_per_symbol)))
    return frames


def _index_at(data: bytes, pos: int, header: Header) -> tuple[int, int, int, int] | None:
    """(chunk count, total frames, length, end offset) if a verified index starts at `pos`."""
    if header.version_major != 1:
        return _index_at_v2(data, pos)
    if pos + INDEX_HEAD.size + 4 > len(data) or data[pos: pos + 4] != INDEX_SYNC:
        return None
    _, count, frames, length = INDEX_HEAD.unpack_from(data, pos)
    if count > (len(data) - pos - INDEX_HEAD.size) // INDEX_ENTRY.size:
        return None
    end = pos + INDEX_HEAD.size + count * INDEX_ENTRY.size
    if end + 4 > len(data) or crc32(data[pos:end]) != struct.unpack_from("<I", data, end)[0]:
        return None
    return count, frames, length, end + 4


def _index_at_v2(data: bytes, pos: int) -> tuple[int, int, int, int] | None:
    """`_index_at` for the 2.x layout: sync, varints (count, total frames, length), per chunk varints (offset and
    first frame, each as the change from the chunk before), CRC-32. The entries are checked by the CRC only when
    the count fits the bytes left (each entry takes at least two)."""
    if data[pos: pos + 2] != INDEX_SYNC_V2:
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


def _index_cost(data: bytes, pos: int, header: Header) -> int:
    """Bytes an index candidate at `pos` makes the reader go over (0 where there is no index sync word)."""
    if data[pos: pos + len(header.index_sync)] != header.index_sync:
        return 0
    if header.version_major == 1:
        if pos + INDEX_HEAD.size > len(data):
            return 0
        count = INDEX_HEAD.unpack_from(data, pos)[1]
        return count * INDEX_ENTRY.size if count <= (len(data) - pos - INDEX_HEAD.size) // INDEX_ENTRY.size else 0
    try:
        count = read_varint(data, pos + 2, len(data))[0]
    except FormatError:
        return 0
    return min(len(data) - pos, 2 * MAX_VARINT * count)


class _Scanner:
    """Finds the next place after damage where a chunk or the index verifies, in time linear in the file's size.

    Sync-word searches only move forward (each byte is searched once per sync word), a candidate's fixed-size
    header is checked once, and the checksum work spent in vain on payloads and indexes that fail is capped at a
    few times the file's size: a file built of fake sync words and chunk headers with valid CRCs cannot make the
    reader quadratic."""

    def __init__(self, data: bytes, header: Header):
        self.data, self.header = data, header
        syncs = (header.chunk_sync, header.index_sync)
        self.found = {sync: -1 for sync in syncs}  # the last search result per sync word (len(data): none)
        self.searched_from = {sync: -1 for sync in syncs}
        self.budget = 4 * len(data) + 65536  # bytes of payload/index CRC work on failed candidates
        self.exhausted = False
        self.searched = 0  # bytes the sync-word searches went over (for tests: at most twice the file)

    def _next(self, sync: bytes, start: int) -> int:
        if self.found[sync] < start or self.searched_from[sync] > start:
            hit = self.data.find(sync, start)
            self.found[sync] = len(self.data) if hit < 0 else hit
            self.searched_from[sync] = start
            self.searched += self.found[sync] - start
        return self.found[sync]

    def resync(self, start: int) -> int:
        """The first offset ≥ `start` where a chunk or the index verifies; len(data) if none (or out of budget)."""
        data = self.data
        pos = start
        while pos < len(data) and not self.exhausted:
            pos = min(self._next(self.header.chunk_sync, pos), self._next(self.header.index_sync, pos))
            if pos >= len(data):
                break
            found = _chunk_at(data, pos, self.header)
            if isinstance(found, Chunk) or _index_at(data, pos, self.header) is not None:
                return pos
            # A failed candidate costs a fixed-size header check, and beyond it what was checksummed in vain: a
            # payload whose verified header gave its size, or an index's entries. That part is budgeted.
            self.budget -= found.spent + _index_cost(data, pos, self.header)
            self.exhausted = self.budget < 0
            pos += 1
        return len(data)


def parse(data: bytes, min_bits_per_symbol: float | None = None) -> ParsedFile:
    """Read a whole .ncd file held in memory.

    The header must be intact (else `FormatError`). After it, damage is recorded, not raised: a bad chunk is
    skipped by scanning for the next sync word whose header CRC verifies; frame numbers show what was lost.
    Lost frames are believed only as far as the damaged bytes where they were could have held them: a chunk per
    `CHUNK_HEADER_SIZE` bytes of at most `MAX_CHUNK_FRAMES` frames, and, given the entropy model's
    `min_bits_per_symbol`, a code of every channel per frame at that cost. The index is believed as far as its
    entries allow, and the length as far as the frames justify: a file's fields never claim more audio than its
    bytes can carry.
    """
    header, pos = parse_header(data)

    def room(damaged: int) -> int:
        return justified_frames(header, damaged, min_bits_per_symbol)

    scanner = _Scanner(data, header)
    chunks: list[Chunk] = []
    damage: list[str] = []
    lost: list[tuple[int, int]] = []
    expected_frame = 0
    last_end = pos  # end of the header or of the last chunk read
    index_info = None
    while pos < len(data):
        found = _chunk_at(data, pos, header)
        if isinstance(found, Chunk):
            size = found.size
            gap = found.first_frame - expected_frame
            if gap < 0:
                damage.append(f"{found.label} at byte {pos} overlaps earlier frames; skipped")
            elif gap > room(pos - last_end):
                damage.append(f"{found.label} at byte {pos} starts at frame {found.first_frame}, but the "
                              f"{pos - last_end} damaged bytes before it hold at most {room(pos - last_end)} lost "
                              "frames; skipped")
            else:
                if gap:
                    lost.append((expected_frame, found.first_frame))
                chunks.append(found)
                expected_frame = found.first_frame + found.frame_count
                last_end = pos + size
            pos += size
            continue
        index_info = _index_at(data, pos, header)
        if index_info is not None:
            break
        damage.append(f"byte {pos} (after {chunks[-1].label if chunks else 'no chunk'}): {found}")
        pos = scanner.resync(pos + 1)
        if scanner.exhausted:
            damage.append(f"resynchronisation gave up at byte {pos}: too many false sync words")
            pos = len(data)
    total_frames = None
    claimed = header.length
    if index_info is None:
        damage.append(f"truncated: no index or trailer after byte {min(pos, len(data))} (file is {len(data)} bytes)")
        frames = expected_frame
    else:
        count, total_frames, index_length, end = index_info
        # Chunks lost at the end lay between the last chunk read and the index; the index lists them too.
        most = expected_frame + min(max(0, count - len(chunks)) * MAX_CHUNK_FRAMES, room(pos - last_end))
        if not expected_frame <= total_frames <= most:
            damage.append(f"index claims {total_frames} frames: {expected_frame} were read and at most {most} can "
                          "be justified; the index is not trusted")
            total_frames = max(expected_frame, min(total_frames, most))
        claimed = index_length
        if header.length is not None and header.length != index_length:
            damage.append(f"index length {index_length} disagrees with header length {header.length}")
        trailer = TRAILER if header.version_major == 1 else TRAILER_V2
        if end + trailer.size > len(data):
            damage.append(f"truncated: trailer missing at byte {end}")
        else:
            if header.version_major == 1:
                _, trailer_crc, magic = TRAILER.unpack_from(data, end)
                intact = magic == TRAILER_MAGIC and trailer_crc == crc32(data[end: end + 8])
            else:
                back, magic = TRAILER_V2.unpack_from(data, end)
                intact = magic == TRAILER_MAGIC_V2 and back == end + TRAILER_V2.size - pos
            if not intact:
                damage.append(f"damaged trailer at byte {end}")
            elif end + trailer.size != len(data):
                damage.append(f"{len(data) - end - trailer.size} unexpected bytes after the trailer")
        if expected_frame < total_frames:
            lost.append((expected_frame, total_frames))
        frames = total_frames
    length = claimed
    if claimed is not None and claimed > header.max_samples(frames):
        length = header.max_samples(frames)
        damage.append(f"length {claimed} samples is more than the {frames} frames present can hold; "
                      f"decoding stops at {length}")
    for a, b in lost:
        damage.append(f"frames {a}-{b - 1} lost")
    return ParsedFile(header, chunks, length, total_frames, len(data), damage, lost)
