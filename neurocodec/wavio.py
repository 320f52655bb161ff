"""WAV as a live stream: read samples as soon as they arrive, write them as soon as they are made.

The file path reads a stream whole before decoding it (libsndfile must seek in most formats) and hands a pipe its
output only once the command has succeeded (`fileio.atomic_path`). Live coding (`live.py`) cannot wait: these read
and write WAV, the format `arecord`, `aplay`, `sox -t wav` and `ffmpeg -f wav` speak through pipes, incrementally.

Reading: RIFF/WAVE, PCM of 8, 16, 24 or 32 bits and IEEE float of 32 or 64 (plain or WAVE_FORMAT_EXTENSIBLE). A
`data` size of 0 or from 0x7F000000 up is the placeholder that streaming writers put there: the samples run to the
end of the stream. Writing: 16-bit PCM with placeholder sizes, each block flushed. Arrays are `[C, n]` float32.
"""

from __future__ import annotations

import contextlib
import os
import struct
from typing import BinaryIO, Iterator

import numpy as np

from .audio import AudioWriter
from .errors import AudioError, OutputError
from .fileio import STDIO, is_stream, live_output
from .limits import MAX_CHANNELS, MAX_SAMPLE_RATE, MAX_SECONDS, MIN_SAMPLE_RATE

PCM, FLOAT, EXTENSIBLE = 1, 3, 0xFFFE
PLACEHOLDER = 0x7F000000  # data sizes from here up (and 0) mean "until the stream ends"
MAX_SKIPPED = 1 << 20  # bytes of chunks before `data` (LIST, fact …) a stream may carry
READ_BYTES = 1 << 16  # at most this much per read: a read returns as soon as anything has arrived
_TYPES = {(PCM, 1): np.uint8, (PCM, 2): np.int16, (PCM, 4): np.int32, (FLOAT, 4): np.float32, (FLOAT, 8): np.float64}


class WavStreamReader:
    """Reads WAV from a binary stream (stdin, a FIFO, a file) as it arrives. Attributes: `sample_rate`,
    `channels`, `name`; `blocks()` yields what has arrived, `[C, n]` float32 (n ≥ 1), until the stream ends.
    Refuses more than `max_seconds` of audio."""

    def __init__(self, source: BinaryIO, name: str = "stdin", max_seconds: float = MAX_SECONDS):
        self.source, self.name, self.max_seconds = source, name, max_seconds
        self.pending = b""
        self.ended = False
        riff = self._exactly(12)
        if riff[:4] != b"RIFF" or riff[8:12] != b"WAVE":
            raise AudioError(f"{name}: --live reads WAV (RIFF/WAVE) streams, e.g. from arecord, sox -t wav or "
                             "ffmpeg -f wav; this is not one")
        fmt, skipped = None, 0
        while True:
            kind, size = struct.unpack("<4sI", self._exactly(8))
            if kind == b"data":
                break
            if kind == b"fmt " and 16 <= size <= 64:
                fmt = self._exactly(size + size % 2)
                continue
            skipped += size + size % 2
            if skipped > MAX_SKIPPED:
                raise AudioError(f"{name}: no WAV data chunk within {MAX_SKIPPED >> 20} MiB")
            self._exactly(size + size % 2)
        if fmt is None:
            raise AudioError(f"{name}: WAV stream without a format chunk before its data")
        tag, channels, rate, _, align, bits = struct.unpack_from("<HHIIHH", fmt)
        if tag == EXTENSIBLE and len(fmt) >= 26:
            tag = struct.unpack_from("<H", fmt, 24)[0]
        width = (bits + 7) // 8
        if (tag, width) not in _TYPES and (tag, width) != (PCM, 3):
            raise AudioError(f"{name}: WAV of format {tag} with {bits}-bit samples; --live reads PCM of 8 to 32 "
                             "bits and float of 32 or 64")
        if not 1 <= channels <= MAX_CHANNELS or not MIN_SAMPLE_RATE <= rate <= MAX_SAMPLE_RATE or \
                align != channels * width:
            raise AudioError(f"{name}: WAV header out of range ({channels} channels, {rate} Hz, block {align})")
        self.tag, self.width, self.channels, self.sample_rate = tag, width, channels, rate
        self.remaining = None if size == 0 or size >= PLACEHOLDER else size
        self.samples = 0

    def _read(self, n: int) -> bytes:
        if self.ended:
            return b""
        reader = getattr(self.source, "read1", None) or self.source.read
        try:
            data = reader(n)
        except OSError as exc:
            raise AudioError(f"{self.name}: cannot read ({exc.strerror or exc})") from None
        if not data:
            self.ended = True
        return data

    def _exactly(self, n: int) -> bytes:
        while len(self.pending) < n:
            data = self._read(max(n - len(self.pending), 4096))
            if not data:
                raise AudioError(f"{self.name}: the WAV stream ended inside its header")
            self.pending += data
        out, self.pending = self.pending[:n], self.pending[n:]
        return out

    def _data(self) -> bytes:
        """The next data bytes that have arrived (b"" at the end of the stream or of the data chunk)."""
        if self.pending:
            data, self.pending = self.pending, b""
        else:
            data = self._read(READ_BYTES)
        if self.remaining is not None:
            data = data[: self.remaining]
            self.remaining -= len(data)
        return data

    def blocks(self) -> Iterator[np.ndarray]:
        frame = self.width * self.channels
        longest = self.max_seconds * self.sample_rate
        carry = b""  # a partial sample frame (dropped if the stream ends in it)
        while data := self._data():
            data = carry + data
            whole = len(data) // frame * frame
            data, carry = data[:whole], data[whole:]
            if not whole:
                continue
            block = self._decode(data)
            self.samples += block.shape[-1]
            if self.samples > longest:
                raise AudioError(f"{self.name}: longer than the {self.max_seconds / 3600:g} h limit on input "
                                 "(--max-hours raises it)")
            yield block

    def _decode(self, data: bytes) -> np.ndarray:
        if (self.tag, self.width) == (PCM, 3):
            raw = np.frombuffer(data, np.uint8).reshape(-1, 3).astype(np.int32)
            ints = (raw[:, 0] << 8 | raw[:, 1] << 16 | raw[:, 2] << 24)  # left-aligned in 32 bits: sign kept
            x = ints.astype(np.float32) / np.float32(2.0 ** 31)
        else:
            values = np.frombuffer(data, _TYPES[(self.tag, self.width)])
            if values.dtype == np.uint8:
                x = (values.astype(np.float32) - 128) / 128
            elif values.dtype.kind == "i":
                x = values.astype(np.float32) / np.float32(2.0 ** (8 * self.width - 1))
            else:
                x = values.astype(np.float32)
                if not np.isfinite(x).all() or np.abs(x).max(initial=0) > 16:
                    raise AudioError(f"{self.name}: float samples that are not audio in [-1, 1] (NaN, infinite or "
                                     "beyond ±16)")
        return np.ascontiguousarray(x.reshape(-1, self.channels).T)


