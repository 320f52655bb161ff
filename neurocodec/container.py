"""The `.ncd` container, version 1: reader and writer. The byte-level contract is `formats/ncd.md`.

No torch here: the container knows bytes, lengths and checksums, not models. Every length read from a file is
checked against a fixed bound and against what is left of the file before it is used, and a chunk's payload
length is trusted only after the chunk header's CRC-32 matched. A CRC proves that a field is as written, not that
it is sane: frame numbers, frame counts and lengths are also checked against what the bytes present can hold
(`ParsedFile.length` and the lost frames never exceed what the file's chunks and index justify), and
resynchronisation after damage costs time linear in the file's size.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass, field
from typing import BinaryIO

from .errors import FormatError

MAGIC = b"\x89NCD\r\n\x1a\n"  # high bit catches 7-bit channels; CR LF / LF / ^Z catch text-mode damage
VERSION_MAJOR = 1
VERSION_MINOR = 1  # 1.1 adds the level envelope (extension EXT_LEVEL); a file without one is written as 1.0
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


def crc32(data: bytes) -> int:
    return zlib.crc32(data) & 0xFFFF_FFFF


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
    version_minor: int = 0  # as read; a writer writes 1 with a level envelope
    level: LevelExtension | None = None  # the level envelope, if the file carries one (version 1.1)

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

    def max_samples(self, frames: int) -> int:
        """The most samples per channel at `sample_rate` that `frames` frames can describe (+1 for rounding)."""
        return -(-frames * self.hop_length * self.sample_rate // self.model_sample_rate) + 1

    def pack(self) -> bytes:
        self.check()
        name = self.model_name.encode("utf-8")
        body = FIXED.pack(
            self.sample_rate, self.channels, self.model_n_q, self.codebook_size, self.hop_length,
            self.model_sample_rate, UNKNOWN_LENGTH if self.length is None else self.length,
            bytes.fromhex(self.model_sha256), bytes.fromhex(self.entropy_sha256), len(name),
        ) + name
        fields = list(self.extensions) + ([(EXT_LEVEL, self.level.pack())] if self.level else [])
        for tag, value in fields:
            body += struct.pack("<HH", tag, len(value)) + value
        size = PREFIX.size + len(body) + 4
        if size > MAX_HEADER:
            raise FormatError(f"header of {size} bytes exceeds {MAX_HEADER}")
        minor = max(self.version_minor, VERSION_MINOR if self.level else 0)
        head = PREFIX.pack(MAGIC, VERSION_MAJOR, minor, size) + body
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


def max_payload(channels: int, n_q: int, frames: int, level: LevelExtension | None = None) -> int:
    """The largest payload a valid chunk can have: bounds every allocation before the data is decoded."""
    symbols = n_q * frames + (level.points(frames) if level else 0)
    return 4 * (-(-(channels * symbols * MAX_BITS_PER_SYMBOL) // 32)) + 16


class Writer:
    """Writes an .ncd stream front to back (never seeks, so stdout and pipes work)."""

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
        if len(payload) > max_payload(self.header.channels, n_q, frame_count, level):
            raise FormatError("chunk payload exceeds the format's bound")  # pragma: no cover - a coder bug
        head = CHUNK.pack(CHUNK_SYNC, len(self.entries), self.next_frame, frame_count, n_q, 0, len(payload),
                          crc32(payload))
        self.entries.append((self.pos, self.next_frame))
        self._write(head + struct.pack("<I", crc32(head)) + payload)
        self.next_frame += frame_count

    def close(self, length: int) -> None:
        """Write the index and trailer. `length`: samples per channel at the original rate."""
        index_offset = self.pos
        body = INDEX_HEAD.pack(INDEX_SYNC, len(self.entries), self.next_frame, length)
        body += b"".join(INDEX_ENTRY.pack(off, first) for off, first in self.entries)
        self._write(body + struct.pack("<I", crc32(body)))
        off = struct.pack("<Q", index_offset)
        self._write(TRAILER.pack(index_offset, crc32(off), TRAILER_MAGIC))


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
    if major != VERSION_MAJOR:
        raise FormatError(f".ncd major version {major} is not supported (this reader knows {VERSION_MAJOR}.x)")
    if not PREFIX.size + FIXED.size + 4 <= size <= MAX_HEADER:
        raise FormatError(f"header size {size} at byte 10 is out of bounds: the header is damaged")
    if len(data) < size:
        raise FormatError(f"truncated .ncd file: {len(data)} bytes, the header alone needs {size}")
    stored = struct.unpack_from("<I", data, size - 4)[0]
    if crc32(data[: size - 4]) != stored:
        raise FormatError("header CRC-32 mismatch (bytes 0-%d): the header is damaged" % (size - 1))
    (sample_rate, channels, model_n_q, codebook_size, hop, model_sr, length, model_sha, entropy_sha,
     name_len) = FIXED.unpack_from(data, PREFIX.size)
    pos = PREFIX.size + FIXED.size
    if name_len > MAX_NAME:
        raise FormatError(f"model name length {name_len} at byte 104 exceeds {MAX_NAME}: the header is out of spec")
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
    header = Header(sample_rate, channels, None if length == UNKNOWN_LENGTH else length, name, model_sha.hex(),
                    entropy_sha.hex(), model_n_q, codebook_size, hop, model_sr, tuple(extensions), minor, level)
    try:
        header.check()
    except FormatError as exc:
        raise FormatError(f"header out of spec: {exc}") from None
    return header, size


def _chunk_at(data: bytes, pos: int, header: Header) -> Chunk | str:
    """A chunk whose header verifies at `pos`, or a one-line reason why there is none."""
    if pos + CHUNK_HEADER_SIZE > len(data):
        return "truncated chunk header"
    sync, index, first, frames, n_q, _flags, size, payload_crc = CHUNK.unpack_from(data, pos)
    if sync != CHUNK_SYNC:
        return "no chunk sync word"
    if crc32(data[pos: pos + CHUNK.size]) != struct.unpack_from("<I", data, pos + CHUNK.size)[0]:
        return "chunk header CRC-32 mismatch"
    # The header verified, so its fields are as written; still refuse values no writer produces.
    if not 1 <= frames <= MAX_CHUNK_FRAMES or not 1 <= n_q <= header.model_n_q:
        return f"chunk header out of bounds ({frames} frames, {n_q} codebooks)"
    if size > max_payload(header.channels, n_q, frames, header.level):
        return f"chunk payload size {size} exceeds the bound for its frames"
    if header.level is not None and first % header.level.spacing_frames:
        return f"chunk starts at frame {first}, not a multiple of the level envelope's {header.level.spacing_frames}"
    start = pos + CHUNK_HEADER_SIZE
    if start + size > len(data):
        return f"chunk {index} truncated: payload needs {size} bytes, {len(data) - start} left"
    payload = data[start: start + size]
    if crc32(payload) != payload_crc:
        return f"chunk {index} (frames {first}-{first + frames - 1}) payload CRC-32 mismatch"
    return Chunk(index, first, frames, n_q, payload, pos)


def justified_frames(header: Header, nbytes: int, min_bits_per_symbol: float | None = None) -> int:
    """The most frames `nbytes` bytes of chunks could hold: a chunk per `CHUNK_HEADER_SIZE` bytes of at most
    `MAX_CHUNK_FRAMES` frames, and with the entropy model's cheapest code, a code per channel and frame at that
    cost (plus the range coder's slack of 64 bits per chunk)."""
    chunks = -(-nbytes // CHUNK_HEADER_SIZE)
    frames = chunks * MAX_CHUNK_FRAMES
    if min_bits_per_symbol:
        frames = min(frames, int((nbytes * 8 + chunks * 64) / (header.channels * min_bits_per_symbol)))
    return frames


def _index_at(data: bytes, pos: int) -> tuple[int, int, int, int] | None:
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


class _Scanner:
    """Finds the next place after damage where a chunk or the index verifies, in time linear in the file's size.

    Sync-word searches only move forward (each byte is searched once per sync word), a candidate's fixed-size
    header is checked once, and the checksum work spent in vain on payloads and indexes that fail is capped at a
    few times the file's size: a file built of fake sync words and chunk headers with valid CRCs cannot make the
    reader quadratic."""

    def __init__(self, data: bytes, header: Header):
        self.data, self.header = data, header
        self.found = {CHUNK_SYNC: -1, INDEX_SYNC: -1}  # the last search result per sync word (len(data): none)
        self.searched_from = {CHUNK_SYNC: -1, INDEX_SYNC: -1}
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
            pos = min(self._next(CHUNK_SYNC, pos), self._next(INDEX_SYNC, pos))
            if pos >= len(data):
                break
            found = _chunk_at(data, pos, self.header)
            if isinstance(found, Chunk) or _index_at(data, pos) is not None:
                return pos
            # A failed candidate costs a fixed-size header check, and beyond it what was checksummed in vain: a
            # payload whose verified header gave its size, or an index's entries. That part is budgeted.
            if found.endswith("payload CRC-32 mismatch"):
                self.budget -= CHUNK.unpack_from(data, pos)[6]
            elif data[pos: pos + 4] == INDEX_SYNC and pos + INDEX_HEAD.size <= len(data):
                count = INDEX_HEAD.unpack_from(data, pos)[1]
                if count <= (len(data) - pos - INDEX_HEAD.size) // INDEX_ENTRY.size:
                    self.budget -= count * INDEX_ENTRY.size
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
            size = CHUNK_HEADER_SIZE + len(found.payload)
            gap = found.first_frame - expected_frame
            if gap < 0:
                damage.append(f"chunk {found.index} at byte {pos} overlaps earlier frames; skipped")
            elif gap > room(pos - last_end):
                damage.append(f"chunk {found.index} at byte {pos} starts at frame {found.first_frame}, but the "
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
        index_info = _index_at(data, pos)
        if index_info is not None:
            break
        damage.append(f"byte {pos} (after chunk {chunks[-1].index if chunks else 'none'}): {found}")
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
        if end + TRAILER.size > len(data):
            damage.append(f"truncated: trailer missing at byte {end}")
        else:
            _, trailer_crc, magic = TRAILER.unpack_from(data, end)
            if magic != TRAILER_MAGIC or trailer_crc != crc32(data[end: end + 8]):
                damage.append(f"damaged trailer at byte {end}")
            elif end + TRAILER.size != len(data):
                damage.append(f"{len(data) - end - TRAILER.size} unexpected bytes after the trailer")
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
