"""Cut a subset of the training corpus small enough to travel to a lent GPU machine (64 MiB a call, the repository
included: about 31 MB are left for data).

    python tools/build_subset.py ~/.cache/neurocodec/corpus .devdata --megabytes 24 [--codec flac]
    python tools/build_subset.py ~/.cache/neurocodec/corpus .devdata --megabytes 30 --codec opus --slice 3

Writes OUT/train/{speech,music}/* (random excerpts of random files, 24 kHz mono, until each category's share of
the byte budget is spent) and OUT/valid/ (a few excerpts of the validation folder, always FLAC, for the trainer's
health checks). Excerpts rather than whole files: more speakers and pieces per megabyte.

`--codec opus` writes Ogg Opus (.ogg, libsndfile's encoder at `--opus-level`, 0.8 is about 59 kbps at 24 kHz
mono, 0.85 about 46 kbps): about 6 times the audio per megabyte of FLAC, and its own distortion is far below the
model's (the transport's log-mel distance is printed, measured on the excerpts themselves; on 9 min of training
excerpts 0.046 at 0.8 and 0.081 at 0.85, where the model at 6 kbps is at 0.23 speech / 0.26 music on the
evaluation set). `--slice K` draws burst K's excerpts with its own seed, so that every burst sees other audio;
the GPU machine decodes them once at start (data.preload).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from neurocodec.audio import list_audio
from neurocodec.metrics import mel_distance


def excerpts(files: list[Path], out: Path, budget: int, seconds: float, rng: np.random.Generator,
             codec: str = "flac", opus_level: float = 0.8, distortion: list[float] | None = None) -> tuple[int, float]:
    """Write random excerpts of `files` into `out` until `budget` bytes; returns (bytes, seconds) written. With
    `distortion`, the transport's log-mel distance of every Opus excerpt is appended to it."""
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
        if codec == "opus":
            if rate != 24000:
                audio, rate = soxr.resample(audio, rate, 24000).astype(np.float32), 24000
            path = out / f"{n:05d}.ogg"
            with sf.SoundFile(str(path), "w", samplerate=rate, channels=1, format="OGG", subtype="OPUS",
                              compression_level=opus_level) as f:
                f.write(audio)
            if distortion is not None:
                back, _ = sf.read(str(path), dtype="float32")
                n_common = min(len(back), len(audio))
                distortion.append(mel_distance(audio[:n_common], back[:n_common], rate))
        else:
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
    ap.add_argument("--codec", choices=("flac", "opus"), default="flac")
    ap.add_argument("--opus-level", type=float, default=0.8, help="libsndfile's Opus compression level (0-1)")
    ap.add_argument("--slice", type=int, default=0, help="which burst's excerpts (each slice draws its own)")
    args = ap.parse_args()
    rng = np.random.default_rng([args.seed, args.slice])
    distortion: list[float] = []
    corpus = args.corpus.expanduser()
    budget = args.megabytes * 1e6
    for category, share in (("speech", 1 - args.music_share), ("music", args.music_share)):
        b, s = excerpts(list_audio([corpus / "train" / category]), args.out / "train" / category,
                        int(budget * share), args.seconds, rng, args.codec, args.opus_level, distortion)
        print(f"train/{category}: {b / 1e6:.1f} MB, {s / 60:.1f} min ({b * 8 / s / 1000:.1f} kbps)")
    if distortion:
        print(f"transport: log-mel distance {np.mean(distortion):.3f} mean, {np.max(distortion):.3f} worst "
              f"over {len(distortion)} excerpts")
    valid_rng = np.random.default_rng(args.seed)  # the same validation clips in every slice: one curve across bursts
    for category in ("speech", "music"):
        b, s = excerpts(list_audio([corpus / "valid" / category]), args.out / "valid" / category, 400_000, 3.5,
                        valid_rng)
        print(f"valid/{category}: {b / 1e6:.1f} MB, {s / 60:.1f} min")


if __name__ == "__main__":
    main()
