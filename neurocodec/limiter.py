"""The decoder's last stage: a look-ahead peak limiter, so that no decoded sample reaches full scale.

A codec's output overshoots its input's peaks now and then (music peaking at 0.75 can come back above 1.0), and a
file's level envelope can ask for more gain than the audio can take; clipping either would be silent distortion.
Instead the gain is lowered smoothly around each over, all channels together (the stereo image stays), and the
samples it touched are counted for the summary line.

The gain at sample n is the mean over `lookahead` samples of a running minimum (over `lookahead + hold` samples)
of the gain each sample needs (`ceiling / |x|`, at most 1), so it is never above what any sample needs, it moves
down over `lookahead` samples before an over, holds for `hold` after it and comes back up over `lookahead`. Where
no sample needs less than 1 the audio passes unchanged. NumPy only (no scipy: the light install stays small):
arrays are `[C, n]` float32 at the output rate.
"""

from __future__ import annotations

import numpy as np

CEILING = 10 ** (-0.1 / 20)  # -0.1 dBFS: below full scale in every PCM format, with room for dither and rounding
LOOKAHEAD_SECONDS = 0.005  # the gain ramps over 5 ms: no click
HOLD_SECONDS = 0.05  # and holds 50 ms after an over: no flutter on a sustained one


class Limiter:
    """Streaming: `push` blocks `[C, n]` in order, `last=True` with (or after) the final one. The output lags the
    input by `lookahead - 1` samples until the end; every sample comes out exactly once."""

    def __init__(self, sample_rate: int, channels: int, ceiling: float = CEILING):
        self.ceiling = ceiling
        self.lookahead = max(1, round(LOOKAHEAD_SECONDS * sample_rate))
        self.hold = round(HOLD_SECONDS * sample_rate)
        self.history = np.ones(self.lookahead - 1 + self.hold)  # needed gains just before `pending`
        self.pending = np.zeros((channels, 0), np.float32)
        self.touched = 0  # samples (per channel) whose gain was lowered

    def push(self, audio: np.ndarray, last: bool = False) -> np.ndarray:
        self.pending = np.concatenate([self.pending, np.asarray(audio, np.float32)], axis=-1)
        n = self.pending.shape[-1] if last else max(0, self.pending.shape[-1] - (self.lookahead - 1))
        if n == 0:
            return self.pending[:, :0]
        peak = np.abs(self.pending).max(axis=0) if self.pending.shape[0] else np.zeros(self.pending.shape[-1])
        need = np.minimum(1.0, self.ceiling / np.maximum(peak.astype(np.float64), 1e-30))
        tail = np.ones(self.lookahead - 1) if last else np.zeros(0)
        # needed[i] is the gain sample i - len(history) of `pending` needs (ones before the start, after the end).
        needed = np.concatenate([self.history, need, tail])
        out = self.pending[:, :n]
        if needed[: n + 2 * self.lookahead - 2 + self.hold].min() < 1.0:
            running = running_min(needed, self.hold + self.lookahead)
            sums = np.concatenate([[0.0], np.cumsum(running[: n + self.lookahead - 1])])
            gain = ((sums[self.lookahead:] - sums[:-self.lookahead]) / self.lookahead)[:n]
            gain[gain > 1.0 - 1e-9] = 1.0  # the running sums' rounding is not a lowered gain
            self.touched += int((gain < 1.0).sum())
            out = np.clip(out * gain.astype(np.float32), -self.ceiling, self.ceiling)
        self.history = needed[n: n + len(self.history)]
        self.pending = self.pending[:, n:]
        return out


def running_min(x: np.ndarray, width: int) -> np.ndarray:
    """`[len(x) - width + 1]`: the minimum of each `width` consecutive values of `x` (van Herk / Gil-Werman: a
    prefix and a suffix minimum within blocks of `width`, so linear time whatever the width)."""
    n = len(x)
    blocks = np.pad(x, (0, -n % width), constant_values=np.inf).reshape(-1, width)
    prefix = np.minimum.accumulate(blocks, axis=1).reshape(-1)
    suffix = np.minimum.accumulate(blocks[:, ::-1], axis=1)[:, ::-1].reshape(-1)
    return np.minimum(suffix[: n - width + 1], prefix[width - 1: n])
