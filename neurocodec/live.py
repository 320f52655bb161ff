"""Live coding: audio in, audio out within about half a second (`encode --live`, `decode --live`, and the same
from Python: `LoadedModel.stream_encoder(live=True)`).

The file path waits for context: compute windows of 10 s, and a level envelope whose points look about 2 s ahead.
The live path waits only for what the format itself needs. A file's level points sit every `spacing` frames (0.2
s) and the decoder restores the audio between two points from both of them, so the audio of segment k can leave
the decoder only once the chunk after it (which carries point k + 1) has arrived; chunks are one segment long
here, so the chain's delay is about two segments (0.4 s) plus the encoder's look-ahead and the compute time.

- The level envelope is causal (`LevelCoder.causal_point`): point k + 1 comes from segment k, what has arrived
  of segment k + 1 and the segments before, so segment k is normalised as soon as it and the encoder's
  look-ahead are in. The decoder restores the points exactly as any file's.
- The closed loop (`level.LevelLoop`) decodes the codes as they are made (the cheaper `level_net`, with the live
  decoder's look-ahead) and corrects each point by the level error measured over the 0.6 s before it (the file
  path measures on both sides): feedback one segment late, which keeps the output's level within a few tenths
  of a dB of the input's where the file path's loop is exact (measured: docs/history.md).
- The encoder computes one segment at a time from its full left context and `lookahead` frames to its right
  (fewer than the `encoder_context` the file path gives it), normalised provisionally with the last point's gain
  (those samples are only context; they are normalised again, exactly, as part of the next segment).
- The decoder (`stream.StreamDecoder` with `live_window`) computes a segment once the next chunk is there, with
  its full left context and one chunk (`spacing` frames) of right context.

Audio `[C, n]` float32; codes `[C, n_q, k]`; channels are batch items of the mono model.
"""

from __future__ import annotations

import numpy as np

from .audio import Resampler
from .codes import CodeBlock
from .level import CONTEXT_POINTS, LevelCoder, LevelLoop, gain
from .windows import Net, WindowedDecoder

LOOKAHEAD_FRAMES = 6  # the encoder's right context when live (80 ms at 75 Hz; the file path gives it 24)


class LiveEncoder:
    """Push audio blocks `[C, n]` at `sample_rate`; receive a `CodeBlock` per completed segment (its `spacing`
    frames and the level point at its start), `flush()` at the end. A segment leaves once `lookahead` frames after
    it have arrived. Memory: the encoder's context and a segment, whatever the stream's length."""

    def __init__(self, net: Net, sample_rate: int, channels: int, n_q: int | None = None,
                 level: LevelCoder | None = None, lookahead: int = LOOKAHEAD_FRAMES, loop: bool = True):
        self.net, self.channels = net, channels
        self.n_q = n_q = n_q or net.n_q
        net.check_n_q(n_q)
        self.level = level or LevelCoder.for_model(net.sample_rate, net.hop_length)
        self.resampler = Resampler(sample_rate, net.sample_rate, channels)
        self.hop = net.hop_length
        self.size = self.level.spacing_samples  # samples per segment at the model's rate
        self.lookahead = max(0, min(lookahead, net.encoder_lookahead))  # a causal encoder needs none
        self.left_samples = net.encoder_context * self.hop
        self.raw = np.zeros((channels, 0), np.float32)  # model-rate audio from segment `self.segment` on
        self.left = np.zeros((channels, 0), np.float32)  # normalised audio before it (the encoder's left context)
        self.levels = np.zeros((channels, 0), np.float32)  # recent segments' levels
        self.point: np.ndarray | None = None  # point `self.segment` (None before the first segment)
        self.segment = 0
        self.flushed = False
        spacing = self.level.spacing_frames
        self.loop = LevelLoop(self.level, channels, ahead=0) if loop else None
        self.loop_decoder = WindowedDecoder(net.level_net(), spacing, lookahead=spacing) if loop else None

    def warm(self) -> None:
        """Run the networks once on silence, so that the first segment does not wait for them to start (a runtime
        builds its sessions on first use)."""
        frames = self.level.spacing_frames
        codes = self.net.encode_frames(np.zeros((self.channels, frames * self.hop), np.float32), self.n_q, 0)
        if self.loop is not None:
            self.net.level_net().decode_latent(self.net.latent(codes), 0)

    def push(self, block: np.ndarray) -> list[CodeBlock]:
        """audio `[C, n]` at the stream's rate → the code blocks of the segments that became final."""
        if self.flushed:
            raise ValueError("push after flush: start a new stream")
        self.raw = np.concatenate([self.raw, self.resampler(np.asarray(block, np.float32))], axis=-1)
        return self._step(final=False)

    def flush(self) -> list[CodeBlock]:
        """The end of the stream: the remaining segments (the last frame zero-padded, as the file path does)."""
        if self.flushed:
            return []
        self.flushed = True
        tail = self.resampler(np.zeros((self.channels, 0), np.float32), last=True)
        self.raw = np.concatenate([self.raw, tail], axis=-1)
        return self._step(final=True)

    def _step(self, final: bool) -> list[CodeBlock]:
        out = []
        ahead = max(1, self.lookahead * self.hop)  # at least a sample beyond: the segment is not the last
        while self.raw.shape[-1] >= (1 if final else self.size + ahead):
            out.append(self._segment(final))
        return out

    def _segment(self, final: bool) -> CodeBlock:
        seg = self.raw[:, : self.size]
        last = final and self.raw.shape[-1] <= self.size
        self.levels = np.concatenate([self.levels, self.level.segment_levels(seg)], axis=-1)
        self.levels = self.levels[:, -(CONTEXT_POINTS + 1):]
        context = self.raw[:, self.size: self.size + self.lookahead * self.hop]
        ahead = self.level.segment_levels(context)[:, 0] if context.shape[-1] else None
        following = self.level.causal_point(self.levels, ahead)  # point k + 1
        point = following if self.point is None else self.point  # point 0 is point 1: nothing comes before it
        x = seg * gain(self.level.gains_db(point[:, None], seg.shape[-1], None if last else following))
        context = context * gain(self.level.target_db - self.level.point_db(following))[:, None]
        frames = -(-seg.shape[-1] // self.hop)
        window = np.concatenate([self.left, x, context], axis=-1)
        window = np.pad(window, ((0, 0), (0, (-window.shape[-1]) % self.hop)))
        left = self.left.shape[-1] // self.hop
        first = self.segment * self.level.spacing_frames
        codes = self.net.encode_frames(window, self.n_q, first - left)[..., left: left + frames]
        self.left = np.concatenate([self.left, x], axis=-1)[:, -self.left_samples:] if not last else self.left
        self.raw = self.raw[:, seg.shape[-1]:]
        self.point, self.segment = following, self.segment + 1
        points = point[:, None]
        if self.loop is not None:
            decoded = self.loop_decoder.push(codes)
            if last:
                decoded = np.concatenate([decoded, self.loop_decoder.flush()], axis=-1)
            points = self.loop.push(x, points, decoded, last=last)
        return CodeBlock(codes, points)


def live_window(spacing_frames: int) -> tuple[int, int]:
    """The live decoder's (window frames, right context frames): a segment at a time, once the next has come."""
    return spacing_frames, spacing_frames


def warm_decoder(net: Net, channels: int, frames: int) -> None:
    """Run the decoder once on silence's codes (see `LiveEncoder.warm`)."""
    net.decode_latent(net.latent(np.zeros((channels, 1, frames), np.int64)), 0)
