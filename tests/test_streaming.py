"""The Python streaming API: push audio, pull code blocks; push code blocks, pull audio; whatever the block sizes,
the same codes, points and samples as the whole-signal path."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from neurocodec.audio import read_audio
from neurocodec.codes import CodeBlock
from neurocodec.errors import AudioError, FormatError
from neurocodec.loader import load_model
from .conftest import SPEECH


@pytest.fixture(scope="module")
def model():
    return load_model()


@pytest.fixture(scope="module")
def stereo():
    audio, sr = read_audio(SPEECH)
    return np.concatenate([audio, 0.3 * audio[:, ::-1]])[:, : 2 * sr], sr


def pieces(n: int, sizes) -> list[tuple[int, int]]:
    out, start = [], 0
    for size in itertools.cycle(sizes):
        if start >= n:
            return out
        out.append((start, min(n, start + size)))
        start += size


@pytest.mark.parametrize("sizes", [(1, 7, 333, 4800), (20000,), (10**9,)], ids=["tiny", "blocks", "whole"])
def test_encoding_in_blocks_gives_the_whole_signal_codes(model, stereo, sizes):
    audio, sr = stereo
    whole = model.encode(audio, sr, kbps=6)
    stream = model.stream_encoder(sr, channels=2, kbps=6)
    if sizes == (1, 7, 333, 4800):
        audio = audio[:, : sr // 2]  # one-sample pushes cost a call each: half a second of them
        whole = model.encode(audio, sr, kbps=6)
    blocks = [stream.push(audio[:, a:b]) for a, b in pieces(audio.shape[-1], sizes)] + [stream.flush()]
    codes = np.concatenate([b.codes for b in blocks], axis=-1)
    points = np.concatenate([b.points for b in blocks], axis=-1)
    assert np.array_equal(codes, whole.codes) and np.array_equal(points, whole.points)
    assert stream.flush().codes.shape[-1] == 0  # a second flush gives nothing


@pytest.mark.parametrize("frames", [1, 5, 1000])
def test_decoding_in_blocks_gives_the_whole_signal_audio(model, stereo, frames):
    audio, sr = stereo
    encoded = model.encode(audio, sr, kbps=6)
    whole = model.decode(encoded)
    stream = model.stream_decoder(sr, channels=2)
    spacing = encoded.level.spacing_frames
    out, given = [], 0
    for start in range(0, encoded.codes.shape[-1], frames):
        end = min(encoded.codes.shape[-1], start + frames)
        due = -(-end // spacing)  # the points of the frames pushed so far
        out.append(stream.push(CodeBlock(encoded.codes[..., start:end], encoded.points[:, given:due])))
        given = due
    out.append(stream.flush())
    joined = np.concatenate(out, axis=-1)
    assert joined.shape[-1] >= whole.shape[-1]
    assert np.allclose(joined[:, : whole.shape[-1]], whole, atol=1e-6)


def test_a_live_round_trip_through_both_streams(model, stereo):
    """Encoder blocks fed to the decoder as they come: audio comes out before the input ends."""
    audio, sr = stereo
    enc, dec = model.stream_encoder(sr, 2), model.stream_decoder(sr, 2)
    out = []
    early = 0
    for a, b in pieces(audio.shape[-1], (sr // 10,)):
        out.append(dec.push(enc.push(audio[:, a:b])))
    early = sum(o.shape[-1] for o in out)
    out.append(dec.push(enc.flush()))
    out.append(dec.flush())
    assert np.allclose(np.concatenate(out, axis=-1)[:, : audio.shape[-1]], model.decode(model.encode(audio, sr)),
                       atol=1e-6)
    assert early == 0 or early < audio.shape[-1]  # (the default windows are 10 s: a 2 s input waits for its end)


def test_streams_check_what_is_pushed(model, stereo):
    audio, sr = stereo
    enc = model.stream_encoder(sr, 2)
    with pytest.raises(AudioError, match="1 channels pushed into a stream of 2"):
        enc.push(audio[:1])
    with pytest.raises(AudioError, match="NaN"):
        enc.push(np.full((2, 10), np.nan, np.float32))
    with pytest.raises(AudioError, match="sample rate"):
        model.stream_encoder(5, 1)
    enc.flush()
    with pytest.raises(ValueError, match="push after flush"):
        enc.push(audio[:, :10])
    dec = model.stream_decoder(sr, 2)
    codes = np.zeros((2, 8, 3), np.int64)
    with pytest.raises(FormatError, match="codes from"):
        dec.push(CodeBlock(codes + 5000, None))
    with pytest.raises(FormatError, match="level points"):
        dec.push(CodeBlock(codes, np.full((2, 1), 10**6)))
    with pytest.raises(FormatError, match="give \\[2, n_q, frames\\]"):
        dec.push(CodeBlock(codes[:1], None))
