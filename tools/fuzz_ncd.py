#!/usr/bin/env python3
"""Structure-aware fuzzing of `neurocodec decode --decode-through-errors`: counts per outcome and the worst file.

    python tools/fuzz_ncd.py [--cases 100000] [--seed 0] [--workers 2] [--worst worst.ncd]

Files come from tools/ncd_fuzz.py (valid CRCs, hostile values). Outcomes: refused (clean one-line error),
concealed, decoded, escape (any other exception), over budget (output longer than the bytes justify, memory or
time beyond the budget), hang. The worst file is the one that took longest; `--worst` saves it.
"""

from __future__ import annotations

import argparse
import collections
import json
import multiprocessing
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

import ncd_fuzz


def _case(seed: int) -> tuple[int, str, dict, bytes]:
    data = ncd_fuzz.file_bytes(seed)
    outcome, facts = ncd_fuzz.run_case(data)
    return seed, outcome, facts, data


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", type=int, default=100_000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workers", type=int, default=1, help="processes (each decodes its own cases)")
    ap.add_argument("--worst", type=Path, help="save the slowest file here")
    args = ap.parse_args()
    counts: collections.Counter = collections.Counter()
    worst = (0.0, -1, b"", {})
    bad = []
    t0 = time.monotonic()
    seeds = range(args.seed, args.seed + args.cases)
    pool = multiprocessing.Pool(args.workers) if args.workers > 1 else None
    results = pool.imap_unordered(_case, seeds, chunksize=20) if pool else map(_case, seeds)
    for i, (seed, outcome, facts, data) in enumerate(results):
        counts[outcome] += 1
        if facts["seconds"] > worst[0]:
            worst = (facts["seconds"], seed, data, facts)
        if outcome in ("escape", "over budget", "hang"):
            bad.append({"seed": seed, "outcome": outcome, **{k: v for k, v in facts.items() if k != "bytes"}})
            print(f"seed {seed}: {json.dumps(bad[-1], default=str)}", file=sys.stderr, flush=True)
        if (i + 1) % 5000 == 0:
            print(f"{i + 1} cases, {time.monotonic() - t0:.0f} s: {dict(counts)}", file=sys.stderr, flush=True)
    print(json.dumps({"cases": args.cases, "seed": args.seed, "counts": dict(counts),
                      "seconds": round(time.monotonic() - t0, 1),
                      "worst": {"seed": worst[1], "bytes": len(worst[2]), "seconds": round(worst[0], 3),
                                "peak_python_mb": round(worst[3].get("peak_bytes", 0) / 2**20, 1),
                                "outcome_facts": {k: v for k, v in worst[3].items() if k not in ("peak_bytes",)}},
                      "failures": bad[:20]}, indent=1, default=str))
    if args.worst is not None and worst[2]:
        args.worst.write_bytes(worst[2])
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
