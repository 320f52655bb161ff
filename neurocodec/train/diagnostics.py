"""Training health: validation metrics, codebook usage, and alarms for the known ways a codec run goes wrong.

A user's codec once collapsed (output amplitude shrinking, negative SNR) behind a mel loss built on a random
filterbank; every symptom of that run is measured here and raises an alarm.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from ..config import TrainConfig
from ..errors import NeurocodecError
from ..level import LevelCoder, gain
from ..metrics import align, at_n_q, mel_distance, n_q_values, rms_ratio, si_sdr, snr
from ..model import Codec
from ..model.quantize import ResidualVectorQuantizer


class TrainingDiverged(NeurocodecError):
    """A loss or gradient became NaN/inf; training stopped with the last good checkpoint kept."""

    exit_code = 7


def normalize(level: LevelCoder, audio: torch.Tensor) -> tuple[torch.Tensor, np.ndarray]:
    """`LevelCoder.normalize` of a tensor `[..., T]` on any device: the envelope and gain are computed in NumPy
    (as encoding does), the gain applied on the tensor's device. → (normalised audio, points `[..., K]`)."""
    x = audio.detach().float().cpu().numpy()
    if x.shape[-1] == 0:
        return audio, np.zeros(x.shape[:-1] + (0,), np.int64)
    points = level.analyse(x)
    return audio * torch.from_numpy(gain(level.gains_db(points, x.shape[-1]))).to(audio), points


def restore(level: LevelCoder, audio: torch.Tensor, points: np.ndarray) -> torch.Tensor:
    """`LevelCoder.restore` of a tensor `[..., T]` on any device."""
    return audio * torch.from_numpy(gain(-level.gains_db(points, audio.shape[-1]))).to(audio)


def coded(codec: Codec, audio: torch.Tensor, n_q: int | None = None) -> torch.Tensor:
    """audio `[B, 1, T]` through the path files take: normalised by its level envelope, coded, restored."""
    level = LevelCoder.for_model(codec.sample_rate, codec.hop_length)
    normalized, points = normalize(level, audio)
    out = codec(normalized, n_q=n_q).audio[..., : audio.shape[-1]]
    return restore(level, out, points)


@torch.no_grad()
def validate(codec: Codec, clips: torch.Tensor, n_q_values: tuple[int, ...]) -> dict[str, float]:
    """Metrics on fixed validation clips `[N, 1, T]`, per number of codebooks (keys from `metrics.at_n_q`)."""
    was_training = codec.training
    codec.eval()
    out: dict[str, float] = {}
    ref = clips.cpu().numpy()[:, 0]
    try:
        for n_q in n_q_values:
            est = coded(codec, clips, n_q).cpu().numpy()[:, 0]
            rows = [
                (snr(r, e), si_sdr(r, e), rms_ratio(r, e), mel_distance(r, e, codec.sample_rate),
                 1000 * align(r, e)[2] / codec.sample_rate)
                for r, e in zip(ref, est)
            ]
            # lag_ms: where the output's cross-correlation with the input peaks (0 for a codec that keeps time; a
            # causal model started from centred weights settled 73 ms late: docs/history.md)
            for name, values in zip(("snr", "si_sdr", "rms_ratio", "mel_distance", "lag_ms"), zip(*rows)):
                out[at_n_q(name, n_q)] = float(np.mean(values))
    finally:
        codec.train(was_training)
    return out


@torch.no_grad()
def level_sweep(codec: Codec, clips: torch.Tensor, levels_db: tuple[float, ...]) -> dict[str, float]:
    """Output RMS / input RMS, mean over clips `[N, 1, T]`, with every clip scaled to each RMS level (dBFS) and
    coded with all codebooks as files are (`coded`): {"-40": 1.14, …}. Not clipped: what the level does to the
    codec, not to a file."""
    was_training = codec.training
    codec.eval()
    out: dict[str, float] = {}
    rms = clips.pow(2).mean(-1, keepdim=True).sqrt().clamp_min(1e-8)
    try:
        for level in levels_db:
            scaled = clips / rms * 10 ** (level / 20)
            est = coded(codec, scaled)
            ratio = est.pow(2).mean(-1).sqrt() / scaled.pow(2).mean(-1).sqrt()
            out[f"{level:g}"] = round(float(ratio.mean()), 4)
    finally:
        codec.train(was_training)
    return out


def codebook_stats(quantizer: ResidualVectorQuantizer, threshold: float) -> dict[str, list[float]]:
    """Per codebook: perplexity and dead-code count from the usage counted since the last re-seeding (the count is
    None while too few codes were counted to judge; see `VectorQuantizer.dead_codes`)."""
    perplexity, dead = [], []
    for vq in quantizer.quantizers:
        perplexity.append(round(ResidualVectorQuantizer.perplexity(vq.usage), 2))
        codes = vq.dead_codes(threshold)
        dead.append(None if codes is None else len(codes))
    return {"perplexity": perplexity, "dead_codes": dead}


class HealthMonitor:
    """Turns evaluation records into alarms. `check` returns human-readable alarm lines (empty when healthy)."""

    def __init__(self, cfg: TrainConfig, codebook_size: int):
        self.cfg = cfg
        self.codebook_size = codebook_size
        self.snr_history: list[float] = []

    def check(self, record: dict) -> list[str]:
        alarms = []
        full = n_q_values(record, "rms_ratio")[-1]
        rms = record[at_n_q("rms_ratio", full)]
        if not self.cfg.alarm_rms_low <= rms <= self.cfg.alarm_rms_high:
            alarms.append(
                f"output/input RMS ratio {rms:.2f} is outside [{self.cfg.alarm_rms_low}, {self.cfg.alarm_rms_high}]: "
                "amplitude collapse or blow-up (check the mel filterbank and loss weights)"
            )
        value = record[at_n_q("snr", full)]
        self.snr_history.append(value)
        k = self.cfg.alarm_snr_falls
        recent = self.snr_history[-(k + 1):]
        if len(recent) == k + 1 and all(b < a for a, b in zip(recent, recent[1:])):
            alarms.append(f"SNR fell at {k} evaluations in a row: {' → '.join(f'{v:.1f}' for v in recent)} dB")
        sweep = record.get("level_sweep") or {}
        off = {level: r for level, r in sweep.items() if not self.cfg.alarm_level_low <= r <= self.cfg.alarm_level_high}
        if off:
            alarms.append("output level depends on input level: output/input " + ", ".join(
                f"{r:.2f} at {level} dBFS" for level, r in off.items()) +
                f" (outside [{self.cfg.alarm_level_low}, {self.cfg.alarm_level_high}])")
        for i, dead in enumerate(record.get("dead_codes", [])):
            if dead is not None and dead > self.cfg.alarm_dead_fraction * self.codebook_size:
                alarms.append(f"codebook {i}: {dead}/{self.codebook_size} codes dead")
        bad = [k for k, v in record.items() if isinstance(v, float) and not math.isfinite(v)]
        if bad:
            alarms.append(f"non-finite validation metrics: {', '.join(bad)}")
        return alarms
