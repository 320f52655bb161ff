#!/usr/bin/env python3
"""Turn a training run's generator into the bundled default model.

    python tools/release_model.py RUN_DIR/best.safetensors [--out neurocodec/weights/default.safetensors]
        [--audio ~/.cache/neurocodec/corpus/train] [--minutes 20]

Steps: convert the weights to fp16 (the file must stay under 25 MB), then fit the entropy coder's integer tables on
the codes that this fp16 model produces for random *training* files (never the evaluation set), and store them in
the same file. Prints the model hash, size and the fitted bits per code.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent

from neurocodec.checkpoint import read_model, save_model
from neurocodec.entropy_fit import fit_entropy_model


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkpoint", type=Path)
    ap.add_argument("--out", type=Path, default=ROOT / "neurocodec" / "weights" / "default.safetensors")
    ap.add_argument("--audio", nargs="+", default=[str(Path("~/.cache/neurocodec/corpus/train").expanduser())])
    ap.add_argument("--minutes", type=float, default=20.0)
    ap.add_argument("--contexts", type=int, default=16)
    args = ap.parse_args()
    state, info = read_model(args.checkpoint)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        half = Path(tmp, "half.safetensors")
        save_model(half, state, info.config, name=info.name, dtype=torch.float16,
                   extra={**info.extra, "source": args.checkpoint.name})
        result = fit_entropy_model(str(half), args.audio, str(args.out), args.contexts, args.minutes * 60, "cpu")
    _, released = read_model(args.out)
    result.update({"model": released.name, "weights_sha256": released.weights_sha256,
                   "entropy_sha256": released.entropy.sha256, "size_mb": round(args.out.stat().st_size / 1e6, 2)})
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
