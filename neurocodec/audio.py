"""Audio I/O (soundfile), resampling (soxr), channel handling and finding audio files. Arrays are `[C, T]` float32.

Lengths here are in samples (per channel); "frames" in this package always means codec frames (hop_length samples).
"""

from __future__ import annotations

import io
import json
import os
import sys
from pathlib import Path
from typing import Iterator

import numpy as np
import soundfile as sf
import soxr

from .errors import AudioError
from .fileio import STDIO, atomic_path

BLOCK_SAMPLES = 1 << 16
AUDIO_SUFFIXES = {".wav", ".flac", ".ogg"}


class AudioReader:
    """Reads a file (or stdin for "-") block by block, so long files never sit in memory whole.

    Attributes: `sample_rate`, `channels`, `samples` (length per channel).
    """

    def __init__(self, path: str | os.PathLike):
        self.name = "stdin" if str(path) == STDIO else str(path)
        try:
            if str(path) == STDIO:
                # libsndfile needs to seek in most formats; a pipe cannot, so stdin is buffered.
                source = io.BytesIO(sys.stdin.buffer.read())
            else:
                if not Path(path).is_file():
                    raise AudioError(f"{path}: no such file")
                source = str(path)
            self._file = sf.SoundFile(source)
        except AudioError:
            raise
        except (sf.LibsndfileError, RuntimeError, TypeError, OSError) as exc:
            raise AudioError(f"{self.name}: not a readable audio file ({_reason(exc)})") from None
        self.sample_rate = int(self._file.samplerate)
        self.channels = int(self._file.channels)
        self.samples = int(self._file.frames)
        if self.sample_rate <= 0 or self.channels <= 0:
            raise AudioError(f"{self.name}: invalid sample rate {self.sample_rate} or channel count {self.channels}")

    def blocks(self, samples: int = BLOCK_SAMPLES) -> Iterator[np.ndarray]:
        """Yield `[C, n]` float32 blocks of at most `samples` samples."""
        try:
            while True:
                block = self._file.read(samples, dtype="float32", always_2d=True)
                if not len(block):
                    return
                yield np.ascontiguousarray(block.T)
        except (sf.LibsndfileError, RuntimeError) as exc:
            raise AudioError(f"{self.name}: read failed ({_reason(exc)})") from None

    def close(self) -> None:
        self._file.close()

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


def output_format(path: str | os.PathLike) -> tuple[str, str | None]:
    """(soundfile format, subtype) chosen from the extension; WAV for stdout and unknown extensions."""
    ext = "" if str(path) == STDIO else Path(path).suffix.lower().lstrip(".")
    formats = {"flac": ("FLAC", "PCM_16"), "ogg": ("OGG", "VORBIS"), "wav": ("WAV", "PCM_16")}
    return formats.get(ext, ("WAV", "PCM_16"))


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
        self._file.write(np.clip(block, -1.0, 1.0).T)

    def __enter__(self) -> "AudioWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self._file.close()
        self._atomic.__exit__(exc_type, exc, tb)


def write_audio(path: str | os.PathLike, audio: np.ndarray, sample_rate: int) -> None:
    """`[C, T]` → file (format from the extension), atomically."""
    with AudioWriter(path, sample_rate, audio.shape[0]) as writer:
        writer.write(audio)
