"""What a crafted file can ask of the decoder (issue "Nothing a file, an array or a typo asks for can hurt"): level
envelopes no encoder writes are refused, the loudest envelope the writer allows is limited, never clipped, and
decoding never writes a sample at full scale."""

from __future__ import annotations

import dataclasses
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf
from typer.testing import CliRunner

from neurocodec import container
from neurocodec.checkpoint import bundled_models
from neurocodec.cli import app
from neurocodec.errors import FormatError
from neurocodec.limiter import CEILING, Limiter
from tools.ncd_fuzz import with_points
from .conftest import GOLDEN, SPEECH, TINY_MODEL

FULL_SCALE = 32767
GOLDEN_V21 = (GOLDEN / "v2.1-speech-16k-2q.ncd").read_bytes()


def _with_level(data: bytes, **change) -> bytes:
    h, size = container.parse_header(data)
    return dataclasses.replace(h, level=dataclasses.replace(h.level, **change)).pack(check=False) + data[size:]


@pytest.mark.parametrize("change", [
    dict(target_db=-60.0),  # the red team's: the model "saw" -60 dBFS, so every point means +37 dB more gain
    dict(target_db=0.0, floor_db=-90.0),  # ... and the reverse: silence
    dict(spacing_frames=4096),  # a point every 27 s: audio held until the next one
    dict(step_db=0.25),
    dict(levels=2),
])
def test_a_level_envelope_no_encoder_writes_is_refused_by_decode_and_info(change, tmp_path):
    data = _with_level(GOLDEN_V21, **change)
    container.LevelExtension.unpack(container.parse_header(GOLDEN_V21)[0].level.pack())  # the spec's ranges hold
    with pytest.raises(FormatError, match="level envelope .* is not the one an encoder writes"):
        container.parse(data)
    src = tmp_path / "x.ncd"
    src.write_bytes(data)
    for args in (["decode", str(src), str(tmp_path / "x.wav"), "-m", str(TINY_MODEL)], ["info", str(src)]):
        r = CliRunner().invoke(app, args)
        assert r.exit_code == 5 and "is not the one an encoder writes" in r.output, r.output
        assert len(r.output.strip().splitlines()) == 1, r.output
    assert not (tmp_path / "x.wav").exists()


