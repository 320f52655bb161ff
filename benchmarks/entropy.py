#!/usr/bin/env python3
"""Entropy-coded size against fixed-width packing, on held-out audio.

    python benchmarks/entropy.py [--model default] [--audio ~/.cache/neurocodec/corpus/eval/manifest.json]

For each bitrate: fixed-width bits (n_q × log2(codebook_size) per frame), the entropy-coded payload, and the
whole .ncd file (headers, index, trailer), as ratios to fixed width, plus the real bitrate. Quality is the same
in every column: entropy coding is lossless, the codes are identical. Goal: ≤ 0.80 of fixed width.
Also reports the same figure for the uniform tables (no statistics), which shows the container overhead alone.
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="default")
    ap.add_argument("--audio", nargs="+", default=[str(Path("~/.cache/neurocodec/corpus/eval/manifest.json").expanduser())])
    ap.add_argument("--bitrates", default="1.5,3,6,12")
    ap.add_argument("--limit", type=int, default=None, help="files per kind")
    args = ap.parse_args()

    from neurocodec import container, entropy
    from neurocodec.eval.run import collect
    from neurocodec.loader import load_model

    model = load_model(args.model, "cpu")
    info = model.info
    items = collect(args.audio, args.limit)
    bits = math.log2(info.config.quantizer.codebook_size)
    print(f"model {info.name}, entropy tables {'uniform' if info.entropy.is_uniform else info.entropy.sha256[:12]}, "
          f"{len(items)} held-out files")
    print(f"{'kbps':>6} {'n_q':>4} {'fixed kbps':>10} {'payload/fixed':>14} {'file/fixed':>11} {'real kbps':>10} "
          f"{'uniform file/fixed':>19}")
    uniform = entropy.uniform_model(info.config.quantizer.n_q, info.config.quantizer.codebook_size)
    for kbps in (float(x) for x in args.bitrates.split(",")):
        fixed = payload = file_bits = uniform_bits = 0.0
        seconds = 0.0
        n_q = info.config.n_q_for_kbps(kbps)
        for item in items:
            with tempfile.TemporaryDirectory() as tmp:
                ncd = Path(tmp, "x.ncd")
                model.encode_file(str(item.path), str(ncd), kbps=kbps)
                data = ncd.read_bytes()
            parsed = container.parse(data)
            frames = sum(c.frame_count for c in parsed.chunks)
            fixed += frames * n_q * bits
            payload += sum(len(c.payload) for c in parsed.chunks) * 8
            file_bits += len(data) * 8
            seconds += parsed.length / parsed.header.sample_rate
            level = parsed.header.level
            blocks = [entropy.decode_chunk(info.entropy, c.payload, 1, c.n_q, c.frame_count, level)
                      for c in parsed.chunks]  # with the level envelope, (codes, points) pairs
            uniform_bits += len(data) * 8 - payload_of(parsed) + sum(
                len(entropy.encode_chunk(uniform, *((b,) if level is None else (b[0], b[1], level)))) * 8
                for b in blocks)
        print(f"{kbps:6g} {n_q:4d} {fixed / seconds / 1000:10.2f} {payload / fixed:14.3f} {file_bits / fixed:11.3f} "
              f"{file_bits / seconds / 1000:10.2f} {uniform_bits / fixed:19.3f}")
    return 0


def payload_of(parsed) -> float:
    return sum(len(c.payload) for c in parsed.chunks) * 8


if __name__ == "__main__":
    sys.exit(main())
