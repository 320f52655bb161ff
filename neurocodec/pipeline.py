"""Audio at any sample rate and channel count ↔ codes, as streams.

Channels are coded independently (each is one batch item of the mono model). Input is resampled with soxr to the
model's rate on the way in; decoding resamples back and restores the original length and channel count.
"""

from __future__ import annotations

from typing import Iterable, Iterator, NamedTuple

import numpy as np
import torch

from .audio import Resampler
from .model import Codec
from .model.streaming import DEFAULT_CHUNK_FRAMES, ChunkedDecoder, ChunkedEncoder


class EncodedAudio(NamedTuple):
    codes: np.ndarray  # [C, n_q, T_frames] int64
    sample_rate: int  # of the original audio
    length: int  # original length in samples per channel


def stream_encode(
    codec: Codec,
    blocks: Iterable[np.ndarray],
    sample_rate: int,
    channels: int,
    n_q: int | None = None,
    chunk_frames: int = DEFAULT_CHUNK_FRAMES,
) -> Iterator[np.ndarray]:
    """Blocks `[C, n]` at `sample_rate` → code blocks `[C, n_q, k]` (k ≥ 1), in order."""
    resampler = Resampler(sample_rate, codec.sample_rate, channels)
    stream = ChunkedEncoder(codec, n_q or codec.n_q, chunk_frames)
    with torch.inference_mode():
        for block in blocks:
            codes = stream.push(torch.from_numpy(resampler(block)))
            if codes.shape[-1]:
                yield codes.cpu().numpy()
        tail = resampler(np.zeros((channels, 0), np.float32), last=True)
        if tail.shape[-1]:
            codes = stream.push(torch.from_numpy(tail))
            if codes.shape[-1]:
                yield codes.cpu().numpy()
        codes = stream.flush()
        if codes.shape[-1]:
            yield codes.cpu().numpy()


def stream_decode(
    codec: Codec,
    code_blocks: Iterable[np.ndarray],
    sample_rate: int,
    length: int | None,
    chunk_frames: int = DEFAULT_CHUNK_FRAMES,
) -> Iterator[np.ndarray]:
    """Code blocks `[C, n_q, k]` (n_q may vary per block) → audio blocks `[C, n]` at `sample_rate`.

    With `length` given, exactly that many samples per channel come out (trimmed, or zero-padded if the codes
    run short); otherwise everything the codes describe.
    """
    stream = ChunkedDecoder(codec, chunk_frames)
    resampler: Resampler | None = None
    emitted = 0

    def emit(audio: np.ndarray) -> Iterator[np.ndarray]:
        nonlocal emitted
        if length is not None:
            audio = audio[:, : max(0, length - emitted)]
        emitted += audio.shape[-1]
        if audio.shape[-1]:
            yield audio

    channels = None
    with torch.inference_mode():
        for codes in code_blocks:
            channels = codes.shape[0]
            if resampler is None:
                resampler = Resampler(codec.sample_rate, sample_rate, channels)
            audio = stream.push(torch.from_numpy(np.ascontiguousarray(codes)).long())
            yield from emit(resampler(audio.cpu().numpy()))
        if resampler is None:
            return
        audio = stream.flush().cpu().numpy()
        yield from emit(resampler(audio, last=True))
    if length is not None and emitted < length:
        yield np.zeros((channels, length - emitted), np.float32)


def encode_audio(
    codec: Codec, audio: np.ndarray, sample_rate: int, n_q: int | None = None, chunk_frames: int = DEFAULT_CHUNK_FRAMES
) -> EncodedAudio:
    """audio `[C, T]` at any rate → codes `[C, n_q, T_frames]`."""
    audio = np.asarray(audio, dtype=np.float32)
    if audio.ndim == 1:
        audio = audio[None]
    parts = list(stream_encode(codec, [audio], sample_rate, audio.shape[0], n_q, chunk_frames))
    n_q = n_q or codec.n_q
    codes = np.concatenate(parts, axis=-1) if parts else np.zeros((audio.shape[0], n_q, 0), np.int64)
    return EncodedAudio(codes, sample_rate, audio.shape[-1])


def decode_audio(codec: Codec, encoded: EncodedAudio, chunk_frames: int = DEFAULT_CHUNK_FRAMES) -> np.ndarray:
    """codes → audio `[C, length]` at the original sample rate."""
    parts = list(stream_decode(codec, [encoded.codes], encoded.sample_rate, encoded.length, chunk_frames))
    if not parts:
        return np.zeros((encoded.codes.shape[0], 0), np.float32)
    return np.clip(np.concatenate(parts, axis=-1), -1.0, 1.0)
