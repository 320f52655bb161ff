#!/usr/bin/env python3
"""Tune the encoder's analysis-by-synthesis search (`neurocodec/search.py`) on development files: learning rate,
steps and the rate term's weight, judged by PESQ-WB, log-mel and real kbps through real `.ncd` files at 6 kbps.

    python research/search_tuning.py DEV_FOLDER --grid 0.025:16,0.05:16 [--rate 0,0.002]

DEV_FOLDER: `python tools/devset.py DEV_FOLDER` (the validation split, never the evaluation set). Each grid point
is lr:steps.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from neurocodec import metrics, search
from neurocodec.audio import read_audio, write_audio
from neurocodec.eval.run import collect
from neurocodec.loader import load_model


def add_complex_term(weight: float) -> None:
    """Patch `search.SpectralLoss` (this process only) with a phase-aware complex-spectrum term."""
    plain = search.SpectralLoss.forward

    def compress(spec: torch.Tensor) -> torch.Tensor:
        return spec * (spec.abs() + 1e-6) ** (0.3 - 1)

    def forward(self, ref: torch.Tensor, est: torch.Tensor) -> torch.Tensor:
        diff = compress(search.stft(est, 1024)) - compress(search.stft(ref, 1024))
        return plain(self, ref, est) + weight * diff.abs().mean()

    search.SpectralLoss.forward = forward


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("folder")
    ap.add_argument("--grid", default="0.025:16")
    ap.add_argument("--rate", default="0")
    ap.add_argument("--complex", type=float, default=0.0,
                    help="weight of a phase-aware term added to the search's loss: L1 between complex spectra "
                         "(window 1024) with magnitudes compressed to the 0.3 power")
    ap.add_argument("--kbps", type=float, default=6.0)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.complex:
        add_complex_term(args.complex)
    model = load_model(device="cpu")
    items = collect([args.folder])
    refs = []
    for it in items:
        audio, sr = read_audio(it.path)
        refs.append((audio.mean(0).astype(np.float32), sr))
    points = [(None, 0, 0.0)] + [(float(g.split(":")[0]), int(g.split(":")[1]), float(r))
                                 for g in args.grid.split(",") for r in args.rate.split(",")]
    for lr, steps, rate in points:
        if steps:
            search.LEARNING_RATE = lr
            search.EFFORT_STEPS = (0, steps)
        search.RATE_WEIGHT = rate
        pesq, mel, kbps, seconds, duration = [], [], [], 0.0, 0.0
        with tempfile.TemporaryDirectory() as tmp:
            for ref, sr in refs:
                src, ncd, out = Path(tmp, "in.wav"), Path(tmp, "x.ncd"), Path(tmp, "out.wav")
                write_audio(src, ref[None], sr)
                t0 = time.perf_counter()
                model.encode_file(str(src), str(ncd), kbps=args.kbps, effort=1 if steps else 0)
                seconds += time.perf_counter() - t0
                model.decode_file(str(ncd), str(out))
                est = read_audio(out)[0][0]
                pesq.append(metrics.pesq_wb(ref, est, sr))
                mel.append(metrics.mel_distance(ref, est, sr))
                kbps.append(ncd.stat().st_size * 8 / (len(ref) / sr) / 1000)
                duration += len(ref) / sr
        print(f"lr {lr} steps {steps} rate {rate}: PESQ {np.mean(pesq):.3f} log-mel {np.mean(mel):.4f} "
              f"kbps {np.mean(kbps):.3f} encode {duration / seconds:.2f}x", flush=True)


if __name__ == "__main__":
    main()
