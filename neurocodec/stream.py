"""Audio at any sample rate and channel count ↔ codes, as streams.

Channels are coded independently (each is one batch item of the mono model). Input is resampled with soxr to the
model's rate on the way in; decoding resamples back and restores the original length and channel count. The model
runs in compute windows of `window_frames` frames (`windows.py`, through a `windows.Net`: torch or ONNX Runtime) over at most `CHANNELS_PER_PASS` channels at
a time, and silence (lost frames, padding) comes out in blocks of at most `SILENCE_BLOCK` samples, so memory depends
neither on the input's length nor on its channel count.
"""

from __future__ import annotations

import math
from typing import Callable, Iterable, Iterator, NamedTuple

import numpy as np

from .audio import Resampler
from .codes import CodeBlock
from .level import LevelCoder, LevelLoop, LevelNormalizer, LevelRestorer
from .limiter import Limiter
from .windows import DEFAULT_WINDOW_FRAMES, Net, WindowedDecoder, WindowedEncoder


CHANNELS_PER_PASS = 4
SILENCE_BLOCK = 1 << 16  # samples per channel
MAX_BLOCK_ELEMENTS = 1 << 21  # samples (all channels) in one block through the resampler, counted at its output
WINDOW_ELEMENTS = DEFAULT_WINDOW_FRAMES * 4  # channel-frames the model computes per window: many channels, a
MIN_WINDOW_FRAMES = 96  # shorter window (never below 3 times the default decoder's context of 32 frames)