class WavStreamWriter:
    """Writes 16-bit PCM WAV to a binary stream, header first (sizes left as placeholders: the length is not
    known yet), each block flushed as it comes. `write(block [C, n])`, values clipped to [-1, 1]."""

    def __init__(self, out: BinaryIO, sample_rate: int, channels: int, name: str = "stdout"):
        self.out, self.channels, self.name = out, channels, name
        fmt = struct.pack("<HHIIHH", PCM, channels, sample_rate, sample_rate * channels * 2, channels * 2, 16)
        self._put(b"RIFF" + struct.pack("<I", 0xFFFFFFFF) + b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt
                  + b"data" + struct.pack("<I", 0xFFFFFFFF))

    def _put(self, data: bytes) -> None:
        try:
            self.out.write(data)
            self.out.flush()
        except (OSError, ValueError) as exc:
            raise OutputError(f"{self.name}: cannot write ({getattr(exc, 'strerror', None) or exc})") from None

    def write(self, block: np.ndarray) -> None:
        if block.shape[-1]:
            pcm = np.round(np.clip(block, -1.0, 1.0) * 32767).astype("<i2")
            self._put(np.ascontiguousarray(pcm.T).tobytes())


def unbuffered(fd: int) -> BinaryIO:
    """A binary reader of `fd` whose reads return as soon as anything has arrived."""
    return os.fdopen(os.dup(fd), "rb", buffering=0)


@contextlib.contextmanager
def live_audio_output(path: str, sample_rate: int, channels: int) -> Iterator["WavStreamWriter | AudioWriter"]:
    """Live decoding's audio output: on a stream (stdout, a FIFO, a device), WAV written and flushed block by block;
    a regular file is written as `decode` writes it (`AudioWriter`: atomically, its format from the extension)."""
    if not is_stream(path):
        with AudioWriter(path, sample_rate, channels) as writer:
            yield writer
        return
    with live_output(path) as out:
        yield WavStreamWriter(out, sample_rate, channels, "stdout" if path == STDIO else path)
