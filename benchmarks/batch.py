#!/usr/bin/env python3
"""Many short files in one command against an opusenc/opusdec loop over the same files, measured in one run.

    python benchmarks/batch.py [--files 200] [--seconds 5] [--jobs 2] [--model default]

Cuts `--files` clips of `--seconds` of real speech (the bundled example, tiled, each from another offset) into a
temporary folder as 16-bit WAV at 48 kHz, then times, as whole commands (start-up included):
  * `neurocodec encode DIR -o OUT --jobs J` and `neurocodec decode OUT -o WAVS --jobs J`;
  * `opusenc --bitrate 6` and `opusdec` over the same files, one process per file, in a shell loop;
and prints the walls and the ratios neurocodec ÷ Opus. Target (issue "A light runtime"): encode within 3x.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

ROOT = Path(__file__).resolve().parent.parent


def clips(folder: Path, files: int, seconds: float, rate: int = 48000) -> None:
    from neurocodec.audio import read_audio, resample

    audio, sr = read_audio(ROOT / "examples" / "speech.flac")
    audio = resample(audio.mean(axis=0, keepdims=True), sr, rate)[0]
    n = int(seconds * rate)
    long = np.tile(audio, int(np.ceil((files * rate // 7 + n) / len(audio))) + 1)
    for i in range(files):
        start = (i * rate // 7) % (len(long) - n)  # a seventh of a second apart: no two clips alike
        sf.write(folder / f"clip{i:04d}.wav", long[start: start + n], rate, subtype="PCM_16")


def timed(command: list[str] | str, shell: bool = False) -> float:
    t0 = time.perf_counter()
    subprocess.run(command, shell=shell, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--files", type=int, default=200)
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--model", default="default")
    args = ap.parse_args()
    if not (shutil.which("opusenc") and shutil.which("opusdec")):
        print("opusenc/opusdec not found: apt-get install opus-tools", file=sys.stderr)
        return 6
    neurocodec = [sys.executable, "-m", "neurocodec.cli"]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "in").mkdir()
        clips(root / "in", args.files, args.seconds)
        for folder in ("opus", "opuswav"):
            (root / folder).mkdir()
        result = {"files": args.files, "seconds_each": args.seconds, "jobs": args.jobs}
        result["neurocodec_encode_s"] = timed([*neurocodec, "encode", str(root / "in"), "-o", str(root / "ncd"),
                                               "--jobs", str(args.jobs), "-m", args.model, "-q"])
        result["neurocodec_decode_s"] = timed([*neurocodec, "decode", str(root / "ncd"), "-o", str(root / "out"),
                                               "--jobs", str(args.jobs), "-m", args.model, "-q"])
        result["opusenc_loop_s"] = timed(f"for f in '{root}'/in/*.wav; do opusenc --quiet --bitrate 6 \"$f\" "
                                         f"'{root}'/opus/$(basename \"$f\" .wav).opus; done", shell=True)
        result["opusdec_loop_s"] = timed(f"for f in '{root}'/opus/*.opus; do opusdec --quiet \"$f\" "
                                         f"'{root}'/opuswav/$(basename \"$f\" .opus).wav; done", shell=True)
        assert len(list((root / "ncd").glob("*.ncd"))) == args.files == len(list((root / "out").glob("*.wav")))
        result["encode_ratio"] = round(result["neurocodec_encode_s"] / result["opusenc_loop_s"], 2)
        result["decode_ratio"] = round(result["neurocodec_decode_s"] / result["opusdec_loop_s"], 2)
    print(json.dumps({k: round(v, 2) if isinstance(v, float) else v for k, v in result.items()}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
