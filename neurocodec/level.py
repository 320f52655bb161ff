"""Level as side information: the encoder measures a smooth level envelope, normalises the audio by it before the
model, and the `.ncd` file carries the envelope so that the decoder restores the level exactly.

The model then only ever sees audio near one level (`target_db`), the level it is trained at, and the output
level does not depend on the input level (a model left to itself compresses dynamics: loud in, soft out).

The envelope is a point every `spacing_frames` codec frames (0.2 s), quantised in `step_db` (0.5 dB) steps. Between
points the gain is interpolated linearly in dB, sample by sample, so it never steps. A point is the level of
the two segments that touch it (the louder one, and a segment's peak less `HEADROOM_DB` if that is higher), so
an onset is never amplified into clipping: the gain is already down when it arrives. Two floors keep pauses
and background noise from being pulled up to speech level: an absolute one (`floor_db`; quieter passages are
raised by at most `target_db - floor_db`) and a relative one (a point stays within `RANGE_DB` of the loudest
point within `CONTEXT_POINTS` of it, so a pause between words or phrases keeps its depth).

The encoder's analysis, and its closed loop (`LevelLoop`: it decodes its own codes and corrects the points so
that the decoded level is the input's), are free to change (not part of the format); what the decoder does with
the points (`LevelCoder.gains_db`, `restore`) is, and its parameters travel in the `.ncd` header (the mapping
is `identity.py`'s: this room knows nothing of the format).

NumPy throughout (no torch: the light runtime encodes and decodes with it; the trainer computes the gain here and
applies it on its device). Audio is `[..., T]` float32 at the model's sample rate; points are `[..., K]` int64
indices, `K = ceil(T / spacing_samples)`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .limits import LEVEL_FLOOR_DB as FLOOR_DB, LEVEL_POINTS as LEVELS, LEVEL_STEP_DB as STEP_DB
from .limits import LEVEL_TARGET_DB as TARGET_DB, level_spacing_frames

HEADROOM_DB = 20.0  # a point is at least a touching segment's peak less this: peaks reach at most target + 20 dB
RANGE_DB = 20.0  # a point stays within this of the loudest point within CONTEXT_POINTS of it
CONTEXT_POINTS = 8  # ±1.6 s
MAX_CORRECTION_DB = 12.0  # the closed loop (LevelLoop) moves a point by at most this
LOOP_POINTS = 3  # … measuring over ±3 points (±0.6 s)
GATE_DB = 30.0  # … and only where the normalised input is within this of the target


def gain(db: np.ndarray) -> np.ndarray:
    """dB → linear amplitude factor, float32."""
    return np.power(np.float32(10.0), np.asarray(db, np.float32) / np.float32(20))


@dataclass(frozen=True)
class LevelCoder:
    """The decoder's half of the level side information (what the file must say) and the encoder's analysis."""

    hop_length: int  # samples per frame at the model's rate
    spacing_frames: int  # frames between envelope points
    target_db: float = TARGET_DB
    floor_db: float = FLOOR_DB
    step_db: float = STEP_DB
    levels: int = LEVELS

    @classmethod
    def for_model(cls, sample_rate: int, hop_length: int) -> "LevelCoder":
        return cls(hop_length, level_spacing_frames(sample_rate, hop_length))

    @property
    def spacing_samples(self) -> int:
        return self.spacing_frames * self.hop_length

    def points(self, frames: int) -> int:
        """Envelope points that `frames` frames carry (one at every multiple of `spacing_frames`)."""
        return -(-frames // self.spacing_frames)

    # ------------------------------------------------------------------------------------------------ the format

    def point_db(self, points: np.ndarray) -> np.ndarray:
        """Integer points → level in dBFS (float32)."""
        return np.float32(self.floor_db) + np.asarray(points).astype(np.float32) * np.float32(self.step_db)

    def gains_db(self, points: np.ndarray, samples: int, next_point: np.ndarray | None = None) -> np.ndarray:
        """points `[..., K]` → the encoder's gain in dB `[..., samples]` (samples ≤ K · spacing_samples): at point
        k's sample (k · spacing_samples) it is `target_db - level(k)`, linear in between; after the last point it
        holds, unless `next_point` `[...]` (the point after these, if known) continues the line."""
        level = self.point_db(points)
        after = level[..., -1:] if next_point is None else self.point_db(next_point)[..., None]
        following = np.concatenate([level[..., 1:], after], axis=-1)
        frac = np.arange(self.spacing_samples, dtype=np.float32) / np.float32(self.spacing_samples)
        curve = level[..., :, None] + (following - level)[..., :, None] * frac  # [..., K, spacing]
        return np.float32(self.target_db) - curve.reshape(curve.shape[:-2] + (-1,))[..., :samples]

    def restore(self, audio: np.ndarray, points: np.ndarray, next_point: np.ndarray | None = None
                ) -> np.ndarray:
        """Decoder: model output `[..., T]` (T ≤ K · spacing_samples) → audio at the input's level."""
        return audio * gain(-self.gains_db(points, audio.shape[-1], next_point))

    # ---------------------------------------------------------------------------------------------- the analysis

    def segment_levels(self, audio: np.ndarray) -> np.ndarray:
        """audio `[..., T]` → each segment's level in dB `[..., ceil(T / spacing_samples)]`: its RMS, or its peak
        less `HEADROOM_DB` if higher (a short loud click in a quiet segment must not be amplified into clipping).
        A last, partial segment is measured over the samples it has."""
        n = audio.shape[-1]
        size = self.spacing_samples
        k = -(-n // size)
        audio = np.asarray(audio, dtype=np.float32)
        pad = [(0, 0)] * (audio.ndim - 1) + [(0, k * size - n)]
        padded = np.pad(audio, pad).reshape(audio.shape[:-1] + (k, size))
        count = np.full((k,), float(size), dtype=np.float32)
        count[-1] = n - (k - 1) * size
        rms_db = 10 * np.log10(np.square(padded).sum(-1, dtype=np.float32) / count + np.float32(1e-12))
        peak_db = 20 * np.log10(np.abs(padded).max(-1) + np.float32(1e-12))
        return np.maximum(rms_db, peak_db - np.float32(HEADROOM_DB))

    def points_from_levels(self, seg: np.ndarray) -> np.ndarray:
        """segment levels `[..., K]` → integer points `[..., K]` (long). Point k covers segments k-1 and k."""
        before = np.concatenate([np.full_like(seg[..., :1], -math.inf), seg[..., :-1]], axis=-1)
        touch = np.maximum(before, seg)
        pad = [(0, 0)] * (touch.ndim - 1) + [(CONTEXT_POINTS, CONTEXT_POINTS)]
        padded = np.pad(touch, pad, constant_values=-math.inf)
        loudest = np.lib.stride_tricks.sliding_window_view(padded, 2 * CONTEXT_POINTS + 1, axis=-1).max(-1)
        return self._point(np.maximum(touch, loudest - np.float32(RANGE_DB)))

    def _point(self, level: np.ndarray) -> np.ndarray:
        """Levels in dB → integer points (long): above the floor, in `step_db` steps, within the range."""
        steps = np.round((np.maximum(level, np.float32(self.floor_db)) - np.float32(self.floor_db))
                         / np.float32(self.step_db))
        return np.clip(steps, 0, self.levels - 1).astype(np.int64)

    def causal_point(self, levels: np.ndarray, ahead: np.ndarray | None = None) -> np.ndarray:
        """Live encoding (`live.py`): the segment levels `[..., j]` up to segment k → point k + 1 `[...]`, from the
        past: segment k's level, or `ahead`'s (`[...]`, the level of what has arrived of segment k + 1) if
        higher, within `RANGE_DB` of the loudest of the last `CONTEXT_POINTS + 1` segments, above the floor. The
        gain across segment k then moves from segment k - 1's level to segment k's, as the decoder restores it;
        a file's points are read alike whichever rule made them."""
        recent = levels[..., -(CONTEXT_POINTS + 1):]
        touch = recent[..., -1] if ahead is None else np.maximum(recent[..., -1], ahead)
        return self._point(np.maximum(touch, recent.max(-1) - np.float32(RANGE_DB)))

    def analyse(self, audio: np.ndarray) -> np.ndarray:
        """audio `[..., T]` → points `[..., ceil(T / spacing_samples)]`."""
        return self.points_from_levels(self.segment_levels(audio))

    def normalize(self, audio: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Encoder and trainer: audio `[..., T]` → (audio near `target_db`, points). `restore` undoes it."""
        if audio.shape[-1] == 0:
            return audio, np.zeros(audio.shape[:-1] + (0,), dtype=np.int64)
        points = self.analyse(audio)
        return audio * gain(self.gains_db(points, audio.shape[-1])), points


class LevelNormalizer:
    """The encoder's analysis as a stream: push model-rate audio `[C, n]`, get back normalised audio and the
    points that cover it, exactly what `LevelCoder.normalize` gives for the whole signal.

    A point is final once the segments `CONTEXT_POINTS + 1` beyond it are measured; audio of segment k leaves
    once point k + 1 is final. The latency (and the audio held) is about 2 s, whatever the input's length."""

    def __init__(self, coder: LevelCoder, channels: int):
        self.coder = coder
        self.pending = np.zeros((channels, 0), np.float32)  # audio not yet measured as a whole segment
        self.held = np.zeros((channels, 0), np.float32)  # measured, not yet emitted (from segment `self.emitted`)
        self.levels = np.zeros((channels, 0), np.float32)  # the recent segments' levels (those points still depend on)
        self.first_level = 0  # segment number of self.levels[:, 0]
        self.emitted = 0  # segments emitted (and points returned)

    def _points(self, first: int, end: int) -> np.ndarray:
        """Points [first, end) from the levels kept (from segment first - CONTEXT_POINTS - 2, or the start)."""
        lo = max(0, first - CONTEXT_POINTS - 2)
        window = self.levels[:, lo - self.first_level:]
        return self.coder.points_from_levels(window)[:, first - lo: end - lo]

    def push(self, audio: np.ndarray, last: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """audio `[C, n]` → (normalised audio `[C, m]`, its new points `[C, j]`); `last` flushes everything."""
        size = self.coder.spacing_samples
        self.pending = np.concatenate([self.pending, np.asarray(audio, np.float32)], axis=-1)
        whole = self.pending.shape[-1] // size * size
        if last:
            whole = self.pending.shape[-1]
        if whole:
            part, self.pending = self.pending[:, :whole], self.pending[:, whole:]
            self.levels = np.concatenate([self.levels, self.coder.segment_levels(part)], axis=-1)
            self.held = np.concatenate([self.held, part], axis=-1)
        known = self.first_level + self.levels.shape[-1]
        # Point k is final once segment k + CONTEXT_POINTS is measured; segment k leaves once point k + 1 is.
        final = known if last else max(0, known - CONTEXT_POINTS)
        ready = known if last else max(0, final - 1)
        if ready <= self.emitted:
            return self.held[:, :0], np.zeros((self.held.shape[0], 0), np.int64)
        points = self._points(self.emitted, min(known, ready + 1))
        out_points = points[:, : ready - self.emitted]
        samples = self.held.shape[-1] if last else (ready - self.emitted) * size
        gains = self.coder.gains_db(out_points, samples, None if last else points[:, -1])
        out = self.held[:, :samples] * gain(gains)
        self.held = self.held[:, samples:]
        self.emitted = ready
        keep = max(0, self.emitted - CONTEXT_POINTS - 2)  # levels that later points can no longer need are dropped
        self.levels = self.levels[:, keep - self.first_level:]
        self.first_level = keep
        return out, out_points


class LevelLoop:
    """The encoder's closed loop: it decodes its own codes and corrects the points so that the output's level is
    the input's. Around each point, over ±`LOOP_POINTS` points (±0.6 s, triangle-weighted: slow enough not to
    wobble with the model's moment-to-moment error), the energy of the normalised input and of the model's output
    are compared, and the point moves by the difference in dB, rounded to the envelope's 0.5 dB steps (at most
    `MAX_CORRECTION_DB`, and only where the input is within `GATE_DB` of the target: the model's output of
    near-silence says nothing of its gain). This is analysis by synthesis for the gain: the decoder is unchanged,
    the file simply carries the level that restores the input's. `ahead`: points measured after each point
    (live encoding measures only before it, 0: `live.py`).

    Streams: push the normalised input `[C, n]`, its points `[C, j]` and the model's output `[C, m]` as they
    come (each in order, from the start); receive the corrected points that became final."""

    def __init__(self, coder: LevelCoder, channels: int, ahead: int = LOOP_POINTS):
        self.coder = coder
        self.x = np.zeros((channels, 0), np.float64)  # energies from sample `self.start` on
        self.y = np.zeros((channels, 0), np.float64)
        self.start = 0
        self.points = np.zeros((channels, 0), np.int64)  # normaliser's points from `self.done` on
        self.done = 0  # points corrected and returned
        self.reach = LOOP_POINTS * coder.spacing_samples
        self.ahead = ahead * coder.spacing_samples  # how far after a point it measures (live: one segment)
        offsets = np.arange(-self.reach, self.ahead, dtype=np.float64)
        # point k's weight at samples kS - reach … kS + ahead - 1: a triangle on either side
        self.hat = np.where(offsets < 0, 1 - np.abs(offsets) / self.reach, 1 - offsets / max(1, self.ahead))

    def push(self, x: np.ndarray, points: np.ndarray, y: np.ndarray, last: bool = False) -> np.ndarray:
        self.x = np.concatenate([self.x, np.square(np.asarray(x, np.float64))], axis=-1)
        self.y = np.concatenate([self.y, np.square(np.asarray(y, np.float64))], axis=-1)
        self.points = np.concatenate([self.points, np.asarray(points, np.int64)], axis=-1)
        size, reach = self.coder.spacing_samples, self.reach
        end = self.start + min(self.x.shape[-1], self.y.shape[-1])  # samples both streams cover
        out = []
        while self.points.shape[-1] > 0:
            k = self.done
            if not last and end < k * size + self.ahead:
                break
            lo, hi = max(0, k * size - reach), k * size + self.ahead
            xs = self.x[:, lo - self.start: hi - self.start]
            ys = self.y[:, lo - self.start: hi - self.start]
            n = min(xs.shape[-1], ys.shape[-1])
            w = self.hat[lo - (k * size - reach): lo - (k * size - reach) + n]
            ex, ey = (xs[:, :n] * w).sum(-1), (ys[:, :n] * w).sum(-1)
            live = (ex / max(w.sum(), 1e-9) > 10 ** ((self.coder.target_db - GATE_DB) / 10)) & (ey > 0)
            error = np.where(live, 10 * np.log10(np.maximum(ex, 1e-30) / np.maximum(ey, 1e-30)), 0.0)
            steps = np.round(np.clip(error, -MAX_CORRECTION_DB, MAX_CORRECTION_DB) / self.coder.step_db)
            out.append(np.clip(self.points[:, 0] + steps.astype(np.int64), 0, self.coder.levels - 1))
            self.points = self.points[:, 1:]
            self.done += 1
            drop = self.done * size - reach - self.start  # the next point needs samples from (k + 1) S - reach on
            if drop > 0:
                self.x, self.y, self.start = self.x[:, drop:], self.y[:, drop:], self.start + drop
        if not out:
            return self.points[:, :0]
        return np.stack(out, axis=-1)


class LevelRestorer:
    """The decoder's half as a stream: model-rate audio `[C, n]` and points at known frames in, audio at the
    original level out. Audio after the last point received waits for the next point (or `flush`, which holds
    the last level)."""

    def __init__(self, coder: LevelCoder, channels: int):
        self.coder = coder
        self.channels = channels
        self.audio = np.zeros((channels, 0), np.float32)
        self.start = 0  # sample position of self.audio[0], counted from the stream's start
        self.points = np.zeros((channels, 0), np.int64)  # points from the one at or before `start`
        self.first_point = 0  # index of self.points[:, 0]

    def add_points(self, points: np.ndarray) -> None:
        """The next points in order, `[C, j]` (points k, k+1, …; the first one the stream sees is point 0)."""
        self.points = np.concatenate([self.points, np.asarray(points, np.int64)], axis=-1)

    def push(self, audio: np.ndarray, last: bool = False) -> np.ndarray:
        size = self.coder.spacing_samples
        self.audio = np.concatenate([self.audio, np.asarray(audio, np.float32)], axis=-1)
        if self.points.shape[-1] == 0:
            if last:  # no level side information arrived for this audio: it is silence of a lost region
                out, self.audio = self.audio, self.audio[:, :0]
                return out
            return self.audio[:, :0]
        end_point = self.first_point + self.points.shape[-1]  # points known: [first_point, end_point)
        # Samples whose gain is known: up to the last known point's sample, or all when flushing.
        limit = self.start + self.audio.shape[-1] if last else min(self.start + self.audio.shape[-1],
                                                                   (end_point - 1) * size)
        n = max(0, limit - self.start)
        if n == 0:
            return self.audio[:, :0]
        offset = self.start - self.first_point * size  # where self.audio starts within self.points' span
        need = -(-(offset + n) // size)
        span = self.points[:, :need]
        if span.shape[-1] < need:  # flushing past the last point: hold it
            span = np.concatenate([span, np.repeat(span[:, -1:], need - span.shape[-1], axis=-1)], axis=-1)
        nxt = self.points[:, need] if need < self.points.shape[-1] else None
        gains = self.coder.gains_db(span, offset + n, nxt)[:, offset:]
        out = self.audio[:, :n] * gain(-gains)
        self.audio = self.audio[:, n:]
        self.start += n
        drop = min(self.start // size - self.first_point, self.points.shape[-1] - 1)
        if drop > 0:
            self.points = self.points[:, drop:]
            self.first_point += drop
        return out