def test_255_channels_with_a_spacing_of_4096_are_refused_in_little_memory(tmp_path):
    h, _ = container.parse_header(GOLDEN_V21)
    h = dataclasses.replace(h, channels=255, length=None, level=dataclasses.replace(h.level, spacing_frames=4096))
    head = h.pack(check=False)
    data = head + container.chunk_header(0, 4096, 2, 0, container.crc32(b"")) + container.index_bytes([(len(head), 0)],
                                                                                                     4096, 4096 * 160)
    src = tmp_path / "wide.ncd"
    src.write_bytes(data)
    # The command's own peak (VmHWM, kB): getrusage's ru_maxrss would count the test process it was spawned from.
    measured = ("import sys\nfrom neurocodec.cli import main\nsys.argv[0] = 'neurocodec'\n"
                "try:\n    main()\n"
                "finally:\n    hwm = [l for l in open('/proc/self/status') if l.startswith('VmHWM')][0].split()[1]\n"
                "    print('peak', hwm, file=sys.stderr)")
    r = subprocess.run([sys.executable, "-c", measured, "decode", str(src), str(tmp_path / "w.wav"), "-m",
                        str(TINY_MODEL), "--decode-through-errors"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 5 and "level envelope" in r.stderr, r.stderr
    peak_mb = int(r.stderr.split("peak")[-1]) / 1024
    assert peak_mb < 1024


def test_limiter_passes_audio_below_the_ceiling_unchanged_and_streams_exactly():
    rng = np.random.default_rng(0)
    quiet = (rng.standard_normal((2, 30000)) * 0.1).astype(np.float32)
    lim = Limiter(16000, 2)
    out = np.concatenate([lim.push(quiet[:, :7000]), lim.push(quiet[:, 7000:], last=True)], axis=-1)
    assert np.array_equal(out, quiet) and lim.touched == 0
    loud = quiet.copy()
    loud[:, 10000:10400] *= 30  # far over full scale
    loud[1, 20000] = 1.5  # one lone over on one channel
    whole = Limiter(16000, 2)
    ref = np.concatenate([whole.push(loud), whole.push(loud[:, :0], last=True)], axis=-1)
    pieces = Limiter(16000, 2)
    got = np.concatenate([pieces.push(loud[:, i:i + 333]) for i in range(0, 30000, 333)]
                         + [pieces.push(loud[:, :0], last=True)], axis=-1)
    assert np.array_equal(ref, got) and whole.touched == pieces.touched > 0
    assert np.abs(ref).max() <= CEILING
    gain = np.where(np.abs(loud[0]) > 1e-3, ref[0] / np.where(loud[0] == 0, 1, loud[0]), np.nan)
    steps = np.abs(np.diff(gain))
    assert np.nanmax(steps[np.isfinite(steps)]) < 0.2  # the gain ramps (over 5 ms), it does not jump
    assert np.allclose(ref[:, :9000], loud[:, :9000]) and np.allclose(ref[:, 25000:], loud[:, 25000:])
    assert np.allclose(ref[0, 19000:20500], loud[0, 19000:20500]) is False  # linked: channel 0 follows channel 1


@pytest.fixture(scope="module")
def default_model():
    if "default" not in bundled_models():
        pytest.skip("no bundled default model")
    from neurocodec.loader import load_model

    return load_model("default", device="cpu")


@pytest.fixture(scope="module")
def speech_file(default_model, tmp_path_factory) -> bytes:
    out = tmp_path_factory.mktemp("hostile") / "speech.ncd"
    default_model.encode_file(str(SPEECH), str(out), kbps=6)
    return out.read_bytes()


@pytest.mark.parametrize("pattern", ["loudest", "swinging"])
def test_the_loudest_envelope_the_writer_allows_is_limited_not_clipped(default_model, speech_file, pattern,
                                                                       tmp_path):
    top = container.parse_header(speech_file)[0].level.levels - 1

    def points(p):
        if pattern == "loudest":  # every point at +15 dBFS: 38 dB of gain on speech the model renders at -23
            return np.full_like(p, top)
        return np.broadcast_to((np.arange(p.shape[-1]) % 2) * top, p.shape).copy()  # 60 dB every 0.2 s

    src, out = tmp_path / "loud.ncd", tmp_path / "loud.wav"
    src.write_bytes(with_points(speech_file, default_model.identity.tables, points))
    r = CliRunner().invoke(app, ["decode", str(src), str(out)])
    assert r.exit_code == 0, r.output
    assert "samples limited" in r.output, r.output
    audio, _ = sf.read(out, dtype="int16")
    assert np.abs(audio.astype(np.int32)).max() < FULL_SCALE


def test_decoding_a_loud_input_keeps_its_level_without_a_sample_at_full_scale(default_model):
    audio, sr = sf.read(SPEECH, dtype="float32", always_2d=True)
    audio = audio.T * (0.99 / np.abs(audio).max())  # real speech peaking just under full scale
    decoded = default_model.decode(default_model.encode(audio, sr, kbps=6))
    assert np.abs(decoded).max() <= CEILING
    rms = lambda x: np.sqrt(np.mean(x ** 2))
    assert abs(20 * np.log10(rms(decoded) / rms(audio))) < 0.5


@pytest.fixture(scope="module")
def tiny():
    from neurocodec.loader import load_model

    return load_model(TINY_MODEL, device="cpu")


@pytest.fixture(scope="module")
def speech_16k():
    audio, sr = sf.read(SPEECH, dtype="int16", always_2d=True)
    return audio.T[:, : sr].copy(), sr  # one second of int16 PCM [1, T]


def test_the_api_scales_integer_pcm_as_the_reader_does(tiny, speech_16k):
    pcm, sr = speech_16k
    as_float = tiny.encode(pcm.astype(np.float32) / 32768, sr, kbps=None)
    for array in (pcm, (pcm.astype(np.int32) << 16)):
        encoded = tiny.encode(array, sr, kbps=None)
        assert np.array_equal(encoded.codes, as_float.codes) and np.array_equal(encoded.points, as_float.points)
    assert np.array_equal(tiny.encode(pcm[0], np.int64(sr), kbps=None).codes, as_float.codes)  # [T] and a numpy rate


@pytest.mark.parametrize("array, rate, message", [
    (np.full((1, 800), np.nan, np.float32), 16000, "sample 0 (0.000 s) is NaN or infinite"),
    (np.zeros((16000, 2), np.float32), 16000, "samples first? pass audio.T"),
    (np.zeros((1, 1, 100), np.float32), 16000, "give [samples] or [channels, samples]"),
    (np.zeros((0, 100), np.float32), 16000, "0 channels"),
    (np.zeros(100, np.int64), 16000, "samples of type int64"),
    (np.zeros(100, bool), 16000, "samples of type bool"),
    (np.zeros(100, np.complex64), 16000, "samples of type complex64"),
    (np.full(100, 1000.0, np.float32), 16000, "integer PCM stored as float"),
    (np.zeros(100, np.float32), 16000.5, "sample rate 16000.5"),
    (np.zeros(100, np.float32), True, "sample rate True"),
    (np.zeros(100, np.float32), 100, "sample rate 100"),
])
def test_the_api_refuses_what_the_command_line_refuses(tiny, array, rate, message):
    from neurocodec.errors import AudioError

    with pytest.raises(AudioError) as info:
        tiny.encode(array, rate)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_decode_refuses_codes_the_model_could_not_have_made(tiny, speech_16k):
    pcm, sr = speech_16k
    encoded = tiny.encode(pcm, sr, kbps=None)
    assert tiny.decode(encoded).shape == pcm.shape
    codes = encoded.codes.copy()
    codes[0, 0, 3] = tiny.config.quantizer.codebook_size
    big = encoded.codes.shape[-1] * tiny.config.hop_length * 10
    foreign = dataclasses.replace(encoded.level, target_db=-60.0)
    for bad, message in ((encoded._replace(codes=codes), "has codes 0 to 63"),
                         (encoded._replace(codes=encoded.codes.astype(np.float32)), "give integers"),
                         (encoded._replace(length=big), "describe at most"),
                         (encoded._replace(level=foreign), "is not model"),
                         (encoded._replace(points=encoded.points + 200), "level points"),
                         (encoded._replace(points=encoded.points[:, :-1]), "level points")):
        with pytest.raises(FormatError, match=message):
            tiny.decode(bad)


def test_decode_max_hours_bounds_what_a_file_says_and_what_it_decodes(tmp_path):
    src = tmp_path / "a.ncd"
    src.write_bytes(GOLDEN_V21)
    seconds = container.parse(GOLDEN_V21).length / container.parse_header(GOLDEN_V21)[0].sample_rate
    for hours, code in ((seconds * 0.9 / 3600, 5), (seconds * 1.1 / 3600, 0)):
        r = CliRunner().invoke(app, ["decode", str(src), str(tmp_path / "a.wav"), "-m", str(TINY_MODEL), "-f",
                                     "--max-hours", repr(hours)])
        assert r.exit_code == code, r.output
        assert code == 0 or ("longer than the" in r.output and "--max-hours" in r.output), r.output
    for bad in ("nan", "inf", "0", "-1"):
        r = CliRunner().invoke(app, ["decode", str(src), str(tmp_path / "b.wav"), "-m", str(TINY_MODEL),
                                     "--max-hours", bad])
        assert r.exit_code == 2 and "--max-hours" in r.output, r.output
