"""Training curves from a run's log.jsonl, drawn to RUN_DIR/curves.png (`neurocodec train --plot RUN_DIR`)."""

from __future__ import annotations

import math
from pathlib import Path

from ..config import LOSS_TERMS
from ..errors import MissingDependencyError
from ..metrics import at_n_q, n_q_values
from .rundir import RunDir

HEALTH = ("snr", "si_sdr", "rms_ratio", "mel_distance")


def plot_run(run_dir: Path, out: Path | None = None) -> Path:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise MissingDependencyError("plots need matplotlib: pip install 'neurocodec[train]'") from None
    run = RunDir(run_dir)
    records = run.read_log()
    steps = [r for r in records if r.get("type") == "step"]
    evals = [r for r in records if r.get("type") == "eval"]
    fig, axes = plt.subplots(2, 3, figsize=(15, 7.5))
    ax = axes[0, 0]
    for key in [f"loss_{name}" for name in LOSS_TERMS] + ["loss_d"]:
        pts = [(r["step"], r[key]) for r in steps if key in r and math.isfinite(r[key]) and r[key] > 0]
        if pts:
            ax.plot(*zip(*pts), label=key.removeprefix("loss_"), lw=0.8)
    ax.set_yscale("log")
    ax.set_title("training losses (unweighted)")
    ax.legend(fontsize=7)
    for ax, metric in zip((axes[0, 1], axes[0, 2], axes[1, 0], axes[1, 1]), HEALTH):
        for n_q in sorted({n for r in evals for n in n_q_values(r, metric)}):
            pts = [(r["step"], r[at_n_q(metric, n_q)]) for r in evals if at_n_q(metric, n_q) in r]
            ax.plot(*zip(*pts), marker=".", label=f"{n_q} codebooks")
        if metric == "rms_ratio":
            ax.axhspan(0.9, 1.1, color="green", alpha=0.1)
            ax.axhline(0.5, color="red", lw=0.8, ls="--")
        ax.set_title(f"validation {metric}")
        ax.legend(fontsize=7)
    ax = axes[1, 2]
    if evals and "perplexity" in evals[-1]:
        for q in range(len(evals[-1]["perplexity"])):
            ax.plot([r["step"] for r in evals], [r["perplexity"][q] for r in evals], lw=0.8)
        ax.set_title("codebook perplexity (one line per codebook)")
    for a in axes.flat:
        a.set_xlabel("step")
        a.grid(alpha=0.3)
    alarms = sum(len(r.get("alarms", [])) for r in evals)
    fig.suptitle(f"{run.path.name}: {steps[-1]['step'] if steps else 0} steps, {alarms} alarms")
    fig.tight_layout()
    out = out or run.curves
    fig.savefig(out, dpi=80)
    plt.close(fig)
    return out
