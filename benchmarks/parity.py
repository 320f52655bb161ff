#!/usr/bin/env python3
"""The light runtime (ONNX Runtime) against the torch path on the evaluation set, through the API files take.

    python benchmarks/parity.py [MANIFEST] [--kbps 6] [--threads 2]

For every file of MANIFEST (default: the corpus's evaluation manifest, `tools/build_corpus.py`): encode with both
runtimes (level loop on, as files are made) and count the frames whose codes are equal in every codebook; decode
the torch path's codes with both and compare PESQ-WB (speech) against the input, and the largest sample
difference. Targets (issue "A light runtime"): codes equal on ≥ 99.9 % of frames; mean PESQ-WB within 0.01.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from neurocodec import metrics
from neurocodec.audio import read_audio
from neurocodec.eval.run import collect
from neurocodec.loader import load_model

MANIFEST = Path("~/.cache/neurocodec/corpus/eval/manifest.json").expanduser()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("manifest", nargs="?", default=str(MANIFEST))
    ap.add_argument("--kbps", type=float, default=6.0)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    light = load_model(runtime="onnx", threads=args.threads)
    heavy = load_model(runtime="torch", device="cpu")
    frames = equal = 0
    pesq = {"onnx": [], "torch": []}
    worst = 0.0
    seconds = {"onnx": 0.0, "torch": 0.0}
    for item in collect([args.manifest]):
        audio, sr = read_audio(item.path)
        encoded = {}
        for name, model in (("onnx", light), ("torch", heavy)):
            t0 = time.perf_counter()
            encoded[name] = model.encode(audio, sr, kbps=args.kbps)
            seconds[name] += time.perf_counter() - t0
        a, b = encoded["onnx"].codes, encoded["torch"].codes
        frames += a.shape[0] * a.shape[-1]
        equal += int((a == b).all(axis=1).sum())
        out = {name: model.decode(encoded["torch"]) for name, model in (("onnx", light), ("torch", heavy))}
        worst = max(worst, float(np.abs(out["onnx"] - out["torch"]).max()))
        if item.kind == "speech":
            for name in out:
                pesq[name].append(metrics.pesq_wb(audio.mean(axis=0), out[name].mean(axis=0), sr))
    result = {"files": len(collect([args.manifest])), "frames": frames, "codes_equal_frames": equal / frames,
              "pesq_wb_onnx": float(np.mean(pesq["onnx"])), "pesq_wb_torch": float(np.mean(pesq["torch"])),
              "pesq_wb_largest_file_difference": float(np.max(np.abs(np.subtract(pesq["onnx"], pesq["torch"])))),
              "largest_sample_difference": worst, "encode_seconds": seconds, "speech_files": len(pesq["onnx"])}
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
