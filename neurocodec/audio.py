"""Audio I/O (soundfile), resampling (soxr), channel handling and finding audio files. Arrays are `[C, T]` float32.

Lengths here are in samples (per channel); "frames" in this package always means codec frames (hop_length samples).
"""

from __future__ import annotations

import io
import json
import os
import tempfile
from pathlib import Path
from typing import Iterator

import numpy as np
import soundfile as sf
import soxr

from .errors import AudioError, OutputError
from .fileio import PIECE, STDIO, atomic_path, is_stream, open_input
from .limits import MAX_CHANNELS, MAX_SAMPLE_RATE, MAX_SECONDS, MIN_SAMPLE_RATE

BLOCK_SAMPLES = 1 << 16
AUDIO_SUFFIXES = {".wav", ".flac", ".ogg"}
PROBE_BYTES = 1 << 20  # a stream must show an audio header within this many bytes
SPOOL_IN_MEMORY = 64 << 20  # a spooled stream moves to a temporary file beyond this
_BYTES_PER_SAMPLE = {"PCM_S8": 1, "PCM_U8": 1, "ULAW": 1, "ALAW": 1, "PCM_16": 2, "PCM_24": 3, "PCM_32": 4,
                     "FLOAT": 4, "DOUBLE": 8}  # compressed formats: at most 4 bytes a sample


MAX_FLOAT = 16.0  # +24 dBFS: float audio beyond it is not audio in [-1, 1] (integer PCM stored as float, most often)
_PCM_SCALE = {np.dtype(np.int8): 128.0, np.dtype(np.int16): 32768.0, np.dtype(np.int32): 2.0**31}


def check_audio(audio, sample_rate, where: str = "audio", first_sample: int = 0) -> tuple[np.ndarray, int]:
    """The one validation of audio handed to neurocodec (the Python API; the reader checks each block the same
    way): → (`[C, T]` float32, sample rate as int). `audio` is `[T]` or `[C, T]`, float in [-1, 1] (overs up to
    `MAX_FLOAT` pass) or integer PCM (int8/int16/int32, scaled by its full scale; uint8 is offset binary).
    Refused with `AudioError`: other dtypes, NaN or infinite samples, floats beyond `MAX_FLOAT`, more than 2
    dimensions, no channel or more than `MAX_CHANNELS`, a sample rate outside 1 kHz … 768 kHz. `first_sample`:
    where `audio` starts in a longer signal (for the message)."""
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, (int, np.integer, float, np.floating)) or \
            not float(sample_rate).is_integer() or not MIN_SAMPLE_RATE <= sample_rate <= MAX_SAMPLE_RATE:
        raise AudioError(f"{where}: sample rate {sample_rate!r}: give an integer from {MIN_SAMPLE_RATE} to "
                         f"{MAX_SAMPLE_RATE} Hz")
    array = np.asarray(audio)
    if array.dtype in _PCM_SCALE:
        array = array.astype(np.float32) / np.float32(_PCM_SCALE[array.dtype])
    elif array.dtype == np.uint8:
        array = (array.astype(np.float32) - 128.0) / 128.0
    elif array.dtype.kind != "f":
        raise AudioError(f"{where}: samples of type {array.dtype}: give float in [-1, 1] or int8/int16/int32 PCM")
    if array.ndim == 1:
        array = array[None]
    if array.ndim != 2:
        raise AudioError(f"{where}: shape {array.shape}: give [samples] or [channels, samples]")
    if not 1 <= array.shape[0] <= MAX_CHANNELS:
        hint = " (samples first? pass audio.T)" if array.shape[1] <= MAX_CHANNELS < array.shape[0] else ""
        raise AudioError(f"{where}: {array.shape[0]} channels in shape {array.shape}: give 1 to {MAX_CHANNELS}{hint}")
    array = np.ascontiguousarray(array, dtype=np.float32)
    finite = np.isfinite(array)
    if not finite.all():
        bad = first_sample + int(np.argmax(~finite.all(axis=0)))
        raise AudioError(f"{where}: sample {bad} ({bad / sample_rate:.3f} s) is NaN or infinite")
    if array.size and np.abs(array).max() > MAX_FLOAT:
        raise AudioError(f"{where}: samples reach {np.abs(array).max():.4g}; float audio is in [-1, 1] (integer "
                         "PCM stored as float? divide by its full scale, e.g. 32768)")
    return array, int(sample_rate)


