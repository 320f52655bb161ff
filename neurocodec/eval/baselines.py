"""Classical codecs run through their real command-line tools, for side-by-side tables.

Opus: `opusenc --bitrate K --hard-cbr` / `opusdec` (Debian `opus-tools`). Codec2: `c2enc MODE` / `c2dec MODE`
(Debian `codec2`) on 8 kHz 16-bit raw audio. The bitrate reported is the real one: output file bytes × 8 / duration.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import NamedTuple

import numpy as np
import soundfile as sf

from ..audio import resample
from ..errors import MissingDependencyError

CODEC2_MODES = (3200, 2400, 1600, 1400, 1300, 1200, 700)


class Coded(NamedTuple):
    audio: np.ndarray  # [T] at the input's sample rate
    kbps: float  # real bitrate of the coded file


def _need(tool: str, package: str) -> str:
    path = shutil.which(tool)
    if path is None:
        raise MissingDependencyError(f"{tool} not found: install it with `apt-get install {package}`")
    return path


def _run(cmd: list[str]) -> None:
    proc = subprocess.run(cmd, capture_output=True)
    if proc.returncode:
        raise MissingDependencyError(f"{Path(cmd[0]).name} failed: {proc.stderr.decode(errors='replace').strip()[:200]}")


def opus(audio: np.ndarray, sample_rate: int, kbps: float) -> Coded:
    """Mono `[T]` → Opus at `kbps` (hard CBR) and back, at `sample_rate`."""
    enc, dec = _need("opusenc", "opus-tools"), _need("opusdec", "opus-tools")
    with tempfile.TemporaryDirectory() as tmp:
        src, coded, out = Path(tmp, "in.wav"), Path(tmp, "x.opus"), Path(tmp, "out.wav")
        sf.write(src, audio, sample_rate, subtype="PCM_16")
        _run([enc, "--quiet", "--bitrate", f"{kbps:g}", "--hard-cbr", str(src), str(coded)])
        _run([dec, "--quiet", "--rate", "48000", str(coded), str(out)])
        decoded, rate = sf.read(out, dtype="float32", always_2d=True)
        size = coded.stat().st_size
    decoded = resample(decoded[:, :1].T, rate, sample_rate)[0]
    return Coded(_fit(decoded, len(audio)), size * 8 / (len(audio) / sample_rate) / 1000)


def codec2(audio: np.ndarray, sample_rate: int, mode: int = 3200) -> Coded:
    """Mono `[T]` → Codec2 `mode` (bits/s) at 8 kHz and back, at `sample_rate`."""
    enc, dec = _need("c2enc", "codec2"), _need("c2dec", "codec2")
    if mode not in CODEC2_MODES:
        raise MissingDependencyError(f"codec2 has no {mode} bit/s mode; modes: {', '.join(map(str, CODEC2_MODES))}")
    pcm = np.clip(resample(audio[None], sample_rate, 8000)[0], -1, 1)
    with tempfile.TemporaryDirectory() as tmp:
        src, coded, out = Path(tmp, "in.raw"), Path(tmp, "x.bit"), Path(tmp, "out.raw")
        src.write_bytes((pcm * 32767).astype("<i2").tobytes())
        _run([enc, str(mode), str(src), str(coded)])
        _run([dec, str(mode), str(coded), str(out)])
        decoded = np.frombuffer(out.read_bytes(), "<i2").astype(np.float32) / 32768
        size = coded.stat().st_size
    decoded = resample(decoded[None], 8000, sample_rate)[0]
    return Coded(_fit(decoded, len(audio)), size * 8 / (len(audio) / sample_rate) / 1000)


def _fit(audio: np.ndarray, length: int) -> np.ndarray:
    return np.pad(audio[:length], (0, max(0, length - len(audio)))).astype(np.float32)
