import dataclasses

import pytest
import torch

from neurocodec.config import (
    ConvDecoderConfig,
    ConvEncoderConfig,
    ISTFTDecoderConfig,
    ModelConfig,
    QuantizerConfig,
    STFTEncoderConfig,
)
from neurocodec.model import Codec
from neurocodec.model.layers import Snake1d

Q = QuantizerConfig(n_q=4, codebook_size=32, codebook_dim=4)
CONFIGS = {
    "conv-even": ModelConfig(hop_length=8, latent_dim=8, quantizer=Q,
                             encoder=ConvEncoderConfig(channels=4, strides=(2, 4)),
                             decoder=ConvDecoderConfig(channels=16, strides=(4, 2))),
    "conv-odd": ModelConfig(hop_length=15, latent_dim=8, quantizer=Q,
                            encoder=ConvEncoderConfig(channels=4, strides=(3, 5)),
                            decoder=ConvDecoderConfig(channels=16, strides=(5, 3))),
    "stft-istft": ModelConfig(hop_length=40, latent_dim=8, quantizer=Q,
                              encoder=STFTEncoderConfig(n_fft=160, dim=16, n_blocks=1),
                              decoder=ISTFTDecoderConfig(n_fft=160, dim=16, n_blocks=1, intermediate_dim=32)),
    "conv-istft": ModelConfig(hop_length=20, latent_dim=8, quantizer=Q,
                              encoder=ConvEncoderConfig(channels=4, strides=(4, 5)),
                              decoder=ISTFTDecoderConfig(n_fft=80, dim=16, n_blocks=1, intermediate_dim=32)),
    "conv-istft-ref": ModelConfig(hop_length=30, latent_dim=8, quantizer=Q,
                                  encoder=ConvEncoderConfig(channels=4, strides=(5, 6)),
                                  decoder=ISTFTDecoderConfig(n_fft=160, dim=16, n_blocks=1, intermediate_dim=32,
                                                             phase_reference=True)),
}