class AudioReader:
    """Reads a file (or a stream: "-" for stdin, a FIFO, `<(…)`) block by block, so long files never sit in memory
    whole. A stream is spooled (memory, then a temporary file) because libsndfile must seek in most formats; it is
    refused as soon as it holds more than `max_seconds` of audio, or when its first MiB holds no audio header.

    Attributes: `sample_rate`, `channels`, `samples` (length per channel).
    """

    def __init__(self, path: str | os.PathLike, max_seconds: float = MAX_SECONDS):
        self.name = "stdin" if str(path) == STDIO else str(path)
        self.max_seconds = max_seconds
        self._spool = None
        try:
            if is_stream(path):
                source = self._spool = self._read_stream(path)
            else:
                if Path(path).is_dir():
                    raise AudioError(f"{path}: is a folder, not an audio file")
                if not Path(path).is_file():
                    raise AudioError(f"{path}: no such file")
                source = str(path)
            self._file = sf.SoundFile(source)
        except AudioError:
            self.close()
            raise
        except OSError as exc:
            self.close()
            raise AudioError(f"{self.name}: cannot read ({exc.strerror or exc})") from None
        except (sf.LibsndfileError, RuntimeError, TypeError) as exc:
            self.close()
            raise AudioError(f"{self.name}: not a readable audio file ({_reason(exc)})") from None
        self.sample_rate = int(self._file.samplerate)
        self.channels = int(self._file.channels)
        self.samples = int(self._file.frames)
        if not 0 < self.sample_rate <= MAX_SAMPLE_RATE or self.channels <= 0:
            self.close()
            raise AudioError(f"{self.name}: sample rate {self.sample_rate} Hz or channel count {self.channels} is "
                             f"out of range (1 to {MAX_SAMPLE_RATE} Hz)")
        if self.samples / self.sample_rate > max_seconds:
            self.close()
            raise self._too_long()

    def _too_long(self) -> AudioError:
        return AudioError(f"{self.name}: longer than the {self.max_seconds / 3600:g} h limit on input "
                          "(--max-hours raises it)")

    def _read_stream(self, path) -> tempfile.SpooledTemporaryFile:
        spool = tempfile.SpooledTemporaryFile(max_size=SPOOL_IN_MEMORY)
        with open_input(path) as src:
            head = src.read(PROBE_BYTES)
            spool.write(head)
            try:
                with sf.SoundFile(io.BytesIO(head)) as probe:
                    per_second = probe.samplerate * probe.channels * _BYTES_PER_SAMPLE.get(probe.subtype, 4)
            except (sf.LibsndfileError, RuntimeError, TypeError):
                if len(head) == PROBE_BYTES:  # more is coming, and none of it can be audio we know
                    raise AudioError(f"{self.name}: not a readable audio stream (no audio header in its first "
                                     f"{PROBE_BYTES >> 20} MiB)") from None
                per_second = 0  # all of it is here: let libsndfile say what is wrong
            limit = int(self.max_seconds * per_second) + PROBE_BYTES
            size = len(head)
            while piece := src.read(PIECE):
                size += len(piece)
                if size > limit:
                    spool.close()
                    raise self._too_long()
                spool.write(piece)
        spool.seek(0)
        return spool

    def blocks(self, samples: int = BLOCK_SAMPLES) -> Iterator[np.ndarray]:
        """Yield `[C, n]` float32 blocks of at most `samples` samples. NaN or infinite samples are refused."""
        done = 0
        try:
            while True:
                block = self._file.read(samples, dtype="float32", always_2d=True)
                if not len(block):
                    return
                checked, _ = check_audio(block.T, self.sample_rate, self.name, done)
                done += len(block)
                yield checked
        except (sf.LibsndfileError, RuntimeError) as exc:
            raise AudioError(f"{self.name}: read failed ({_reason(exc)})") from None

    def rewind(self) -> None:
        """Read from the start again (a stream was spooled, so it can be)."""
        try:
            self._file.seek(0)
        except (sf.LibsndfileError, RuntimeError) as exc:
            raise AudioError(f"{self.name}: cannot read it again ({_reason(exc)})") from None

    def close(self) -> None:
        if getattr(self, "_file", None) is not None:
            self._file.close()
        if self._spool is not None:
            self._spool.close()

    def __enter__(self) -> "AudioReader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _reason(exc: Exception) -> str:
    return str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__


def list_audio(sources) -> list[Path]:
    """Audio files under folders, in manifest files (.jsonl with a "path" per line, or .txt), or given directly."""
    files: list[Path] = []
    for source in sources:
        p = Path(source).expanduser()
        if p.is_dir():
            files += sorted(f for f in p.rglob("*") if f.suffix.lower() in AUDIO_SUFFIXES)
        elif p.suffix == ".jsonl":
            files += [Path(json.loads(line)["path"]).expanduser() for line in p.read_text().splitlines() if line.strip()]
        elif p.suffix == ".txt":
            files += [Path(line.strip()).expanduser() for line in p.read_text().splitlines() if line.strip()]
        elif p.suffix.lower() in AUDIO_SUFFIXES and p.is_file():
            files.append(p)
        else:
            raise AudioError(f"{p}: not an audio folder, manifest or file")
    return files


