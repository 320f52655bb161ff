"""The eval report: results.json, results.csv, report.md and pictures a person can judge a model from.

Pictures: log-mel spectrograms of the original, neurocodec and Opus at the same bitrate for a few files, and one
quality-vs-bitrate plot per metric with the baselines (mean over files, speech and music apart).
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np

from ..errors import MissingDependencyError
from .run import METRICS, aggregate

LOWER_IS_BETTER = {"mel_distance", "stft_distance"}
COLORS = {"neurocodec": "C0", "opus": "C1", "codec2": "C2"}  # one colour per system in every plot


def _plt():
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise MissingDependencyError("plots need matplotlib: pip install 'neurocodec[eval]'") from None
    return plt


def _save(plt, fig, path: Path, dpi: int) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return path


def write_report(rows: list[dict], out: Path, audio_dir: Path | None, title: str, command: str) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    agg = aggregate(rows)
    (out / "results.json").write_text(json.dumps({"rows": rows, "aggregate": agg}, indent=1) + "\n")
    keys = list(dict.fromkeys(k for r in rows for k in r))
    with open(out / "results.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=keys)
        w.writeheader()
        w.writerows(rows)
    pngs = plot_metrics(agg, out)
    if audio_dir is not None:
        pngs += plot_spectrograms(rows, audio_dir, out)
    (out / "report.md").write_text(markdown(agg, title, command, [p.name for p in pngs]))
    return pngs


def markdown_table(agg: list[dict]) -> str:
    cols = ["kind", "system", "bitrate", "files", *METRICS, "encode_x_realtime", "decode_x_realtime", "wideband"]
    cols = [c for c in cols if any(c in a for a in agg)]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for a in agg:
        lines.append("| " + " | ".join(_fmt(a.get(c)) for c in cols) + " |")
    return "\n".join(lines)


def _fmt(v) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    if isinstance(v, float):
        return f"{v:.3g}" if abs(v) < 100 else f"{v:.0f}"
    return str(v)


def markdown(agg: list[dict], title: str, command: str, pictures: list[str]) -> str:
    parts = [f"# {title}", "", f"Reproduce: `{command}`", "",
             "Means over files. kbps is the real bitrate (file bytes × 8 / duration). PESQ-WB and STOI on speech at "
             "16 kHz; SNR and SI-SDR after delay alignment; rms_ratio is output RMS / input RMS.", "",
             markdown_table(agg), ""]
    parts += [f"![{p}]({p})" for p in pictures]
    return "\n".join(parts) + "\n"


def plot_metrics(agg: list[dict], out: Path) -> list[Path]:
    plt = _plt()
    paths = []
    for metric in ("pesq", "stoi", "mel_distance", "si_sdr", "stft_distance"):
        kinds = sorted({a["kind"] for a in agg if metric in a})
        if not kinds:
            continue
        fig, axes = plt.subplots(1, len(kinds), figsize=(5 * len(kinds), 3.6), squeeze=False)
        for ax, kind in zip(axes[0], kinds):
            for system in sorted({a["system"] for a in agg if a["kind"] == kind}):
                pts = sorted((a["kbps"], a[metric]) for a in agg
                             if a["kind"] == kind and a["system"] == system and metric in a and "kbps" in a)
                if pts:
                    ax.plot(*zip(*pts), marker="o", label=system, color=COLORS.get(system))
            ax.set_title(f"{kind}: {metric}" + (" (lower is better)" if metric in LOWER_IS_BETTER else ""))
            ax.set_xlabel("real kbps")
            ax.grid(alpha=0.3)
            ax.legend()
        paths.append(_save(plt, fig, out / f"{metric}_vs_bitrate.png", dpi=90))
    return paths


def plot_spectrograms(rows: list[dict], audio_dir: Path, out: Path, n_files: int = 3, kbps: float = 6.0) -> list[Path]:
    """Original vs neurocodec vs Opus at `kbps` (or the nearest bitrate evaluated) for a few speech and music files."""
    import librosa

    from ..audio import read_audio

    plt = _plt()
    paths = []
    files = {}
    for r in rows:
        files.setdefault(r["kind"], [])
        if r["file"] not in files[r["kind"]]:
            files[r["kind"]].append(r["file"])
    def nearest(system: str) -> float | None:
        rates = {r["bitrate"] for r in rows if r["system"] == system}
        return min(rates, key=lambda b: abs(b - kbps)) if rates else None

    for kind, ids in files.items():
        for fid in ids[:n_files]:
            panels = [("original", audio_dir / f"{fid}.original.0k.flac")]
            for system in ("neurocodec", "opus"):
                rate = nearest(system)
                if rate is not None:
                    panels.append((f"{system} {rate:g} kbps", audio_dir / f"{fid}.{system}.{rate:g}k.flac"))
            panels = [(t, p) for t, p in panels if p.exists()]
            fig, axes = plt.subplots(len(panels), 1, figsize=(9, 2.2 * len(panels)), squeeze=False)
            for ax, (label, path) in zip(axes[:, 0], panels):
                audio, sr = read_audio(path)
                mel = librosa.feature.melspectrogram(y=audio[0], sr=sr, n_fft=1024, hop_length=256, n_mels=80)
                ax.imshow(np.log10(np.maximum(mel, 1e-6)), origin="lower", aspect="auto", vmin=-6, vmax=2,
                          extent=(0, audio.shape[-1] / sr, 0, 80), cmap="magma")
                ax.set_title(f"{fid}: {label}", fontsize=9)
                ax.set_ylabel("mel band")
            axes[-1, 0].set_xlabel("seconds")
            paths.append(_save(plt, fig, out / f"spectrogram_{fid}.png", dpi=80))
    return paths
