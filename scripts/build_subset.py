"""Cut a FLAC subset of the training corpus small enough to travel to a lent GPU machine (64 MiB in all).

    python scripts/build_subset.py ~/.cache/neurocodec/corpus .devdata --megabytes 24

Writes OUT/train/{speech,music}/*.flac (random excerpts of random files, 24 kHz mono, 16-bit FLAC, until each
category's share of the byte budget is spent) and OUT/valid/ (a few excerpts of the validation folder, for the
trainer's health checks). Excerpts rather than whole files: more speakers and pieces per megabyte.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import soundfile as sf

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from neurocodec.audio import list_audio  # noqa: E402


def excerpts(files: list[Path], out: Path, budget: int, seconds: float, rng: np.random.Generator) -> tuple[int, float]:
    """Write random excerpts of `files` into `out` until `budget` bytes; returns (bytes, seconds) written."""
    out.mkdir(parents=True, exist_ok=True)
    infos = [sf.info(str(f)) for f in files]
    durations = np.array([i.duration for i in infos])
    # Long files (music) get proportionally more excerpts than short prompts.
    p = durations / durations.sum()
    written, total_s, n = 0, 0.0, 0
    while written < budget:
        i = int(rng.choice(len(files), p=p))
        rate = infos[i].samplerate
        length = min(int(seconds * rate), infos[i].frames)
        start = int(rng.integers(0, max(1, infos[i].frames - length + 1)))
        audio, _ = sf.read(str(files[i]), start=start, frames=length, dtype="float32", always_2d=True)
        audio = audio.mean(axis=1)
        if np.sqrt(np.mean(audio**2)) < 10 ** (-45 / 20):
            continue
        path = out / f"{n:05d}.flac"
        sf.write(str(path), audio, rate, subtype="PCM_16", format="FLAC")
        written += path.stat().st_size
        total_s += len(audio) / rate
        n += 1
    return written, total_s


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("corpus", type=Path, help="the corpus folder (train/ and valid/ with speech/ and music/)")
    ap.add_argument("out", type=Path)
    ap.add_argument("--megabytes", type=float, default=24.0, help="training subset size")
    ap.add_argument("--music-share", type=float, default=0.35)
    ap.add_argument("--seconds", type=float, default=4.0, help="excerpt length")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    rng = np.random.default_rng(args.seed)
    corpus = args.corpus.expanduser()
    budget = args.megabytes * 1e6
    for category, share in (("speech", 1 - args.music_share), ("music", args.music_share)):
        b, s = excerpts(list_audio([corpus / "train" / category]), args.out / "train" / category,
                        int(budget * share), args.seconds, rng)
        print(f"train/{category}: {b / 1e6:.1f} MB, {s / 60:.1f} min")
    for category in ("speech", "music"):
        b, s = excerpts(list_audio([corpus / "valid" / category]), args.out / "valid" / category, 400_000, 3.5, rng)
        print(f"valid/{category}: {b / 1e6:.1f} MB, {s / 60:.1f} min")


if __name__ == "__main__":
    main()
