"""Classical codecs run through their real command-line tools, for side-by-side tables.

Opus: `opusenc --bitrate K --hard-cbr` / `opusdec` (Debian `opus-tools`, libopus 1.3). Opus 1.5 with the NoLACE
post-filter: libopus 1.5's `opus_demo` (`tools/build_opus15.sh` builds it), VBR at 16 kHz, the bandwidth libopus
chooses, decoded at decoder complexity 7 (NoLACE; it acts on wideband SILK frames). Codec2: `c2enc MODE` /
`c2dec MODE` (Debian `codec2`) on 8 kHz 16-bit raw audio. The bitrate reported is the real one: output file bytes
× 8 / duration (for `opus_demo`, the packets' bytes without its framing).
"""

from __future__ import annotations

import os
import shutil
import struct
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
    facts: dict = {}  # what else a report should say (Opus 1.5: the share of wideband packets)


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


OPUS_DEMO = Path("~/.cache/neurocodec/opus-1.5/opus_demo").expanduser()  # where tools/build_opus15.sh puts it


def opus_demo() -> str:
    """libopus 1.5's opus_demo: `$NEUROCODEC_OPUS_DEMO`, else where `tools/build_opus15.sh` builds it."""
    path = Path(os.environ.get("NEUROCODEC_OPUS_DEMO", OPUS_DEMO))
    if not (path.is_file() and os.access(path, os.X_OK)):
        raise MissingDependencyError(f"Opus 1.5 with NoLACE needs opus_demo ({path} not found): build it with "
                                     "`bash tools/build_opus15.sh`")
    return str(path)


def nolace(audio: np.ndarray, sample_rate: int, kbps: float, dec_complexity: int = 7) -> Coded:
    """Mono `[T]` → Opus 1.5 (VBR, 16 kHz, 20 ms frames, encoder complexity 10) at `kbps`, decoded with the NoLACE
    post-filter (`dec_complexity` 7; 0 is plain Opus on the same bits), at `sample_rate`."""
    demo = opus_demo()
    pcm = np.clip(resample(audio[None], sample_rate, 16000)[0], -1, 1)
    with tempfile.TemporaryDirectory() as tmp:
        src, coded, out = Path(tmp, "in.raw"), Path(tmp, "x.bit"), Path(tmp, "out.raw")
        src.write_bytes((pcm * 32767).astype("<i2").tobytes())
        _run([demo, "-e", "voip", "16000", "1", str(round(kbps * 1000)), "-framesize", "20", "-complexity", "10",
              str(src), str(coded)])
        _run([demo, "-d", "16000", "1", "-dec_complexity", str(dec_complexity), str(coded), str(out)])
        decoded = np.frombuffer(out.read_bytes(), "<i2").astype(np.float32) / 32768
        payload, wideband = _opus_demo_packets(coded.read_bytes())
    decoded = resample(decoded[None], 16000, sample_rate)[0]
    return Coded(_fit(decoded, len(audio)), payload * 8 / (len(audio) / sample_rate) / 1000,
                 {"wideband": round(wideband, 3)})


def _opus_demo_packets(data: bytes) -> tuple[int, float]:
    """(bytes of Opus packets, share of packets coded wideband or wider: NoLACE acts on those) of an opus_demo
    bitstream (each packet: 4-byte length, 4-byte range, the packet; its first byte's config, RFC 6716 3.1:
    0-7 SILK narrow/medium band, 8-11 SILK wideband, 12 and up wider)."""
    pos = total = packets = wide = 0
    while pos + 8 <= len(data):
        size = struct.unpack_from(">I", data, pos)[0]
        if size and pos + 8 < len(data):
            packets += 1
            wide += (data[pos + 8] >> 3) >= 8
        total += size
        pos += 8 + size
    return total, wide / max(packets, 1)


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
