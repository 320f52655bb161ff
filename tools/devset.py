#!/usr/bin/env python3
"""The development speech set: a fixed pick of the validation split (never the evaluation set) for tuning the
encoder's search and judging encoder fine-tunes, linked into OUT/speech so that `neurocodec eval OUT` reads it.

    python tools/devset.py OUT [--corpus ~/.cache/neurocodec/corpus]

The pick: validation speech files of 2.5 to 7 s in sorted order, every third, the first 12 (40 s; English, Spanish
and French prompts, Czech game voices, children's syllables).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import soundfile as sf


def pick(corpus: Path) -> list[Path]:
    files = sorted((corpus / "valid" / "speech").rglob("*.flac"))
    return [f for f in files if 2.5 <= sf.info(str(f)).duration <= 7][::3][:12]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--corpus", type=Path, default=Path("~/.cache/neurocodec/corpus").expanduser())
    args = ap.parse_args()
    folder = args.out / "speech"
    folder.mkdir(parents=True, exist_ok=True)
    for i, f in enumerate(pick(args.corpus)):
        link = folder / f"{i:02d}_{f.name}"
        if not link.exists():
            os.symlink(f, link)
    print(f"{len(list(folder.iterdir()))} files in {folder}")


if __name__ == "__main__":
    main()
