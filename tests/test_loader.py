"""The loaded-model object: arrays and files through one API, headers from one place, and entropy fitting."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import soundfile as sf
import torch

from neurocodec import container, load_model
from neurocodec.checkpoint import read_model, save_model
from neurocodec.errors import FormatError
from .conftest import SPEECH, TINY_MODEL

MODEL = TINY_MODEL


@pytest.fixture(scope="module")
def model():
    return load_model(MODEL, device="cpu")


def test_arrays_round_trip_at_any_rate(model, speech):
    audio, sr = speech
    stereo = np.stack([audio[0], -0.5 * audio[0]])
    encoded = model.encode(stereo, sr, kbps=2.4)  # the total: 1.2 kbps, 2 codebooks, per channel
    assert encoded.codes.shape[:2] == (2, 2) == (2, model.n_q_for_kbps(2.4, channels=2))
    assert encoded.sample_rate == sr
    out = model.decode(encoded)
    assert out.shape == stereo.shape and out.dtype == np.float32
    # Channels are coded independently: the second one alone gives the same codes and audio as in the pair.
    alone = model.encode(stereo[1], sr, kbps=1.2)
    assert np.array_equal(alone.codes[0], encoded.codes[1])
    assert np.allclose(model.decode(alone)[0], out[1], atol=1e-5)


def test_files_agree_with_arrays(model, tmp_path):
    ncd, wav = tmp_path / "a.ncd", tmp_path / "a.wav"
    written = model.encode_file(str(SPEECH), str(ncd), kbps=1.2)
    header = written.header
    assert header == model.identity.header(16000, 1, sf.info(str(SPEECH)).frames)
    assert (written.n_q, written.samples, written.bytes) == (2, sf.info(str(SPEECH)).frames, ncd.stat().st_size)
    parsed = container.parse(ncd.read_bytes())
    assert parsed.header == header
    report = model.decode_file(str(ncd), str(wav))
    assert report.damage == [] and report.samples == sf.info(str(SPEECH)).frames
    audio, sr = sf.read(SPEECH, dtype="float32", always_2d=True)
    from neurocodec.ncdfile import read_codes

    pieces, _ = read_codes(parsed, model.entropy, conceal=False)
    encoded = model.encode(audio.T, sr, kbps=1.2)
    assert np.array_equal(np.concatenate([p.codes for p in pieces], axis=-1), encoded.codes)
    assert np.array_equal(np.concatenate([p.points for p in pieces], axis=-1), encoded.points)
    # The file carries the level envelope the arrays carry, and decodes to the same audio.
    decoded, _ = sf.read(wav, dtype="float32", always_2d=True)
    assert np.abs(decoded.T - model.decode(encoded)).max() < 1e-3


def test_header_check_refuses_other_models_and_other_geometry(model):
    header = model.identity.header(16000, 1, 100)
    model.identity.check(header, "x.ncd")
    with pytest.raises(FormatError, match="made by model"):
        model.identity.check(dataclasses.replace(header, model_sha256="00" * 32), "x.ncd")
    with pytest.raises(FormatError, match="entropy tables"):
        model.identity.check(dataclasses.replace(header, entropy_sha256="11" * 32), "x.ncd")
    with pytest.raises(FormatError, match="geometry"):
        model.identity.check(dataclasses.replace(header, hop_length=header.hop_length * 2), "x.ncd")


def test_fit_entropy_keeps_the_weights_and_beats_uniform_tables(tmp_path):
    from typer.testing import CliRunner

    from neurocodec.cli import app

    state, info = read_model(MODEL)
    uniform = tmp_path / "uniform.safetensors"
    save_model(uniform, state, info.config, name=info.name, dtype=torch.float16)
    out = tmp_path / "fitted.safetensors"
    r = CliRunner().invoke(app, ["fit-entropy", str(uniform), str(SPEECH.parent), "-o", str(out), "--contexts", "4"])
    assert r.exit_code == 0, r.output
    figures = json.loads(r.output)
    assert figures["files"] == 1 and figures["bits_per_code"] < figures["uniform_bits_per_code"]
    _, fitted = read_model(out)
    assert fitted.weights_sha256 == read_model(uniform)[1].weights_sha256
    assert read_model(uniform)[1].entropy.coder.is_uniform and not fitted.entropy.coder.is_uniform
    # A model without 1.x tables (a run's generator) gets them fitted; a model with them keeps them as they were.
    assert read_model(uniform)[1].entropy.is_uniform and not fitted.entropy.is_uniform
    again = tmp_path / "again.safetensors"
    r = CliRunner().invoke(app, ["fit-entropy", str(out), str(SPEECH.parent), "-o", str(again), "--contexts", "4"])
    assert r.exit_code == 0, r.output
    assert read_model(again)[1].entropy.sha256 == fitted.entropy.sha256