def window_for(channels: int, window_frames: int = DEFAULT_WINDOW_FRAMES) -> int:
    """The compute window for `channels`: the default up to 4 channels, then shorter, so that model-rate blocks
    stay near `WINDOW_ELEMENTS` channel-frames whatever the channel count."""
    return max(min(window_frames, MIN_WINDOW_FRAMES), min(window_frames, WINDOW_ELEMENTS // max(1, channels)))


def _pieces(block: np.ndarray, ratio: float) -> Iterator[np.ndarray]:
    """`block` `[C, n]` cut along time so that each piece, resampled by `ratio`, holds ≤ MAX_BLOCK_ELEMENTS."""
    step = max(1, int(MAX_BLOCK_ELEMENTS / (block.shape[0] * max(1.0, ratio))))
    for start in range(0, block.shape[-1], step):
        yield block[:, start:start + step]


class _ByChannels:
    """One windowed stream per group of `CHANNELS_PER_PASS` channels (batch items). Every group follows the same
    schedule, so their outputs join along the channel axis."""

    def __init__(self, make, channels: int):
        self.channels = channels
        self.groups = [(slice(i, i + CHANNELS_PER_PASS), make()) for i in range(0, channels, CHANNELS_PER_PASS)]

    def push(self, x: np.ndarray) -> np.ndarray:
        return np.concatenate([stream.push(x[part]) for part, stream in self.groups], axis=0)

    def flush(self) -> np.ndarray:
        out = np.concatenate([stream.flush() for _, stream in self.groups], axis=0)
        # A stream that was never pushed to does not know its batch: its empty output gets the channel axis here.
        return out if out.shape[0] == self.channels else np.zeros((self.channels,) + out.shape[1:], out.dtype)


def _silence(channels: int, samples: int) -> Iterator[np.ndarray]:
    """`samples` zeros per channel, in blocks of at most `SILENCE_BLOCK` samples and `MAX_BLOCK_ELEMENTS` in all."""
    step = max(1, min(SILENCE_BLOCK, MAX_BLOCK_ELEMENTS // channels))
    for start in range(0, samples, step):
        yield np.zeros((channels, min(step, samples - start)), np.float32)


class EncodedAudio(NamedTuple):
    codes: np.ndarray  # [C, n_q, T_frames] int64
    sample_rate: int  # of the original audio
    length: int  # original length in samples per channel
    points: np.ndarray | None = None  # [C, ceil(T_frames / spacing_frames)] level envelope (None: not normalised)
    level: LevelCoder | None = None


Stage = Callable[[np.ndarray, int], np.ndarray]  # (codes [C, n_q, k], index of their first frame) → codes to keep


class StreamEncoder:
    """Push audio blocks `[C, n]` at `sample_rate`; receive code blocks as they complete; `flush()` at the end.
    Any block sizes give the same codes and points (the compute windows carry their own context).

    With `level`, the audio is normalised by its level envelope before the model, and the envelope's points come
    with the codes (in order, from the stream's start, a little behind them). With `loop` too, the encoder decodes
    its own codes and corrects the points so that the decoded level is the input's (`LevelLoop`): about twice the
    work, the model's own level error gone. `stage`: what becomes of the encoder's codes before they come out (e.g.
    variable rate marks the codebooks a frame does not keep with -1); the loop decodes what it returns, as the
    reader will. Analysis by synthesis (`search.Search`) comes as a net that searches (`model.codec.TorchNet`).
    Memory: a compute window and the level envelope's look-ahead (about 2 s), whatever the stream's length."""

    def __init__(self, net: Net, sample_rate: int, channels: int, n_q: int | None = None,
                 window_frames: int = DEFAULT_WINDOW_FRAMES, level: LevelCoder | None = None, loop: bool = True,
                 stage: Stage | None = None):
        self.channels, self.stage = channels, stage
        self.resampler = Resampler(sample_rate, net.sample_rate, channels)
        window = window_for(channels, window_frames)
        self.n_q = n_q = n_q or net.n_q
        self.stream = _ByChannels(lambda: WindowedEncoder(net, n_q, window), channels)
        self.normalizer = LevelNormalizer(level, channels) if level is not None else None
        self.closed = LevelLoop(level, channels) if level is not None and loop else None
        loop_net = net.level_net() if self.closed else None
        self.decoder = _ByChannels(lambda: WindowedDecoder(loop_net, window), channels) if self.closed else None
        self.coded = 0  # frames the encoder has produced
        self.flushed = False

    def push(self, block: np.ndarray) -> list[CodeBlock]:
        """audio `[C, n]` float32 at the stream's rate → the code blocks that became final (often none)."""
        if self.flushed:
            raise ValueError("push after flush: start a new stream")
        return self._step(self.resampler(np.asarray(block, np.float32)), done=False)

    def flush(self) -> list[CodeBlock]:
        """The end of the stream: the remaining code blocks (the last frame zero-padded, as one pass does)."""
        if self.flushed:
            return []
        self.flushed = True
        tail = self._step(self.resampler(np.zeros((self.channels, 0), np.float32), last=True), done=False)
        return tail + self._step(np.zeros((self.channels, 0), np.float32), done=True)

    def _step(self, x: np.ndarray, done: bool) -> list[CodeBlock]:
        points = None
        if self.normalizer is not None:
            x, points = self.normalizer.push(x, last=done)
        codes = self.stream.push(x) if x.shape[-1] else np.zeros((self.channels, self.n_q, 0), np.int64)
        if done:
            codes = np.concatenate([codes, self.stream.flush()], axis=-1)
        if self.stage is not None and codes.shape[-1]:
            codes = self.stage(codes, self.coded)
        if self.closed is not None:
            out = self.decoder.push(codes) if codes.shape[-1] else np.zeros((self.channels, 0), np.float32)
            if done:
                out = np.concatenate([out, self.decoder.flush()], axis=-1)
            points = self.closed.push(x, points, out, last=done)
        self.coded += codes.shape[-1]
        if codes.shape[-1] or (points is not None and points.shape[-1]):
            return [CodeBlock(codes, points)]
        return []


def stream_encode(net: Net, blocks: Iterable[np.ndarray], sample_rate: int, channels: int, n_q: int | None = None,
                  window_frames: int = DEFAULT_WINDOW_FRAMES, level: LevelCoder | None = None, loop: bool = True,
                  stage: Stage | None = None) -> Iterator[CodeBlock]:
    """Blocks `[C, n]` at `sample_rate` → code blocks, in order (a `StreamEncoder` fed from an iterable)."""
    encoder = StreamEncoder(net, sample_rate, channels, n_q, window_frames, level, loop, stage)
    for block in blocks:
        yield from encoder.push(block)
    yield from encoder.flush()


class StreamDecoder:
    """Push code blocks `[C, n_q, k]` (n_q may vary per block; `CodeBlock`s with the level envelope's points
    when `level`); receive audio `[C, n]` at `sample_rate` as it completes; `flush()` at the end. The output
    goes through `limiter` (a fresh `Limiter` if None; its `touched` counts the samples it lowered): no sample
    reaches full scale.

    The points (frames 0, spacing, 2·spacing, … of the stream, in order, ahead of or a little behind the codes)
    restore the level the encoder normalised away. An `int` in place of a block is a gap of that many frames (codes
    lost to damage): it becomes silence of the right length, and decoding restarts after it as at the start of a
    file. With `length` given, that many samples per channel come out (trimmed, or zero-padded if the resampler's
    rounding leaves the codes a sample short), but never more than the frames received describe: a length is a
    promise the codes must back. `lookahead`: right context in frames (None: the decoder's whole context; live
    decoding gives it a chunk, `live.py`). Memory: a compute window, whatever the stream's length."""

    def __init__(self, net: Net, sample_rate: int, length: int | None, channels: int,
                 window_frames: int = DEFAULT_WINDOW_FRAMES, level: LevelCoder | None = None,
                 limiter: Limiter | None = None, lookahead: int | None = None):
        self.net, self.channels, self.length, self.level = net, channels, length, level
        self.lookahead = lookahead
        self.resampler = Resampler(net.sample_rate, sample_rate, channels)
        self.ratio = sample_rate / net.sample_rate
        self.window = window_for(channels, window_frames)
        self.limiter = limiter if limiter is not None else Limiter(sample_rate, channels)
        self.emitted = 0  # samples per channel out
        self.model_samples = 0  # samples per channel the model produced
        self.finished = False  # `length` samples are out: the rest could only be trimmed away
        self._new_stream()

    def push(self, block: CodeBlock | np.ndarray | int) -> np.ndarray:
        """A code block (or a gap of `int` frames) → the audio `[C, n]` that became final (n may be 0)."""
        return _joined(self.blocks(block), self.channels)

    def flush(self) -> np.ndarray:
        """The end of the stream: the remaining audio `[C, n]`."""
        return _joined(self.flush_blocks(), self.channels)

    def blocks(self, block: CodeBlock | np.ndarray | int) -> Iterator[np.ndarray]:
        """`push`, as a stream of bounded blocks (a long gap's silence comes in pieces)."""
        return self._out(self._model_rate(block))

    def flush_blocks(self) -> Iterator[np.ndarray]:
        yield from self._out(self._finish())
        if not self.finished:
            yield from self._emit(self.resampler(np.zeros((self.channels, 0), np.float32), last=True), last=True)
            self.finished = True
            if self.length is not None and self.emitted < self.length:
                backed = math.ceil(self.model_samples * self.ratio) + 1
                for piece in _silence(self.channels, max(0, min(self.length, backed) - self.emitted)):
                    self.emitted += piece.shape[-1]
                    yield piece

    def _new_stream(self) -> None:
        self.stream = _ByChannels(lambda: WindowedDecoder(self.net, self.window, self.lookahead), self.channels)
        self.restorer = LevelRestorer(self.level, self.channels) if self.level is not None else None

    def _finish(self) -> Iterator[np.ndarray]:
        tail = self.stream.flush()
        if self.restorer is not None:
            tail = self.restorer.push(tail, last=True)
        if tail.shape[-1]:
            yield tail

    def _model_rate(self, block) -> Iterator[np.ndarray]:
        if isinstance(block, (int, np.integer)):
            yield from self._finish()
            self._new_stream()
            yield from _silence(self.channels, int(block) * self.net.hop_length)
            return
        codes, points = (block.codes, block.points) if isinstance(block, CodeBlock) else (block, None)
        if self.restorer is not None and points is not None:
            self.restorer.add_points(np.asarray(points))
        if not codes.shape[-1]:
            return
        audio = self.stream.push(np.asarray(codes, np.int64))
        if self.restorer is not None:
            audio = self.restorer.push(audio)
        if audio.shape[-1]:
            yield audio

    def _out(self, model_rate: Iterator[np.ndarray]) -> Iterator[np.ndarray]:
        for audio in model_rate:
            if self.finished:
                return
            self.model_samples += audio.shape[-1]
            for piece in _pieces(audio, self.ratio):
                yield from self._emit(self.resampler(piece))
            if self.length is not None and self.emitted >= self.length:
                self.finished = True

    def _emit(self, audio: np.ndarray, last: bool = False) -> Iterator[np.ndarray]:
        audio = self.limiter.push(audio, last)
        if self.length is not None:
            audio = audio[:, : max(0, self.length - self.emitted)]
        self.emitted += audio.shape[-1]
        if audio.shape[-1]:
            yield audio


def _joined(blocks: Iterable[np.ndarray], channels: int) -> np.ndarray:
    return np.concatenate([np.zeros((channels, 0), np.float32), *blocks], axis=-1)


def stream_decode(net: Net, code_blocks: Iterable[CodeBlock | np.ndarray | int], sample_rate: int,
                  length: int | None, channels: int, window_frames: int = DEFAULT_WINDOW_FRAMES,
                  level: LevelCoder | None = None, limiter: Limiter | None = None) -> Iterator[np.ndarray]:
    """Code blocks → audio blocks `[C, n]` at `sample_rate` (a `StreamDecoder` fed from an iterable; it stops
    reading once `length` samples are out)."""
    decoder = StreamDecoder(net, sample_rate, length, channels, window_frames, level, limiter)
    for block in code_blocks:
        yield from decoder.blocks(block)
        if decoder.finished:
            return
    yield from decoder.flush_blocks()


def encode_audio(net: Net, audio: np.ndarray, sample_rate: int, n_q: int | None = None,
                 window_frames: int = DEFAULT_WINDOW_FRAMES, level: bool = True, loop: bool = True,
                 stage: Stage | None = None) -> EncodedAudio:
    """audio `[C, T]` (or `[T]`) at any rate → codes `[C, n_q, T_frames]` and, with `level`, the level envelope
    the audio was normalised by (`LevelCoder.for_model`; with `loop`, corrected by the encoder's own decoding of
    the codes after `stage`, as `stream_encode`)."""
    audio = np.asarray(audio, dtype=np.float32)
    if audio.ndim == 1:
        audio = audio[None]
    coder = LevelCoder.for_model(net.sample_rate, net.hop_length) if level else None
    parts = list(stream_encode(net, [audio], sample_rate, audio.shape[0], n_q, window_frames, coder, loop, stage))
    n_q = n_q or net.n_q
    channels = audio.shape[0]
    codes = np.concatenate([np.zeros((channels, n_q, 0), np.int64)] + [p.codes for p in parts], axis=-1)
    points = None
    if coder is not None:
        points = np.concatenate([np.zeros((channels, 0), np.int64)] + [p.points for p in parts], axis=-1)
    return EncodedAudio(codes, sample_rate, audio.shape[-1], points, coder)


def decode_audio(net: Net, encoded: EncodedAudio, window_frames: int = DEFAULT_WINDOW_FRAMES) -> np.ndarray:
    """codes (and level envelope) → audio `[C, length]` at the original sample rate."""
    channels = encoded.codes.shape[0]
    block = encoded.codes if encoded.level is None else CodeBlock(encoded.codes, encoded.points)
    parts = list(stream_decode(net, [block], encoded.sample_rate, encoded.length, channels, window_frames,
                               encoded.level))
    if not parts:
        return np.zeros((channels, 0), np.float32)
    return np.concatenate(parts, axis=-1)
