"""Windowed inference with bounded memory and no seams.

Scheme: overlap with receptive-field context. A compute window that emits frames [f0, f1) is computed from the input
frames [f0 - C, f1 + C), where C is the encoder's (or decoder's) one-sided receptive field in frames, clipped to
the signal. Every output frame therefore sees exactly the input it would see in one pass, so windowed
output equals one-pass output up to float rounding (convolutions of different lengths may sum in a different
order). At the file ends both see the same zero padding. Memory is bounded by the window plus 2·C frames, whatever
the input length; the cost is 2·C/window extra compute (about 3% for the default window of 10 s). Live decoding
(`live.py`) gives a window less right context (`lookahead`) so that it need not wait for C frames: its output then
differs slightly from one pass near each window's end.

"Window" here is the unit of computation; it is unrelated to the `.ncd` container's chunks (the unit of damage
and seeking, `ncdfile.chunk_frames_for`).

Both classes are push/flush streams, so a file never has to be in memory at once. NumPy in and out: the network
behind them is a `Net` (`model.codec.TorchNet` or `onnxnet.OnnxNet`), whatever runs it.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

DEFAULT_WINDOW_FRAMES = 750  # 10 s at 75 Hz


class Net(Protocol):
    """A codec's networks as NumPy functions, at its `sample_rate`; `hop_length` samples per frame. Context: how
    many frames on either side can influence a frame of the encoder's (decoder's) output; `encoder_lookahead`: how
    many later frames can (0 for a causal encoder)."""

    sample_rate: int
    hop_length: int
    n_q: int
    encoder_context: int
    decoder_context: int
    encoder_lookahead: int

    def check_n_q(self, n_q: int) -> None: ...

    def encode_frames(self, audio: np.ndarray, n_q: int, first_frame: int) -> np.ndarray:
        """audio `[B, F * hop]` float32 → codes `[B, n_q, F]` int64; `first_frame`: index of frame 0 in the
        whole signal."""

    def latent(self, codes: np.ndarray) -> np.ndarray:
        """codes `[B, n_q, F]` (−1: codebook absent at that frame) → latent `[B, latent_dim, F]` float32."""

    def decode_latent(self, latent: np.ndarray, first_frame: int) -> np.ndarray:
        """latent `[B, latent_dim, F]` → audio `[B, F * hop]` float32."""

    def level_net(self) -> "Net":
        """The net the encoder's level loop decodes with (it measures only the level: may be cheaper)."""


