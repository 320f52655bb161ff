import numpy as np
import pytest
import soundfile as sf
import torch

from neurocodec.audio import AudioReader, Resampler, read_audio, resample, write_audio
from neurocodec.errors import AudioError
from neurocodec.model import Codec
from neurocodec.model.codec import TorchNet
from neurocodec.stream import decode_audio, encode_audio
from .conftest import TINY_MODEL


@pytest.fixture(scope="module")
def codec(tiny_config):
    """The tiny model as the streams take it (`windows.Net`)."""
    torch.manual_seed(0)
    return TorchNet(Codec(tiny_config.model).prepare_for_inference())


def tone(freq, sr, seconds, channels=1):
    t = np.arange(int(sr * seconds)) / sr
    return np.stack([0.5 * np.sin(2 * np.pi * freq * (c + 1) * t) for c in range(channels)]).astype(np.float32)


def peak_hz(x, sr):
    spec = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return np.argmax(spec) * sr / len(x)


@pytest.mark.parametrize("sr", [8000, 16000, 44100, 48000])
@pytest.mark.parametrize("channels", [1, 2])
def test_any_rate_and_channels_restored(codec, sr, channels):
    audio = tone(440, sr, 0.77, channels) + 0.01
    enc = encode_audio(codec, audio, sr, n_q=2, window_frames=16)
    frames = -(-round(audio.shape[1] * 16000 / sr) // 160)
    assert enc.codes.shape == (channels, 2, frames)
    out = decode_audio(codec, enc, window_frames=16)
    assert out.shape == audio.shape and out.dtype == np.float32


@pytest.mark.parametrize("samples", [0, 1, 100])
@pytest.mark.parametrize("loop", [True, False])
def test_empty_and_tiny_inputs_round_trip(codec, samples, loop, tmp_path):
    """Nothing, one sample, a few: the level envelope and its closed loop cope, through arrays and files."""
    from neurocodec.loader import load_model

    audio = np.full((2, samples), 0.25, np.float32)
    enc = encode_audio(codec, audio, 16000, n_q=2, loop=loop)
    assert enc.points.shape == (2, -(-enc.codes.shape[-1] // enc.level.spacing_frames))
    assert decode_audio(codec, enc).shape == (2, samples)
    model = load_model(TINY_MODEL, "cpu")
    write_audio(tmp_path / "in.wav", audio, 16000)
    model.encode_file(str(tmp_path / "in.wav"), str(tmp_path / "x.ncd"), kbps=1.2, level_loop=loop)
    assert model.decode_file(str(tmp_path / "x.ncd"), str(tmp_path / "out.wav")).samples == samples


def test_channels_are_coded_independently(codec):
    sr = 16000
    left, right = tone(300, sr, 0.5), tone(1100, sr, 0.5)
    both = encode_audio(codec, np.concatenate([left, right]), sr, n_q=3).codes
    assert np.array_equal(both[0], encode_audio(codec, left, sr, n_q=3).codes[0])
    assert np.array_equal(both[1], encode_audio(codec, right, sr, n_q=3).codes[0])
    swapped = encode_audio(codec, np.concatenate([right, left]), sr, n_q=3).codes
    assert np.array_equal(swapped[::-1], both)


@pytest.mark.parametrize("sr", [8000, 16000, 44100, 48000])
def test_streaming_resampler_matches_one_shot_and_keeps_pitch(sr):
    audio = tone(1000, sr, 1.0, 2)
    stream = Resampler(sr, 24000, 2)
    blocks = [stream(audio[:, i : i + 999]) for i in range(0, audio.shape[1], 999)]
    blocks.append(stream(np.zeros((2, 0), np.float32), last=True))
    streamed = np.concatenate(blocks, axis=1)
    one_shot = resample(audio, sr, 24000)
    assert abs(streamed.shape[1] - 24000) <= 1 and one_shot.shape[1] == 24000
    n = min(streamed.shape[1], one_shot.shape[1])
    assert np.allclose(streamed[:, 1000 : n - 1000], one_shot[:, 1000 : n - 1000], atol=1e-3)
    assert abs(peak_hz(one_shot[0], 24000) - 1000) < 5 and abs(peak_hz(one_shot[1], 24000) - 2000) < 5
    back = resample(one_shot, 24000, sr)
    assert back.shape == audio.shape
    assert np.abs(back[:, 500:-500] - audio[:, 500:-500]).max() < 0.02


def test_unreadable_audio_gives_clear_error(tmp_path):
    bad = tmp_path / "notes.wav"
    bad.write_text("this is not audio\n")
    with pytest.raises(AudioError, match="notes.wav: not a readable audio file"):
        read_audio(bad)
    with pytest.raises(AudioError, match="no such file"):
        AudioReader(tmp_path / "missing.wav")
    empty = tmp_path / "empty.flac"
    empty.write_bytes(b"")
    with pytest.raises(AudioError):
        read_audio(empty)


def test_write_is_atomic_and_round_trips(tmp_path):
    audio = tone(440, 16000, 0.3, 2)
    path = tmp_path / "out.flac"
    write_audio(path, audio, 16000)
    back, sr = read_audio(path)
    assert sr == 16000 and back.shape == audio.shape and np.abs(back - audio).max() < 1e-3
    assert [p.name for p in tmp_path.iterdir()] == ["out.flac"]

    class Boom(Exception):
        pass

    from neurocodec.audio import AudioWriter

    with pytest.raises(Boom):
        with AudioWriter(tmp_path / "half.wav", 16000, 1) as w:
            w.write(audio[:1])
            raise Boom
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.flac"]
    info = sf.info(path)
    assert info.channels == 2
