"""Live coding: the live encoder gives the same codes whatever the block sizes, its audio leaves within the
stated delay, live files are ordinary `.ncd` files, the stream reader takes chunks as their bytes arrive (and
damage as `parse` does), and `encode --live - - | decode --live - -` plays audio before its source ends."""

from __future__ import annotations

import io
import os
import struct
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
import soundfile as sf
from hypothesis import given, settings, strategies as st

from neurocodec import container
from neurocodec.audio import read_audio
from neurocodec.errors import AudioError
from neurocodec.live import LOOKAHEAD_FRAMES
from neurocodec.loader import load_model
from neurocodec.wavio import WavStreamReader, WavStreamWriter
from .conftest import ROOT, SPEECH
from .test_streaming import pieces


@pytest.fixture(scope="module")
def model():
    return load_model(runtime="onnx")


@pytest.fixture(scope="module")
def clip():
    audio, sr = read_audio(SPEECH)
    return np.concatenate([audio, 0.5 * audio[:, ::-1]])[:, : 2 * sr], sr


def live_codes(model, audio, sr, sizes):
    enc = model.stream_encoder(sr, audio.shape[0], live=True)
    blocks = [enc.push(audio[:, a:b]) for a, b in pieces(audio.shape[-1], sizes)] + [enc.flush()]
    return np.concatenate([b.codes for b in blocks], -1), np.concatenate([b.points for b in blocks], -1)


def test_live_codes_do_not_depend_on_block_sizes(model, clip):
    audio, sr = clip
    codes, points = live_codes(model, audio, sr, (10**9,))
    frames = -(-audio.shape[-1] * 24000 // sr // model.config.hop_length)
    assert codes.shape == (2, 4, frames) and points.shape == (2, -(-frames // 15))  # 6 kbps shared by 2 channels
    for sizes in [(1, 7, 333), (320,), (4801, 17)]:
        other, other_points = live_codes(model, audio, sr, sizes)
        np.testing.assert_array_equal(other, codes)
        np.testing.assert_array_equal(other_points, points)


def test_live_audio_leaves_within_two_segments_and_the_lookahead(model, clip):
    """20 ms blocks in: once 0.4 s + the look-ahead + 20 ms have gone in, audio has come out; and the round trip
    keeps the level and the length."""
    audio, sr = clip
    enc, dec = model.stream_encoder(sr, 2, live=True), model.stream_decoder(sr, 2, live=True)
    block = sr // 50
    first_out = None
    out = []
    for start in range(0, audio.shape[-1], block):
        got = dec.push(enc.push(audio[:, start:start + block]))
        if got.shape[-1] and first_out is None:
            first_out = start + block  # samples in when the first audio came out
        out.append(got)
    out.append(dec.push(enc.flush()))
    out.append(dec.flush())
    y = np.concatenate(out, -1)
    bound = 0.4 + LOOKAHEAD_FRAMES * model.config.hop_length / model.config.sample_rate + 0.02
    assert first_out is not None and first_out / sr <= bound + 0.01, first_out / sr
    assert y.shape[-1] >= audio.shape[-1] - 320  # the tail comes at flush: everything, up to a frame's padding
    n = min(y.shape[-1], audio.shape[-1])
    for c in range(2):
        level = 10 * np.log10(np.mean(y[c, :n] ** 2) / np.mean(audio[c, :n] ** 2))
        assert abs(level) < 1.0, level


def test_a_live_file_is_an_ordinary_ncd_file(model, clip, tmp_path):
    """`encode --live` writes 0.2 s chunks that the file path decodes without damage, to the live decoder's audio
    up to its shorter look-ahead."""
    audio, sr = clip
    wav = tmp_path / "in.wav"
    sf.write(wav, audio.T, sr, subtype="PCM_16")
    report = model.encode_live(str(wav), str(tmp_path / "live.ncd"))
    parsed = container.parse((tmp_path / "live.ncd").read_bytes())
    assert not parsed.damage and parsed.length == audio.shape[-1] and report.samples == audio.shape[-1]
    assert {c.frame_count for c in parsed.chunks[:-1]} == {15}
    model.decode_file(str(tmp_path / "live.ncd"), str(tmp_path / "file.wav"))
    live = model.decode_live(str(tmp_path / "live.ncd"), str(tmp_path / "live.wav"))
    assert not live.damage and live.samples == audio.shape[-1]
    a, _ = sf.read(tmp_path / "file.wav", always_2d=True)
    b, _ = sf.read(tmp_path / "live.wav", always_2d=True)
    assert a.shape == b.shape
    snr = 10 * np.log10(np.sum(a ** 2) / np.sum((a - b) ** 2))
    assert snr > 30, snr


def live_file(model, clip, tmp_path) -> bytes:
    audio, sr = clip
    wav = tmp_path / "in.wav"
    sf.write(wav, audio[:1, : sr].T, sr, subtype="PCM_16")
    model.encode_live(str(wav), str(tmp_path / "s.ncd"))
    return (tmp_path / "s.ncd").read_bytes()


def stream_parse(data: bytes, cuts: list[int]):
    header, size = container.parse_header(data)
    parser = container.StreamParser(header, size)
    pieces, last = [], size
    for cut in sorted(c for c in cuts if c > size) + [len(data)]:
        pieces += parser.feed(data[last:cut])
        last = cut
    pieces += parser.finish()
    return pieces, parser


@pytest.fixture(scope="module")
def ncd_bytes(model, clip, tmp_path_factory):
    return live_file(model, clip, tmp_path_factory.mktemp("live"))


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(0, 4000), max_size=12))
def test_the_stream_parser_reads_what_parse_reads_however_the_bytes_arrive(ncd_bytes, cuts):
    pieces, parser = stream_parse(ncd_bytes, cuts)
    whole = container.parse(ncd_bytes)
    assert [(c.first_frame, c.offset, c.payload) for c in pieces] == \
        [(c.first_frame, c.offset, c.payload) for c in whole.chunks]
    assert not parser.damage and parser.length == whole.length


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 10**6), st.integers(1, 200), st.lists(st.integers(0, 4000), max_size=6))
def test_the_stream_parser_resynchronises_after_damage_as_parse_does(ncd_bytes, start, count, cuts):
    """Bytes lost in the middle: the stream parser takes the chunks `parse` takes of the same bytes, and reports
    damage when `parse` does; the frames it declares lost never exceed what the damaged bytes could hold."""
    _, header_size = container.parse_header(ncd_bytes)
    start = header_size + start % (len(ncd_bytes) - header_size - 20)
    damaged = ncd_bytes[:start] + ncd_bytes[start + count:]
    pieces, parser = stream_parse(damaged, cuts)
    whole = container.parse(damaged)
    read = [(p.first_frame, p.offset, p.payload) for p in pieces if not isinstance(p, int)]
    assert read == [(c.first_frame, c.offset, c.payload) for c in whole.chunks]
    assert bool(parser.damage) == bool(whole.damage)
    frames = sum(p if isinstance(p, int) else p.frame_count for p in pieces)
    good = container.parse(ncd_bytes)
    assert frames <= good.total_frames + container.justified_frames(good.header, count)


