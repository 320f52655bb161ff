#!/usr/bin/env python3
"""The red team's hostile .ncd files, rebuilt, and what `neurocodec` does with each: exit code, time, peak RSS.

    python tools/redteam_ncd.py [--python PYTHON] [--pythonpath DIR] [--out DIR]

Each file has valid CRCs (the reader calls it intact or merely damaged) and values chosen to make the decoder
spend memory or time its size does not justify. Each command runs in a child process under `ulimit -v` (8 GiB) and
a 120 s timeout, measured with `/usr/bin/time -v` when present. `--pythonpath` points at another checkout (e.g. an
older commit in a `git worktree`) to measure it the same way, for a before/after table.
"""

from __future__ import annotations

import argparse
import io
import json
import resource
import struct
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

MODEL = ROOT / "formats" / "golden" / "tiny.safetensors"
GOLDEN = ROOT / "formats" / "golden" / "v2.0-speech-16k-2q.ncd"  # the layout the writer writes


def files() -> dict[str, tuple[bytes, list[str]]]:
    """name → (file bytes, neurocodec arguments after the file)."""
    import dataclasses

    from ncd_fuzz import pack_header

    from neurocodec import container

    data = GOLDEN.read_bytes()
    h, size = container.parse_header(data)
    out = {}
    # 1. A header length of 2^31 samples with valid CRCs: the decoder padded to it in one allocation.
    parsed = container.parse(data)
    entries = [(c.offset, c.first_frame) for c in parsed.chunks]
    back = struct.unpack_from("<I", data, len(data) - container.v2.TRAILER.size)[0]
    header = pack_header(dataclasses.replace(h, length=2**31))
    shift = len(header) - size
    long = header + data[size: len(data) - back] + container.index_bytes(
        [(off + shift, first) for off, first in entries], parsed.total_frames, 2**31)
    out["length-2^31"] = (long, ["--decode-through-errors"])
    # 2. A chunk 10^9 frames ahead (checks valid): a 10^9-frame gap of silence under --decode-through-errors.
    second = parsed.chunks[1]
    head = container.chunk_header(10**9 // 20 * 20, second.frame_count, second.n_q, len(second.payload),
                                  container.crc32(second.payload))
    out["gap-10^9"] = (data[: second.offset] + head + data[second.offset + second.header_size:],
                       ["--decode-through-errors"])
    # 3. Our own writer: 255 channels, one 4096-frame chunk of 4 codebooks, an empty payload.
    buf = io.BytesIO()
    w = container.Writer(buf, dataclasses.replace(h, channels=255, length=None))
    w.write_chunk(b"", 4096, 4)
    w.close(4096 * 160)
    out["255ch-empty"] = (buf.getvalue(), [])
    # 4. 800 KB of chunk sync words after a valid header (`info`).
    out["800KB-sync"] = (data[:size] + container.v2.CHUNK_SYNC * 400_000, ["info"])
    # 5-9. The level envelope (issue "Nothing a file … can hurt"): real speech codes of the default model with
    # envelopes within the spec's ranges but not the writer's, and the loudest ones the writer's envelope allows.
    out.update(level_files())
    return out


def level_files() -> dict[str, tuple[bytes, list[str]]]:
    import dataclasses
    import tempfile

    import numpy as np

    from ncd_fuzz import with_points

    from neurocodec import container
    from neurocodec.loader import load_model

    model = load_model("default", device="cpu")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp, "speech.ncd")
        model.encode_file(str(ROOT / "examples" / "speech.flac"), str(path), kbps=6)
        speech = path.read_bytes()
    h = container.parse_header(speech)[0]

    def envelope(points, **level) -> bytes:
        """The file with another envelope in its header and `points(p)` in every chunk (checksums valid)."""
        return with_points(speech, model.identity.tables, points, dataclasses.replace(h.level, **level))

    top = h.level.levels - 1
    return {
        "level-target-60-points+24": (envelope(lambda p: np.full_like(p, 138), target_db=-60.0, levels=139), []),
        "level-alternating-112dB": (envelope(lambda p: (np.arange(p.size).reshape(p.shape) % 2) * 112,
                                             floor_db=-88.0, step_db=1.0, levels=113), []),
        "level-target0-points-90": (envelope(lambda p: np.zeros_like(p), target_db=0.0, floor_db=-90.0), []),
        "level-writers-loudest": (with_points(speech, model.identity.tables, lambda p: np.full_like(p, top)), []),
        "level-writers-swinging": (with_points(speech, model.identity.tables,
                                               lambda p: (np.arange(p.size).reshape(p.shape) % 2) * top), []),
    }


def measure(python: str, pythonpath: str | None, path: Path, extra: list[str]) -> dict:
    model = [] if path.name.startswith("level-") else ["-m", str(MODEL)]  # the level files are the default model's
    cmd = ["info", str(path)] if extra == ["info"] else ["decode", str(path), str(path.with_suffix(".wav")),
                                                         "-f", *model, *extra]
    env = {"PYTHONPATH": pythonpath} if pythonpath else {}
    import os

    env = {**os.environ, **env, "MALLOC_MMAP_MAX_": "0"}
    timed = ["/usr/bin/time", "-v"] if Path("/usr/bin/time").exists() else []

    def limit():
        resource.setrlimit(resource.RLIMIT_AS, (8 << 30, 8 << 30))

    t0 = time.monotonic()
    try:
        r = subprocess.run(timed + [python, "-m", "neurocodec.cli", *cmd], capture_output=True, timeout=120, cwd="/",
                           env=env, preexec_fn=limit)
        code, err = r.returncode, r.stderr.decode(errors="replace")
    except subprocess.TimeoutExpired:
        code, err = "timeout", ""
    seconds = time.monotonic() - t0
    rss = next((int(line.split(":")[1]) / 1024 for line in err.splitlines() if "Maximum resident" in line), None)
    lines = [line for line in err.splitlines() if line.strip() and not line.startswith("\t")]
    last = next((line for line in reversed(lines) if "Error" in line or "error" in line), lines[-1] if lines else "")
    full_scale = None
    if path.with_suffix(".wav").exists():  # samples at full scale in what was written
        import numpy as np
        import soundfile as sf

        audio = sf.read(str(path.with_suffix(".wav")), dtype="int16")[0].astype(np.int32)
        full_scale = int((np.abs(audio) >= 32767).sum())
    path.with_suffix(".wav").unlink(missing_ok=True)
    return {"exit": code, "seconds": round(seconds, 1), "peak_rss_mb": rss and round(rss), "full_scale": full_scale,
            "message": last[:160]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--python", default=sys.executable)
    ap.add_argument("--pythonpath", default=None)
    ap.add_argument("--out", type=Path, default=Path("/tmp/redteam"))
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    results = {}
    for name, (data, extra) in files().items():
        path = args.out / f"{name}.ncd"
        path.write_bytes(data)
        results[name] = {"bytes": len(data), **measure(args.python, args.pythonpath, path, extra)}
        print(name, json.dumps(results[name]), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
