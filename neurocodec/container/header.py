"""The `.ncd` header: the file's facts (audio, the model's identity and geometry, side-information parameters),
read in both layouts (1.x fixed fields, 2.x variable-length integers) and written in 2.x. `formats/ncd.md` is the
byte-level contract. Bytes only: no torch, no entropy coding.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

from ..errors import FormatError
from ..limits import (LEVEL_FLOOR_DB, LEVEL_POINTS, LEVEL_STEP_DB, LEVEL_TARGET_DB, MAX_CHANNELS, MAX_SAMPLE_RATE,
                      MIN_SAMPLE_RATE, level_spacing_frames)

MAGIC = b"\x89NCD\r\n\x1a\n"  # high bit catches 7-bit channels; CR LF / LF / ^Z catch text-mode damage
VERSION_MAJOR = 2  # what the writer writes
VERSION_MINOR = 1  # 2.1: the model id names the decoder, extension 0x0002 the encoder (2.0 files still read)
READ_MAJORS = (1, 2)
UNKNOWN_LENGTH = 0xFFFF_FFFF_FFFF_FFFF

MAX_HEADER = 4096
MAX_NAME = 64
MAX_HOP = 1 << 16
MAX_MODEL_N_Q = 255  # a chunk's n_q is one byte
MAX_CODEBOOK_SIZE = 1 << 16
MAX_CHUNK_FRAMES = 4096
MAX_SEGMENT = MAX_CHUNK_FRAMES
MAX_FRAME = 1 << 48  # a chunk's first frame above this is out of spec, either layout (10^5 years at 75 Hz)

PREFIX = struct.Struct("<8sBBH")  # magic, major, minor, header size
FIXED = struct.Struct("<IHHIIIQ32s32sB")  # 1.x: the fixed header fields after the prefix
ID_BYTES = 8  # 2.x: model and entropy identities are the first 8 bytes of their SHA-256
MAX_VARINT = 10  # bytes of a LEB128 integer below 2**64

EXT_CRITICAL = 0x8000
EXT_LEVEL = 0x8001  # critical: every chunk's payload starts with the level envelope's points
LEVEL = struct.Struct("<HhhHh")  # spacing frames, target (0.01 dB), floor (0.01 dB), levels, step (0.01 dB)
MAX_LEVEL_POINTS = 256
EXT_ENCODER = 0x0002  # optional (2.1): the encoder that made the file and its effort; informational only
ENCODER = struct.Struct("<8sB")  # encoder id (first 8 bytes of its SHA-256), effort


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

    @classmethod
    def written(cls, model_sample_rate: int, hop_length: int) -> "LevelExtension":
        """The envelope every encoder writes for a model of this rate and hop (`limits.py`); a reader accepts no
        other, whatever the spec's ranges allow."""
        return cls(level_spacing_frames(model_sample_rate, hop_length), LEVEL_TARGET_DB, LEVEL_FLOOR_DB,
                   LEVEL_STEP_DB, LEVEL_POINTS)

    def describe(self, frame_rate: float) -> str:
        return (f"a point per {self.spacing_frames / frame_rate:g} s in {self.step_db:g} dB steps, {self.levels} "
                f"levels from {self.floor_db:g} dBFS; the model sees {self.target_db:g} dBFS")


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
        if self.level is not None and self.level != LevelExtension.written(self.model_sample_rate, self.hop_length):
            # Its values decide gains and how much audio waits for the next point: only the writer's are safe.
            frame_rate = self.model_sample_rate / self.hop_length
            raise FormatError(
                f"level envelope ({self.level.describe(frame_rate)}) is not the one an encoder writes for this "
                f"model ({LevelExtension.written(self.model_sample_rate, self.hop_length).describe(frame_rate)})")

    @property
    def version(self) -> str:
        """"major.minor" as read."""
        return f"{self.version_major}.{self.version_minor}"

    @property
    def encoder(self) -> tuple[str, int] | None:
        """(encoder id hex, effort) from the optional extension `EXT_ENCODER`, None if absent or malformed (it
        decides nothing: a reader only shows it)."""
        for tag, value in self.extensions:
            if tag == EXT_ENCODER and len(value) == ENCODER.size:
                ident, effort = ENCODER.unpack(value)
                return ident.hex(), effort
        return None

    @property
    def model_id_names(self) -> str:
        """What `model_sha256` is the hash of: the decoder's weights (2.1 on), or every weight (earlier)."""
        return "decoder" if (self.version_major, self.version_minor) >= (2, 1) else "weights"

    def max_samples(self, frames: int) -> int:
        """The most samples per channel at `sample_rate` that `frames` frames can describe (+1 for rounding)."""
        return -(-frames * self.hop_length * self.sample_rate // self.model_sample_rate) + 1

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


def encoder_extension(encoder_sha256: str, effort: int) -> tuple[int, bytes]:
    """The optional `EXT_ENCODER` field: which encoder (its hash's first 8 bytes) made a file, at which effort."""
    return EXT_ENCODER, ENCODER.pack(bytes.fromhex(encoder_sha256)[:ID_BYTES], effort)
