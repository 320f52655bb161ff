#!/usr/bin/env python3
"""Whole commands in fresh processes, start-up included, against opusenc/opusdec in the same run.

    python benchmarks/commands.py [--runs 5] [--threads 2] [--long 300] [--runtimes onnx,torch]

Times (median of `--runs`, each command a fresh process, as a user runs it):
  * the 5.3 s example (`examples/speech.flac`): `neurocodec encode` then `neurocodec decode`, per runtime, and
    `opusenc --bitrate 6` then `opusdec` on the same file; plus `neurocodec --help` and `neurocodec info` (no model);
  * with `--long S`: S seconds of real speech (the example tiled, 16-bit WAV at 24 kHz) encoded then decoded once
    per runtime, with each command's peak RSS (its own `ru_maxrss`, from `os.wait4`), and Opus on the same file.
Targets (issue "A light runtime"): example encode + decode ≤ 1.0 s on an idle machine; 300 s file encode + decode
≤ 1.5x Opus's wall, peak RSS ≤ 300 MB on the light path (onnx).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "speech.flac"


def run(command: list[str]) -> tuple[float, float]:
    """(wall seconds, peak RSS in MB) of one command in a fresh process; it must succeed."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    err = proc.stderr.read().decode()
    proc.stderr.close()
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{' '.join(command)} failed: {err[-400:]}")
    return wall, usage.ru_maxrss / 1024


def rounded(x):
    if isinstance(x, dict):
        return {k: rounded(v) for k, v in x.items()}
    return round(x, 3) if isinstance(x, float) else x


def median(command: list[str], runs: int) -> float:
    return statistics.median(run(command)[0] for _ in range(runs))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--long", type=float, default=0.0, help="seconds of the long file (0: skip it)")
    ap.add_argument("--runtimes", default="onnx,torch")
    args = ap.parse_args()
    if not (shutil.which("opusenc") and shutil.which("opusdec")):
        print("opusenc/opusdec not found: apt-get install opus-tools", file=sys.stderr)
        return 6
    cli = [sys.executable, "-m", "neurocodec.cli"]
    results: dict = {"runs": args.runs, "threads": args.threads}
    with tempfile.TemporaryDirectory() as tmp:
        t = Path(tmp)
        ncd, wav, opus = t / "a.ncd", t / "a.wav", t / "a.opus"
        results["help_s"] = median(cli + ["--help"], args.runs)
        for runtime in args.runtimes.split(","):
            opts = ["--runtime", runtime, "--threads", str(args.threads), "-q", "-f"]
            enc = median(cli + ["encode", str(EXAMPLE), str(ncd)] + opts, args.runs)
            dec = median(cli + ["decode", str(ncd), str(wav)] + opts, args.runs)
            results[runtime] = {"encode_s": enc, "decode_s": dec, "total_s": enc + dec}
        results["info_s"] = median(cli + ["info", str(ncd)], args.runs)
        enc = median(["opusenc", "--quiet", "--bitrate", "6", str(EXAMPLE), str(opus)], args.runs)
        dec = median(["opusdec", "--quiet", str(opus), str(wav)], args.runs)
        results["opus"] = {"encode_s": enc, "decode_s": dec, "total_s": enc + dec}
        for runtime in args.runtimes.split(","):
            results[runtime]["x_opus"] = results[runtime]["total_s"] / results["opus"]["total_s"]
        if args.long:
            import soundfile as sf

            from neurocodec.audio import read_audio, resample

            audio, sr = read_audio(EXAMPLE)
            audio = resample(audio.mean(axis=0, keepdims=True), sr, 24000)[0]
            long = np.tile(audio, int(np.ceil(args.long * 24000 / len(audio))))[: int(args.long * 24000)]
            source = t / "long.wav"
            sf.write(source, long, 24000, subtype="PCM_16")
            block = {"seconds": args.long}
            for runtime in args.runtimes.split(","):
                opts = ["--runtime", runtime, "--threads", str(args.threads), "-q", "-f"]
                enc, enc_rss = run(cli + ["encode", str(source), str(ncd)] + opts)
                dec, dec_rss = run(cli + ["decode", str(ncd), str(wav)] + opts)
                block[runtime] = {"encode_s": enc, "decode_s": dec, "total_s": enc + dec,
                                  "peak_rss_mb": max(enc_rss, dec_rss), "encode_x_real_time": args.long / enc,
                                  "decode_x_real_time": args.long / dec}
            enc, enc_rss = run(["opusenc", "--quiet", "--bitrate", "6", str(source), str(opus)])
            dec, dec_rss = run(["opusdec", "--quiet", str(opus), str(wav)])
            block["opus"] = {"encode_s": enc, "decode_s": dec, "total_s": enc + dec,
                             "peak_rss_mb": max(enc_rss, dec_rss)}
            for runtime in args.runtimes.split(","):
                block[runtime]["x_opus"] = block[runtime]["total_s"] / block["opus"]["total_s"]
            results["long"] = block
    print(json.dumps(rounded(results), indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