@pytest.mark.parametrize("name", CONFIGS)
@pytest.mark.parametrize("length", [1, 239, 240, 1001])
def test_shapes_and_strides(name, length):
    cfg = CONFIGS[name]
    codec = Codec(cfg)
    out = codec(torch.randn(3, 1, length))
    frames = -(-length // cfg.hop_length)
    assert out.audio.shape == (3, 1, length)
    assert out.codes.shape == (3, cfg.quantizer.n_q, frames)
    assert out.latent.shape == (3, cfg.latent_dim, frames)
    assert out.codes.dtype == torch.long and int(out.codes.max()) < cfg.quantizer.codebook_size
    codec.eval()
    codes = codec.encode(torch.randn(2, 1, length), n_q=2)
    assert codes.shape == (2, 2, frames)
    assert codec.decode(codes).shape == (2, 1, frames * cfg.hop_length)


def test_snake_is_identity_plus_periodic_term():
    snake = Snake1d(3)
    with torch.no_grad():
        snake.alpha.copy_(torch.tensor([1.0, 2.0, 0.5]).view(1, 3, 1))
    x = torch.linspace(-3, 3, 50).expand(1, 3, 50)
    alpha = snake.alpha
    assert torch.allclose(snake(x), x + torch.sin(alpha * x) ** 2 / alpha, atol=1e-6)


@pytest.mark.parametrize("name", ["conv-even", "stft-istft"])
def test_gradient_reaches_encoder_through_quantizer(name):
    codec = Codec(CONFIGS[name])
    out = codec(torch.randn(2, 1, 400))
    out.audio.pow(2).mean().backward()
    first = next(codec.encoder.parameters())
    assert first.grad is not None and first.grad.abs().sum() > 0
    # The codebook learns only through the codebook loss (straight-through), not the reconstruction.
    assert codec.quantizer.quantizers[0].codebook.weight.grad is None


def test_codebook_and_commitment_losses_have_gradients():
    codec = Codec(CONFIGS["conv-even"])
    out = codec(torch.randn(2, 1, 400))
    (out.commitment_loss + out.codebook_loss).backward()
    assert codec.quantizer.quantizers[0].codebook.weight.grad.abs().sum() > 0
    assert next(codec.encoder.parameters()).grad.abs().sum() > 0


def test_quantizer_dropout_uses_random_number_of_codebooks():
    cfg = dataclasses.replace(CONFIGS["conv-even"].quantizer, dropout=1.0)
    codec = Codec(dataclasses.replace(CONFIGS["conv-even"], quantizer=cfg))
    rvq = codec.quantizer.train()
    z = torch.randn(64, 8, 10)
    out = rvq(z)
    counts = out.n_q_per_item
    assert counts.min() >= 1 and counts.max() <= 4 and len(set(counts.tolist())) > 1
    rvq.eval()
    with torch.no_grad():
        for i in range(64):
            n = int(counts[i])
            expected = rvq.decode(out.codes[i : i + 1, :n])
            assert torch.allclose(out.latent[i : i + 1], expected, atol=1e-5), i


def test_explicit_n_q_and_no_dropout_in_eval():
    codec = Codec(CONFIGS["conv-even"])
    rvq = codec.quantizer.train()
    out = rvq(torch.randn(16, 8, 10), n_q=2)
    assert out.codes.shape[1] == 2 and bool((out.n_q_per_item == 2).all())
    rvq.eval()
    assert bool((rvq(torch.randn(16, 8, 10)).n_q_per_item == 4).all())
    with pytest.raises(ValueError, match="n_q"):
        rvq.encode(torch.randn(1, 8, 3), n_q=5)


def test_usage_counts_and_dead_code_reseeding():
    codec = Codec(CONFIGS["conv-even"]).train()
    codec(torch.randn(4, 1, 400))
    vq = codec.quantizer.quantizers[0]
    assert vq.usage.sum() == 4 * 50  # one count per frame of every item that used stage 0
    before = vq.codebook.weight.clone()
    dead = int((vq.usage < 1).sum())
    assert dead > 0  # with this seed, random init leaves some of the 32 codes unused
    # 200 counts for 32 codes: too little evidence to call anything dead at 16 per code; counting goes on.
    assert vq.dead_codes(threshold=1) is None and vq.reseed_dead_codes(threshold=1) == 0
    assert torch.equal(vq.codebook.weight, before) and vq.usage.sum() == 4 * 50
    usage = vq.usage.clone()
    # Re-seeding off (a rate-term run): the same codes are dead, none is replaced, the counting restarts.
    assert int(len(vq.dead_codes(threshold=1, min_per_code=4))) == dead
    assert vq.reseed_dead_codes(threshold=1, min_per_code=4, replace=False) == 0
    assert torch.equal(vq.codebook.weight, before) and vq.usage.sum() == 0
    vq.usage.copy_(usage)
    assert vq.reseed_dead_codes(threshold=1, min_per_code=4) == dead
    changed = (vq.codebook.weight != before).any(dim=1)
    assert int(changed.sum()) == dead and vq.usage.sum() == 0


@pytest.mark.parametrize("name", ["conv-odd", "stft-istft", "conv-istft", "conv-istft-ref"])
def test_windowed_equals_one_pass(name):
    codec = Codec(CONFIGS[name]).prepare_for_inference()
    hop = codec.hop_length
    audio = torch.randn(2, 1, hop * 301 + 7) * 0.3
    with torch.inference_mode():
        whole_codes = codec.encode_frames(audio, 4)
        whole_audio = codec.decode_frames(whole_codes)
    for window in (5, 33, 1000):
        codes = codec.encode(audio, 4, window_frames=window)
        assert torch.equal(codes, whole_codes), window
        out = codec.decode(whole_codes, window_frames=window)
        assert out.shape == whole_audio.shape
        assert torch.allclose(out, whole_audio, atol=1e-5), (window, (out - whole_audio).abs().max())


@pytest.mark.parametrize("reference", [False, True])
def test_phase_reference_turns_a_repeated_frame_into_a_tone(reference):
    """The same spectrum in every frame: a buzz at the frame rate without the reference, a steady tone with it."""
    sr, hop, n_fft, k = 24000, 320, 1280, 53  # bin 53 = 993.75 Hz, not a multiple of the 75 Hz frame rate
    cfg = ModelConfig(sample_rate=sr, hop_length=hop, latent_dim=8, quantizer=Q, encoder=STFTEncoderConfig(n_fft=n_fft),
                      decoder=ISTFTDecoderConfig(n_fft=n_fft, dim=16, n_blocks=1, intermediate_dim=32,
                                                 phase_reference=reference))
    decoder = Codec(cfg).decoder
    frames = 300
    phase = torch.zeros(1, n_fft // 2 + 1, frames)
    if reference:
        phase = phase + decoder.reference_phase(0, frames)
    mag = torch.zeros_like(phase)
    mag[:, k] = 1.0
    y = decoder._istft(torch.polar(mag, phase))[0, 0, 2 * n_fft: -2 * n_fft].double()
    power = torch.fft.rfft(y * torch.hann_window(len(y), dtype=torch.float64)).abs().square()
    freqs = torch.fft.rfftfreq(len(y), 1 / sr)
    near_tone = power[(freqs - k * sr / n_fft).abs() < 5].sum() / power.sum()
    if reference:
        assert near_tone > 0.99
    else:
        assert near_tone < 0.5  # spread over multiples of 75 Hz
        comb = power[((freqs / 75) - (freqs / 75).round()).abs() * 75 < 2].sum() / power.sum()
        assert comb > 0.9


def test_reference_phase_is_exact_far_into_a_file():
    cfg = dataclasses.replace(CONFIGS["stft-istft"], decoder=ISTFTDecoderConfig(
        n_fft=160, dim=16, n_blocks=1, intermediate_dim=32, phase_reference=True))
    decoder = Codec(cfg).decoder
    far = decoder.reference_phase(10**9, 4)  # ~150 days of frames at 75 Hz
    near = decoder.reference_phase(10**9 % 4, 4)  # hop = n_fft / 4: the reference repeats every 4 frames
    assert torch.equal(far, near)
    assert torch.allclose(decoder.reference_phase(0, 2)[:, 1], (torch.arange(81) % 4) * (torch.pi / 2))  # π·k/2


def test_too_little_context_would_show_seams():
    """The equality above depends on the context; without it window edges differ (the test can fail)."""
    codec = Codec(CONFIGS["stft-istft"]).prepare_for_inference()
    codes = torch.randint(0, 32, (1, 4, 200))
    whole = codec.decode(codes, window_frames=1000)
    codec.decoder.context_frames = 1
    assert not torch.allclose(codec.decode(codes, window_frames=20), whole, atol=1e-5)


def test_weight_norm_folding_keeps_output():
    codec = Codec(CONFIGS["conv-even"]).eval()
    audio = torch.randn(1, 1, 800)
    with torch.no_grad():
        before = codec.decode_frames(codec.encode_frames(audio, 4))
    codec.prepare_for_inference()
    with torch.inference_mode():
        after = codec.decode_frames(codec.encode_frames(audio, 4))
    assert torch.allclose(before, after, atol=1e-5)
    assert not any("parametrizations" in k for k in codec.state_dict())


def _rate_quantizer(temperature: float = 0.02):
    rvq = Codec(CONFIGS["conv-even"]).quantizer.train()
    rvq.rate_temperature = temperature
    return rvq


def test_rate_is_off_unless_asked():
    rvq = Codec(CONFIGS["conv-even"]).quantizer.train()
    assert float(rvq(torch.randn(4, 8, 10)).rate) == 0.0


def test_rate_at_low_temperature_is_what_the_frequencies_price_the_codes_at():
    """Soft assignment at a tiny temperature is the nearest code: the rate is the hard codes' mean cost in bits
    under the running frequencies (with dropout off, every item uses every stage)."""
    torch.manual_seed(0)
    rvq = _rate_quantizer(1e-5).eval()  # eval: the forward does not count these codes
    for vq in rvq.quantizers:
        vq.frequencies.copy_(torch.rand(32) * 10 + 0.1)
    out = rvq(torch.randn(6, 8, 10))
    expected = torch.stack([-torch.log2(vq.frequencies / vq.frequencies.sum())[out.codes[:, i]].mean()
                            for i, vq in enumerate(rvq.quantizers)]).mean()
    assert float(out.rate.detach()) == pytest.approx(float(expected), rel=1e-4)


def test_rate_gradient_moves_codes_towards_frequent_ones():
    """Its gradient reaches encoder outputs and codebooks, and a step down it makes the frequent code more likely."""
    torch.manual_seed(0)
    rvq = _rate_quantizer(0.5).eval()
    vq = rvq.quantizers[0]
    vq.frequencies.fill_(1.0)
    vq.frequencies[3] = 1000.0
    z = torch.randn(8, 8, 20, requires_grad=True)
    out = rvq(z, n_q=1)
    out.rate.backward()
    assert vq.codebook.weight.grad.abs().sum() > 0 and z.grad.abs().sum() > 0
    with torch.no_grad():
        before = float((rvq(z, n_q=1).codes == 3).float().mean())
        after = float((rvq(z - 20.0 * z.grad, n_q=1).codes == 3).float().mean())
        assert float(rvq(z - 20.0 * z.grad, n_q=1).rate) < float(out.rate)
    assert after > before


def test_training_counts_decay_into_the_rate_frequencies():
    rvq = _rate_quantizer()
    vq = rvq.quantizers[0]
    out = rvq(torch.randn(4, 8, 10))
    used = torch.bincount(out.codes[:, 0].flatten(), minlength=32).float()
    assert torch.allclose(vq.frequencies, torch.ones(32) * 0.998 + used)