def read_audio(path: str | os.PathLike) -> tuple[np.ndarray, int]:
    """Whole file → (`[C, T]` float32, sample rate)."""
    with AudioReader(path) as reader:
        blocks = list(reader.blocks())
        audio = np.concatenate(blocks, axis=1) if blocks else np.zeros((reader.channels, 0), np.float32)
        return audio, reader.sample_rate


class Resampler:
    """Streaming soxr resampler for `[C, n]` blocks; a pass-through when the rates are equal."""

    def __init__(self, in_rate: int, out_rate: int, channels: int):
        self.identity = in_rate == out_rate
        if not self.identity:
            self._stream = soxr.ResampleStream(in_rate, out_rate, channels, dtype="float32", quality="HQ")

    def __call__(self, block: np.ndarray, last: bool = False) -> np.ndarray:
        if self.identity:
            return block
        return np.ascontiguousarray(self._stream.resample_chunk(np.ascontiguousarray(block.T), last=last).T)


def resample(audio: np.ndarray, in_rate: int, out_rate: int) -> np.ndarray:
    """`[C, T]` → `[C, T']`, T' = round(T · out_rate / in_rate)."""
    if in_rate == out_rate:
        return audio.astype(np.float32, copy=False)
    out = soxr.resample(np.ascontiguousarray(audio.T), in_rate, out_rate, quality="HQ")
    return np.ascontiguousarray(np.asarray(out, dtype=np.float32).reshape(len(out), -1).T)


OUTPUT_FORMATS = {"flac": ("FLAC", "PCM_16"), "ogg": ("OGG", "VORBIS"), "wav": ("WAV", "PCM_16")}


def output_format(path: str | os.PathLike) -> tuple[str, str | None]:
    """(soundfile format, subtype) chosen from the extension: WAV for stdout, devices, FIFOs and names without
    one; an extension we cannot write (.mp3 …) is refused rather than given WAV data under its name."""
    ext = "" if is_stream(path) else Path(path).suffix.lower().lstrip(".")
    if ext and ext not in OUTPUT_FORMATS:
        raise OutputError(f"{path}: cannot write .{ext} files; use .wav, .flac or .ogg (a name without an "
                          "extension gets WAV)")
    return OUTPUT_FORMATS.get(ext, OUTPUT_FORMATS["wav"])


class AudioWriter:
    """Atomic block writer: the file appears under its name only when `close()` succeeds.

    Use as a context manager; an exception inside the block leaves no file behind.
    """

    def __init__(self, path: str | os.PathLike, sample_rate: int, channels: int):
        self.path = path
        self._format, self._subtype = output_format(path)
        self._atomic = atomic_path(path, suffix="." + self._format.lower())
        self._tmp = self._atomic.__enter__()
        try:
            self._file = sf.SoundFile(
                str(self._tmp), "w", samplerate=sample_rate, channels=channels, format=self._format, subtype=self._subtype
            )
        except (sf.LibsndfileError, RuntimeError) as exc:
            self._atomic.__exit__(type(exc), exc, None)
            raise AudioError(f"{path}: cannot write audio ({_reason(exc)})") from None

    def write(self, block: np.ndarray) -> None:
        """block `[C, n]` float in [-1, 1] (clipped)."""
        try:
            self._file.write(np.clip(block, -1.0, 1.0).T)
        except (sf.LibsndfileError, RuntimeError) as exc:  # disk full, quota …
            raise OutputError(f"{self.path}: cannot write ({_reason(exc)})") from None

    def __enter__(self) -> "AudioWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        failed = None
        try:
            self._file.close()
        except (sf.LibsndfileError, RuntimeError) as close_exc:  # the last buffer did not fit on the disk
            failed = OutputError(f"{self.path}: cannot write ({_reason(close_exc)})")
        if exc is None and failed is not None:
            exc_type, exc, tb = OutputError, failed, None
        self._atomic.__exit__(exc_type, exc, tb)  # removes the temporary file on any error
        if failed is not None and exc is failed:
            raise failed


def write_audio(path: str | os.PathLike, audio: np.ndarray, sample_rate: int) -> None:
    """`[C, T]` → file (format from the extension), atomically."""
    with AudioWriter(path, sample_rate, audio.shape[0]) as writer:
        writer.write(audio)
