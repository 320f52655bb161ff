"""The causal model (`examples/causal.toml`): no frame depends on later input, windowed inference still equals one
pass, it starts from the default model's weights, a tiny one trains on the CPU, and the command line runs it."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from neurocodec.config import load_config
from neurocodec.model import Codec
from neurocodec.model.codec import TorchNet
from neurocodec.stream import decode_audio, encode_audio
from neurocodec.train.state import same_parameters
from neurocodec.train.trainer import Trainer
from .conftest import ROOT
from .test_train import tiny


def causal(model):
    return dataclasses.replace(model, encoder=dataclasses.replace(model.encoder, causal=True),
                               decoder=dataclasses.replace(model.decoder, causal=True))


@pytest.fixture(scope="module")
def codec():
    torch.manual_seed(0)
    return Codec(causal(tiny().model)).eval()


def test_an_encoder_frame_does_not_depend_on_later_audio(codec):
    hop = codec.hop_length
    audio = torch.randn(1, 1, 40 * hop) * 0.1
    later = audio.clone()
    f = 17
    later[..., (f + 1) * hop:] = torch.randn_like(later[..., (f + 1) * hop:])
    with torch.no_grad():
        a, b = codec.encoder(audio), codec.encoder(later)
    torch.testing.assert_close(a[..., : f + 1], b[..., : f + 1])
    assert not torch.allclose(a[..., f + 1:], b[..., f + 1:])


def test_a_decoded_sample_waits_only_for_the_synthesis_overlap(codec):
    """Latent frames after f change nothing before sample (f + 1) · hop - (n_fft - hop)."""
    hop, n_fft = codec.hop_length, codec.decoder.n_fft
    latent = torch.randn(1, codec.cfg.latent_dim, 40)
    later = latent.clone()
    f = 20
    later[..., f + 1:] = torch.randn_like(later[..., f + 1:])
    with torch.no_grad():
        a, b = codec.decoder(latent), codec.decoder(later)
    final = (f + 1) * hop - (n_fft - hop)
    torch.testing.assert_close(a[..., :final], b[..., :final])
    assert not torch.allclose(a[..., final: (f + 1) * hop], b[..., final: (f + 1) * hop])


def test_windowed_inference_equals_one_pass_for_a_causal_model(codec, speech):
    audio, sr = speech
    codec.prepare_for_inference()
    net = TorchNet(codec)
    x = audio[:, : 3 * sr]
    one = encode_audio(net, x, sr, 4, window_frames=10**6)
    windowed = encode_audio(net, x, sr, 4, window_frames=37)
    assert (one.codes == windowed.codes).mean() > 0.999
    y_one = decode_audio(net, one, window_frames=10**6)
    y_win = decode_audio(net, one, window_frames=29)
    np.testing.assert_allclose(y_win, y_one, atol=2e-5)


@pytest.mark.parametrize("name", ["causal", "causal-gpu"])
def test_the_causal_configs_take_the_default_models_weights(name):
    cfg = load_config(ROOT / "examples" / f"{name}.toml")
    assert cfg.model.encoder.causal and cfg.model.decoder.causal
    default = load_config(ROOT / "examples" / "default.toml").model
    assert same_parameters(Codec(cfg.model), Codec(default).state_dict())


def test_a_tiny_causal_model_trains_on_the_cpu_and_runs_from_the_command_line(tmp_path, speech):
    import soundfile as sf
    from typer.testing import CliRunner

    from neurocodec.cli import app

    cfg = tiny(eval_every=4, checkpoint_every=4, log_every=1, gan_start_step=2)
    cfg = dataclasses.replace(cfg, model=causal(cfg.model))
    events = []
    Trainer(cfg, tmp_path / "run", on_event=events.append).run(8)
    steps = [e for e in events if e["type"] == "step"]
    assert len(steps) == 8 and all(np.isfinite(e["loss"]) for e in steps)
    model = tmp_path / "run" / "generator.safetensors"
    audio, sr = speech
    sf.write(tmp_path / "in.wav", audio[0, :sr], sr)
    for args in (["encode", "-m", str(model), str(tmp_path / "in.wav"), str(tmp_path / "a.ncd")],
                 ["decode", "-m", str(model), str(tmp_path / "a.ncd"), str(tmp_path / "out.wav")]):
        result = CliRunner().invoke(app, args)
        assert result.exit_code == 0, result.output
    assert sf.info(str(tmp_path / "out.wav")).frames == sr


def test_a_causal_model_codes_live_without_look_ahead(codec, speech):
    """Live, a causal encoder waits for no frame after a segment: the first segment's codes leave as soon as it
    (and one sample more) is in."""
    from neurocodec.live import LiveEncoder

    codec.prepare_for_inference()
    net = TorchNet(codec)
    assert net.encoder_lookahead == 0
    audio, sr = speech
    x = audio[:, : 2 * sr]
    enc = LiveEncoder(net, sr, 1, 4, loop=False)
    assert enc.lookahead == 0
    blocks = [enc.push(x[:, s: s + 160]) for s in range(0, x.shape[-1], 160)]
    assert sum(len(b) for b in blocks[: int(0.2 * sr) // 160 + 1]) == 1  # the first segment, as soon as it is in
