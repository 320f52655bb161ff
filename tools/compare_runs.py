#!/usr/bin/env python3
"""Compare training runs at their last common evaluation step, as a markdown table.

    python tools/compare_runs.py RUN_DIR [RUN_DIR ...]

For each run: its recipe (non-zero loss weights), the validation metrics at the last step every run evaluated
(mel distance, SI-SDR, SNR, RMS ratio at the full and half number of codebooks), alarms raised, and throughput
(steps/s, seconds of audio per second) from its log.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

from neurocodec.metrics import at_n_q, n_q_values
from neurocodec.train.rundir import RunDir


def main(runs: list[str]) -> int:
    logs = {r: RunDir(r).read_log() for r in runs}
    evals = {r: {e["step"]: e for e in log if e.get("type") == "eval"} for r, log in logs.items()}
    common = set.intersection(*(set(e) for e in evals.values()))
    if not common:
        print("no evaluation step in common")
        return 1
    step = max(common)
    print(f"Validation at step {step} (the last step every run evaluated):\n")
    print("| run | recipe | mel distance | SI-SDR dB | SNR dB | RMS ratio | alarms | steps/s | audio s/s |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in runs:
        weights = RunDir(r).read_config().loss.weights()
        recipe = ", ".join(f"{k} {v:g}" for k, v in weights.items() if v > 0)
        e = evals[r][step]
        full = n_q_values(e, "snr")[-1]
        rates = [x for x in logs[r] if x.get("type") == "step" and x["step"] <= step]
        alarms = sum(len(x.get("alarms", [])) for x in evals[r].values() if x["step"] <= step)
        m = {name: e[at_n_q(name, full)] for name in ("mel_distance", "si_sdr", "snr", "rms_ratio")}
        print(f"| {Path(r).name} | {recipe} | {m['mel_distance']:.3f} | {m['si_sdr']:.1f} | "
              f"{m['snr']:.1f} | {m['rms_ratio']:.2f} | {alarms} | {rates[-1]['steps_per_s']:.2f} | "
              f"{rates[-1]['audio_s_per_s']:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
