#!/usr/bin/env python3
"""A model on a training config's validation clips, as the trainer's evaluation measures it; optionally after a few
training steps started from it (what a fresh optimiser does to a trained model).

    python tools/validate_model.py CONFIG MODEL [--valid DIR ...] [--train DIR ...]
                                     [--steps N --batch B --lr LR --warmup W]

Prints mel distance, SI-SDR, SNR and output/input RMS at the config's full number of codebooks, and the level
sweep. `--valid` replaces the config's validation folders (e.g. a burst's `.devdata/valid`, kept in
~/.cache/neurocodec/devdata/s1/valid); `--train` its training folders (only read with `--steps`). Fixed seeds: the
same command gives the same figures.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

from neurocodec.config import load_config
from neurocodec.metrics import at_n_q
from neurocodec.train.trainer import Trainer


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("config", type=Path)
    ap.add_argument("model", type=Path)
    ap.add_argument("--valid", nargs="+")
    ap.add_argument("--train", nargs="+")
    ap.add_argument("--steps", type=int, default=0, help="training steps before the evaluation")
    ap.add_argument("--batch", type=int)
    ap.add_argument("--lr", type=float)
    ap.add_argument("--warmup", type=int, help="train.warmup_steps")
    args = ap.parse_args()
    cfg = load_config(args.config)
    valid = tuple(args.valid) if args.valid else cfg.data.valid
    data = dataclasses.replace(cfg.data, valid=valid, train=tuple(args.train) if args.train else valid,
                               preload=False, resident=False)
    changes = {k: v for k, v in (("batch_size", args.batch), ("lr", args.lr), ("warmup_steps", args.warmup))
               if v is not None}
    cfg = dataclasses.replace(cfg, data=data, train=dataclasses.replace(cfg.train, compile=False, **changes))
    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer(cfg, Path(tmp) / "run", device="cpu", init=args.model)
        for _ in range(args.steps):
            trainer.train_step(sync=True)
            trainer.step += 1
        record = trainer.evaluate()
    n_q = cfg.model.quantizer.n_q
    figures = {name: record[at_n_q(name, n_q)] for name in ("mel_distance", "si_sdr", "snr", "rms_ratio")}
    print(f"{args.model.name} after {args.steps} steps, {n_q} codebooks: "
          + ", ".join(f"{k} {v:.3f}" for k, v in figures.items()))
    print("level sweep (output/input RMS by input dBFS): " + ", ".join(f"{k} {v}" for k, v in record["level_sweep"].items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
