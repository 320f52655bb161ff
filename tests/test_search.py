"""Analysis by synthesis (`encode --effort`) and files that name the decoder they need, not the encoder."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
import torch
from typer.testing import CliRunner

from neurocodec import container, load_model
from neurocodec.checkpoint import read_model, save_model
from neurocodec.cli import app
from neurocodec.errors import FormatError
from neurocodec.search import Search, SpectralLoss, effort_steps

from .conftest import GOLDEN, SPEECH, TINY_MODEL


@pytest.fixture(scope="module")
def model():
    return load_model(TINY_MODEL, device="cpu")


def _model_audio(model, speech):
    audio, sr = speech
    from neurocodec.audio import resample

    return torch.from_numpy(resample(audio, sr, model.sample_rate))


def test_search_renders_closer_to_the_input_than_the_greedy_codes(model, speech):
    codec = model.codec
    x = _model_audio(model, speech)[:, : 80 * codec.hop_length]
    with torch.inference_mode():
        latent = codec.encoder(codec._pad(x[:, None]))
        greedy = codec.quantizer.encode(latent, 4)
    searched = Search(codec, 4, steps=12)(x, latent)
    loss = SpectralLoss(codec.sample_rate)
    with torch.inference_mode():
        before = float(loss(x, codec.decode_frames(greedy)[:, 0]))
        after = float(loss(x, codec.decode_frames(searched)[:, 0]))
    assert searched.shape == greedy.shape and (searched != greedy).any()
    assert after < before
    assert torch.equal(Search(codec, 4, steps=0)(x, latent), greedy)  # no steps: the encoder's own codes


def test_effort_is_deterministic_bounded_and_recorded(model, tmp_path):
    a, b = tmp_path / "a.ncd", tmp_path / "b.ncd"
    model.encode_file(str(SPEECH), str(a), kbps=2.4, effort=1)
    model.encode_file(str(SPEECH), str(b), kbps=2.4, effort=1)
    assert a.read_bytes() == b.read_bytes()  # same input, effort and threads: the same file
    header = container.parse(a.read_bytes()).header
    assert header.encoder == (model.identity.encoder_sha256[:16], 1)
    plain = tmp_path / "plain.ncd"
    model.encode_file(str(SPEECH), str(plain), kbps=2.4)
    assert container.parse(plain.read_bytes()).header.encoder[1] == 0
    out = tmp_path / "a.wav"
    assert model.decode_file(str(a), str(out)).samples == sf.info(str(SPEECH)).frames
    r = CliRunner().invoke(app, ["info", str(a)])
    assert r.exit_code == 0 and "effort: 1" in r.output
    r = CliRunner().invoke(app, ["encode", str(SPEECH), str(tmp_path / "x.ncd"), "-m", str(TINY_MODEL), "--effort", "9"])
    assert r.exit_code == 2 and "effort 9" in r.output
    with pytest.raises(ValueError):
        effort_steps(-1)


def _new_encoder(tmp_path, decodes=()):
    """The tiny model with its encoder changed (as an encoder fine-tune would), decoder and tables the same."""
    state, info = read_model(TINY_MODEL)
    state = {k: v.clone() for k, v in state.items()}
    name = next(k for k in state if k.startswith("encoder.") and state[k].is_floating_point())
    state[name] = state[name] * 1.01
    path = tmp_path / "new-encoder.safetensors"
    save_model(path, state, info.config, name="tiny-new-encoder", dtype=torch.float16, entropy=info.entropy,
               decodes=decodes)
    return load_model(path, device="cpu"), info


def test_a_file_from_a_new_encoder_decodes_with_a_decoder_that_never_saw_it(model, tmp_path):
    new, _ = _new_encoder(tmp_path)
    assert new.identity.decoder_sha256 == model.identity.decoder_sha256
    assert new.weights_sha256 != model.weights_sha256
    ncd = tmp_path / "new.ncd"
    new.encode_file(str(SPEECH), str(ncd), kbps=2.4)
    old_out, new_out = tmp_path / "old.wav", tmp_path / "new.wav"
    model.decode_file(str(ncd), str(old_out))
    new.decode_file(str(ncd), str(new_out))
    assert np.array_equal(sf.read(old_out)[0], sf.read(new_out)[0])


def test_files_naming_an_earlier_release_decode_when_the_release_says_so(model, tmp_path):
    """A 2.0 golden file names every weight of the tiny model; a checkpoint with another encoder decodes it only
    when it lists the tiny model's weights among those it `decodes` (its release checked the decoder is the same)."""
    golden = GOLDEN / "v2.0-speech-16k-2q.ncd"
    want = tmp_path / "want.wav"
    model.decode_file(str(golden), str(want))
    bare, info = _new_encoder(tmp_path)
    with pytest.raises(FormatError, match="made by model"):
        bare.decode_file(str(golden), str(tmp_path / "x.wav"))
    release, _ = _new_encoder(tmp_path, decodes=(info.weights_sha256,))
    got = tmp_path / "got.wav"
    release.decode_file(str(golden), str(got))
    assert np.array_equal(sf.read(want)[0], sf.read(got)[0])
