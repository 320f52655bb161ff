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


def stream_encode(
    net: Net,
    blocks: Iterable[np.ndarray],
    sample_rate: int,
    channels: int,
    n_q: int | None = None,
    window_frames: int = DEFAULT_WINDOW_FRAMES,
    level: LevelCoder | None = None,
    loop: bool = True,
    stage: Stage | None = None,
) -> Iterator[CodeBlock]:
    """Blocks `[C, n]` at `sample_rate` → code blocks, in order. With `level`, the audio is normalised by its
    level envelope before the model, and the envelope's points come with the codes (in order, from the file's
    start, a little behind them). With `loop` too, the encoder decodes its own codes and corrects the points so
    that the decoded level is the input's (`LevelLoop`): about twice the work, the model's own level error gone.
    `stage`: what becomes of the encoder's codes before they are yielded (e.g. variable rate marks the codebooks a
    frame does not keep with -1); the loop decodes what it returns, as the reader will. Analysis by synthesis
    (`search.Search`) comes as a net that searches (`model.codec.TorchNet`)."""
    resampler = Resampler(sample_rate, net.sample_rate, channels)
    window = window_for(channels, window_frames)
    n_q = n_q or net.n_q
    stream = _ByChannels(lambda: WindowedEncoder(net, n_q, window), channels)
    normalizer = LevelNormalizer(level, channels) if level is not None else None
    closed = LevelLoop(level, channels) if level is not None and loop else None
    decoder = _ByChannels(lambda: WindowedDecoder(net, window), channels) if closed is not None else None

    def model_rate() -> Iterator[np.ndarray]:
        for block in blocks:
            yield resampler(block)
        yield resampler(np.zeros((channels, 0), np.float32), last=True)

    coded = 0  # frames the encoder has produced

    def staged(codes: np.ndarray) -> np.ndarray:
        if stage is None or not codes.shape[-1]:
            return codes
        return stage(codes, coded)

    pieces = model_rate()
    done = False
    while not done:
        audio = next(pieces, None)
        done = audio is None
        x = np.zeros((channels, 0), np.float32) if done else audio
        points = None
        if normalizer is not None:
            x, points = normalizer.push(x, last=done)
        codes = stream.push(x) if x.shape[-1] else np.zeros((channels, n_q, 0), np.int64)
        if done:
            codes = np.concatenate([codes, stream.flush()], axis=-1)
        codes = staged(codes)
        if closed is not None:
            out = decoder.push(codes) if codes.shape[-1] else np.zeros((channels, 0), np.float32)
            if done:
                out = np.concatenate([out, decoder.flush()], axis=-1)
            points = closed.push(x, points, out, last=done)
        coded += codes.shape[-1]
        if codes.shape[-1] or (points is not None and points.shape[-1]):
            yield CodeBlock(codes, points)


def stream_decode(
    net: Net,
    code_blocks: Iterable[np.ndarray | int],
    sample_rate: int,
    length: int | None,
    channels: int,
    window_frames: int = DEFAULT_WINDOW_FRAMES,
    level: LevelCoder | None = None,
    limiter: Limiter | None = None,
) -> Iterator[np.ndarray]:
    """Code blocks `[C, n_q, k]` (n_q may vary per block) → audio blocks `[C, n]` at `sample_rate`, through
    `limiter` (a fresh `Limiter` if None; its `touched` counts the samples it lowered): no sample reaches full
    scale.

    With `level`, each block is a `CodeBlock` whose points (frames 0, spacing, 2·spacing, … of the stream, in
    order, ahead of or a little behind the codes) restore the level the encoder normalised away. An `int` in place
    of a block is a gap of that many frames (codes lost to damage): it becomes silence of the right length, and decoding restarts after it as at the start of a file. With `length` given, that many samples
    per channel come out (trimmed, or zero-padded if the resampler's rounding leaves the codes a sample short),
    but never more than the frames received describe: a length is a promise the codes must back.
    """
    resampler = Resampler(net.sample_rate, sample_rate, channels)
    ratio = sample_rate / net.sample_rate
    window = window_for(channels, window_frames)
    limiter = limiter if limiter is not None else Limiter(sample_rate, channels)
    emitted = 0

    def emit(audio: np.ndarray, last: bool = False) -> Iterator[np.ndarray]:
        nonlocal emitted
        audio = limiter.push(audio, last)
        if length is not None:
            audio = audio[:, : max(0, length - emitted)]
        emitted += audio.shape[-1]
        if audio.shape[-1]:
            yield audio

    def new_stream() -> tuple[_ByChannels, LevelRestorer | None]:
        return (_ByChannels(lambda: WindowedDecoder(net, window), channels),
                LevelRestorer(level, channels) if level is not None else None)

    def finish(stream: _ByChannels, restorer: LevelRestorer | None) -> Iterator[np.ndarray]:
        tail = stream.flush()
        if restorer is not None:
            tail = restorer.push(tail, last=True)
        if tail.shape[-1]:
            yield tail

    def model_rate() -> Iterator[np.ndarray]:
        stream, restorer = new_stream()
        for block in code_blocks:
            if isinstance(block, (int, np.integer)):
                yield from finish(stream, restorer)
                stream, restorer = new_stream()
                yield from _silence(channels, int(block) * net.hop_length)
                continue
            codes, points = (block.codes, block.points) if isinstance(block, CodeBlock) else (block, None)
            if restorer is not None and points is not None:
                restorer.add_points(np.asarray(points))
            if not codes.shape[-1]:
                continue
            audio = stream.push(np.asarray(codes, np.int64))
            if restorer is not None:
                audio = restorer.push(audio)
            if audio.shape[-1]:
                yield audio
        yield from finish(stream, restorer)

    model_samples = 0
    for audio in model_rate():
        model_samples += audio.shape[-1]
        for piece in _pieces(audio, ratio):
            yield from emit(resampler(piece))
        if length is not None and emitted >= length:
            return  # the rest could only be trimmed away
    yield from emit(resampler(np.zeros((channels, 0), np.float32), last=True), last=True)
    if length is not None and emitted < length:
        backed = math.ceil(model_samples * ratio) + 1
        yield from _silence(channels, max(0, min(length, backed) - emitted))


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