def test_a_stream_cut_short_is_reported_not_refused(ncd_bytes):
    pieces, parser = stream_parse(ncd_bytes[: len(ncd_bytes) * 2 // 3], [])
    assert pieces and any("without its index" in d for d in parser.damage)
    assert len(parser.damage) <= 2  # the cut chunk and the missing index: one line each


@pytest.mark.parametrize("subtype", ["PCM_U8", "PCM_16", "PCM_24", "PCM_32", "FLOAT", "DOUBLE"])
def test_the_wav_stream_reader_reads_what_soundfile_writes(subtype):
    x = (np.random.default_rng(0).uniform(-0.5, 0.5, (2, 999))).astype(np.float32)
    buf = io.BytesIO()
    sf.write(buf, x.T, 16000, format="WAV", subtype=subtype)
    buf.seek(0)
    reader = WavStreamReader(buf, "t")
    y = np.concatenate(list(reader.blocks()), -1)
    ref = sf.read(io.BytesIO(buf.getvalue()), dtype="float32", always_2d=True)[0].T
    assert (reader.sample_rate, reader.channels) == (16000, 2)
    np.testing.assert_allclose(y, ref, atol=1e-6)


def test_the_wav_stream_writer_round_trips_and_bad_streams_are_refused():
    x = np.linspace(-1, 1, 400, dtype=np.float32).reshape(2, 200)
    buf = io.BytesIO()
    WavStreamWriter(buf, 8000, 2).write(x)
    buf.seek(0)
    y = np.concatenate(list(WavStreamReader(buf).blocks()), -1)
    np.testing.assert_allclose(y, x, atol=1e-4)  # written × 32767 (as libsndfile does), read ÷ 32768
    for data, message in [(b"fLaC" + bytes(40), "not one"), (b"RIFF\0\0\0\0WAVE", "ended inside"),
                          (b"RIFF\0\0\0\0WAVEfmt \x10\0\0\0" + struct.pack("<HHIIHH", 2, 1, 8000, 0, 2, 16)
                           + b"data\0\0\0\0", "format 2")]:
        with pytest.raises(AudioError, match=message):
            WavStreamReader(io.BytesIO(data))


def test_live_refuses_options_it_cannot_honour(tmp_path):
    from typer.testing import CliRunner

    from neurocodec.cli import app

    sf.write(tmp_path / "a.wav", np.zeros(1600, np.float32), 16000)
    for args in (["--quality", "3"], ["--effort", "2"]):
        result = CliRunner().invoke(app, ["encode", "--live", *args, str(tmp_path / "a.wav"), str(tmp_path / "a.ncd")])
        assert result.exit_code == 2 and "--live" in result.output
    sf.write(tmp_path / "a.flac", np.zeros(1600, np.float32), 16000)  # a file is read in any format …
    result = CliRunner().invoke(app, ["encode", "--live", str(tmp_path / "a.flac"), str(tmp_path / "b.ncd")])
    assert result.exit_code == 0 and (tmp_path / "b.ncd").exists()
    flac = (tmp_path / "a.flac").read_bytes()  # … a stream as WAV, as it arrives
    result = CliRunner().invoke(app, ["encode", "--live", "-", str(tmp_path / "c.ncd")], input=flac)
    assert result.exit_code == 3 and "WAV" in result.output and not (tmp_path / "c.ncd").exists()


def test_a_paced_source_through_a_live_pipe_plays_before_it_ends(clip):
    """A sound card's pace (20 ms blocks in real time) into `encode --live - - | decode --live - -`: the first
    decoded audio arrives while the source is still writing, and all of it arrives in the end."""
    audio, sr = clip
    seconds = 4.0
    x = np.tile(audio[0], 3)[: int(seconds * sr)]
    pcm = np.round(x * 32767).astype("<i2").tobytes()
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, "-m", "neurocodec.cli"]
    enc = subprocess.Popen(cmd + ["encode", "--live", "-q", "--threads", "1", "-", "-"], stdin=subprocess.PIPE,
                           stdout=subprocess.PIPE, env=env)
    dec = subprocess.Popen(cmd + ["decode", "--live", "-q", "--threads", "1", "-", "-"], stdin=enc.stdout,
                           stdout=subprocess.PIPE, env=env)
    enc.stdout.close()
    time.sleep(2.0)  # start-up is not counted: both processes load before the source starts
    source_done = threading.Event()

    def source():
        enc.stdin.write(b"RIFF\xff\xff\xff\xffWAVEfmt " + struct.pack("<IHHIIHH", 16, 1, 1, sr, 2 * sr, 2, 16)
                        + b"data\xff\xff\xff\xff")
        step = sr // 50 * 2
        t0 = time.monotonic()
        for i, start in enumerate(range(0, len(pcm), step)):
            time.sleep(max(0.0, t0 + i * 0.02 - time.monotonic()))
            enc.stdin.write(pcm[start:start + step])
            enc.stdin.flush()
        source_done.set()
        enc.stdin.close()

    thread = threading.Thread(target=source)
    thread.start()
    first = dec.stdout.read(44 + 2000)  # the WAV header and the first 1000 samples
    played_early = not source_done.is_set()
    rest = dec.stdout.read()
    thread.join()
    assert dec.wait(60) == 0 and enc.wait(60) == 0
    assert played_early, "no audio came out before the source ended"
    samples = (len(first) + len(rest) - 44) // 2
    assert samples == len(x)


@pytest.mark.parametrize("name", ["v1.1-stereo-44k-1q", "v2.0-speech-16k-vbr", "v2.1-speech-16k-4q"])
def test_the_live_decoder_decodes_every_versions_golden_files(name, tmp_path):
    """Files of every version decode live as on the file path (the golden model's decoder reaches no further than
    the live window's look-ahead, so to the sample)."""
    golden = ROOT / "formats" / "golden"
    model = load_model(golden / "tiny.safetensors")
    model.decode_file(str(golden / f"{name}.ncd"), str(tmp_path / "file.wav"))
    report = model.decode_live(str(golden / f"{name}.ncd"), str(tmp_path / "live.wav"))
    a, _ = sf.read(tmp_path / "file.wav", always_2d=True)
    b, _ = sf.read(tmp_path / "live.wav", always_2d=True)
    assert not report.damage and a.shape == b.shape
    np.testing.assert_array_equal(a, b)


PIECES = st.one_of(st.binary(max_size=40), st.sampled_from([b"\xffC", b"\xffX", b"\xffC\x00\x0f\x08", b"N\xff"]))


@settings(max_examples=80, deadline=None)
@given(st.lists(PIECES, max_size=80), st.lists(st.integers(0, 3000), max_size=8))
def test_the_stream_parser_survives_any_bytes_after_a_header(ncd_bytes, parts, cuts):
    """Hostile bytes (sync words among them) after a valid header: no exception, and never more frames than the
    bytes could hold."""
    _, size = container.parse_header(ncd_bytes)
    garbage = b"".join(parts)
    data = ncd_bytes[:size] + garbage
    pieces, parser = stream_parse(data, cuts)
    frames = sum(p if isinstance(p, int) else p.frame_count for p in pieces)
    header = container.parse_header(data)[0]
    assert frames <= container.justified_frames(header, len(garbage))
    assert parser.damage or not garbage