class _FrameStream:
    """The shared schedule: frames [f0, f1) are computed from buffered input frames [f0 - C, f1 + C).

    `self.buffer` holds input from frame `self.buffer_frame` on, `unit` elements per frame along its last axis
    (hop_length samples for the encoder, one latent frame for the decoder). Subclasses say what one window
    computes (`_run`) and what an empty result looks like (`_empty`).
    """

    def __init__(self, net: Net, context: int, window_frames: int, unit: int, lookahead: int | None = None):
        self.net = net
        self.hop = net.hop_length
        self.context = context
        self.right = context if lookahead is None else max(0, min(context, lookahead))  # right context used
        self.window = max(1, window_frames)
        self.unit = unit
        self.buffer: np.ndarray | None = None
        self.buffer_frame = 0
        self.next_frame = 0  # first frame not yet emitted

    @property
    def buffered_end(self) -> int:
        """One past the last whole frame in the buffer."""
        return self.buffer_frame + (0 if self.buffer is None else self.buffer.shape[-1] // self.unit)

    def _append(self, x: np.ndarray) -> None:
        self.buffer = x if self.buffer is None else np.concatenate([self.buffer, x], axis=-1)

    def _run(self, window: np.ndarray, first_frame: int, start: int, stop: int) -> np.ndarray:
        """Frames [start, stop) of `window`, whose frame 0 is frame `first_frame` of the whole signal."""
        raise NotImplementedError

    def _empty(self, batch: int) -> np.ndarray:
        raise NotImplementedError

    def _process(self, end_frame: int, final: bool) -> np.ndarray:
        out = []
        available = end_frame if final else self.buffered_end
        while self.next_frame < end_frame:
            f0 = self.next_frame
            f1 = min(f0 + self.window, end_frame)
            if not final and f1 - f0 < self.window:
                break  # wait for a whole window: small pieces would each pay 2·context frames of overhead
            right = min(f1 + self.right, available)
            if not final and right < f1 + self.right:
                break
            left = max(0, f0 - self.context)
            window = self.buffer[..., (left - self.buffer_frame) * self.unit: (right - self.buffer_frame) * self.unit]
            out.append(self._run(window, left, f0 - left, f1 - left))
            self.next_frame = f1
            # Keep only what later windows still need as left context.
            drop = max(0, (self.next_frame - self.context) - self.buffer_frame)
            if drop:
                self.buffer = self.buffer[..., drop * self.unit:]
                self.buffer_frame += drop
        if not out:
            return self._empty(0 if self.buffer is None else self.buffer.shape[0])
        return np.concatenate(out, axis=-1)


class WindowedEncoder(_FrameStream):
    """Push audio `[B, n]` at the model's sample rate; receive codes `[B, n_q, k]` as frames complete."""

    def __init__(self, net: Net, n_q: int, window_frames: int = DEFAULT_WINDOW_FRAMES):
        net.check_n_q(n_q)
        super().__init__(net, net.encoder_context, window_frames, unit=net.hop_length)
        self.n_q = n_q
        self.samples_in = 0

    def _run(self, window: np.ndarray, first_frame: int, start: int, stop: int) -> np.ndarray:
        return self.net.encode_frames(window, self.n_q, first_frame)[..., start:stop]

    def _empty(self, batch: int) -> np.ndarray:
        return np.zeros((batch, self.n_q, 0), np.int64)

    def push(self, audio: np.ndarray) -> np.ndarray:
        """audio `[B, n]` → the codes `[B, n_q, k]` that became final (k may be 0)."""
        audio = np.asarray(audio, np.float32)
        self.samples_in += audio.shape[-1]
        self._append(audio)
        return self._process(self.buffered_end - self.context, final=False)

    def flush(self) -> np.ndarray:
        """Zero-pad the tail to a whole frame (as the one-pass model does) and emit the remaining codes."""
        if self.buffer is None:
            return self._empty(0)
        total = -(-self.samples_in // self.hop)
        need = (total - self.buffer_frame) * self.hop - self.buffer.shape[-1]
        if need > 0:
            self.buffer = np.pad(self.buffer, ((0, 0), (0, need)))
        return self._process(total, final=True)


class WindowedDecoder(_FrameStream):
    """Push codes `[B, n_q, k]` (n_q may change between pushes); receive audio `[B, k' * hop]` as it completes."""

    def __init__(self, net: Net, window_frames: int = DEFAULT_WINDOW_FRAMES, lookahead: int | None = None):
        super().__init__(net, net.decoder_context, window_frames, unit=1, lookahead=lookahead)

    def _run(self, window: np.ndarray, first_frame: int, start: int, stop: int) -> np.ndarray:
        return self.net.decode_latent(window, first_frame)[:, start * self.hop: stop * self.hop]

    def _empty(self, batch: int) -> np.ndarray:
        return np.zeros((batch, 0), np.float32)

    def push(self, codes: np.ndarray) -> np.ndarray:
        """codes `[B, n_q, k]` → audio `[B, n]` that became final (n may be 0)."""
        # Codes → latent is per frame (no context), so pushes with different n_q join seamlessly here.
        self._append(self.net.latent(np.asarray(codes, np.int64)))
        return self._process(self.buffered_end - self.right, final=False)

    def flush(self) -> np.ndarray:
        """Emit everything still buffered."""
        if self.buffer is None:
            return self._empty(0)
        return self._process(self.buffered_end, final=True)
