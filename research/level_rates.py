#!/usr/bin/env python3
"""How often should the level envelope be sent? Its cost against how level the model's input comes out.

    python research/level_rates.py [AUDIO ...] [--spacings 0.1,0.2,0.5,1.0] [--limit 8]

For each spacing between envelope points (seconds), over the files (default: the training corpus' validation
folder, never the evaluation set: this chooses a design parameter), each file at its own level: the side
information's cost in kbps (the points' code length, chunks of 1 s), how far the normalised audio's level
strays from the target (RMS over 50 ms windows louder than the floor: the spread, standard deviation in dB, and
the 95th percentile of |level - target|), and its peak in dBFS. No model runs: what the model would be given.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("audio", nargs="*")
    ap.add_argument("--spacings", default="0.1,0.2,0.5,1.0")
    ap.add_argument("--limit", type=int, default=8, help="files per folder")
    args = ap.parse_args()
    torch.set_num_threads(1)

    from neurocodec import entropy
    from neurocodec.audio import list_audio, read_audio, resample
    from neurocodec.identity import level_extension
    from neurocodec.level import LevelCoder

    sources = args.audio or [str(Path("~/.cache/neurocodec/corpus/valid").expanduser())]
    files = []
    for source in sources:
        found = sorted(list_audio([source]))
        files += found[:: max(1, len(found) // args.limit)][: args.limit] if Path(source).is_dir() else found
    sr, hop = 24000, 320
    window = sr // 20
    print(f"{len(files)} files from {', '.join(sources)}")
    print(f"{'spacing s':>9} | {'kbps':>6} | {'spread dB':>9} | {'p95 |dev| dB':>12} | {'peak dBFS':>9}")
    audio = []
    for f in files:
        x, rate = read_audio(f)
        audio.append(torch.from_numpy(resample(x.mean(0, keepdims=True), rate, sr)))
    for spacing in (float(s) for s in args.spacings.split(",")):
        coder = dataclasses.replace(LevelCoder.for_model(sr, hop), spacing_frames=max(1, round(spacing * sr / hop)))
        level = level_extension(coder)
        bits = seconds = 0.0
        deviations, peaks = [], []
        per_chunk = max(1, round(sr / hop / coder.spacing_frames))  # points per 1 s chunk
        for x in audio:
            y, p = coder.normalize(x.numpy())  # the level code is NumPy
            y = torch.from_numpy(y)
            bits += sum(entropy.level_bits(p[:, i:i + per_chunk], level) for i in range(0, p.shape[-1], per_chunk))
            seconds += x.shape[-1] / sr
            n = y.shape[-1] // window * window
            win_db = 10 * torch.log10(y[0, :n].reshape(-1, window).double().pow(2).mean(-1) + 1e-12)
            src_db = 10 * torch.log10(x[0, :n].reshape(-1, window).double().pow(2).mean(-1) + 1e-12)
            deviations.append((win_db - coder.target_db)[src_db > coder.floor_db])
            peaks.append(float(20 * torch.log10(y.abs().max() + 1e-12)))
        dev = torch.cat(deviations)
        print(f"{spacing:9.2f} | {bits / seconds / 1000:6.3f} | {float(dev.std()):9.2f} | "
              f"{float(dev.abs().quantile(0.95)):12.2f} | {max(peaks):9.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
