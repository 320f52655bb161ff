"""The GPU fast path on the CPU: bf16 autocast against fp32, host synchronisation every N steps, device-resident
crops, torch.compile's fallback. Tiny config, fixed seeds."""

from __future__ import annotations

import copy
import dataclasses

import numpy as np
import pytest
import soundfile as sf
import torch

from neurocodec.config import load_config
from neurocodec.model import Codec
from neurocodec.train.data import CropDataset, ResidentCrops
from neurocodec.train.discriminators import Discriminator
from neurocodec.train.step import TrainStep
from neurocodec.train.trainer import Trainer
from .conftest import DATA, ROOT



def tiny(**train):
    cfg = load_config(ROOT / "examples" / "tiny.toml")
    data = dataclasses.replace(cfg.data, train=(str(DATA),), valid=(str(DATA),), valid_clips=1)
    quantizer = dataclasses.replace(cfg.model.quantizer, dropout=0.0)
    return dataclasses.replace(cfg, data=data, model=dataclasses.replace(cfg.model, quantizer=quantizer),
                               train=dataclasses.replace(cfg.train, **train))


def _terms_and_grad(cfg, codec, disc, audio):
    step = TrainStep(cfg, codec, disc, torch.device("cpu"))
    torch.manual_seed(1)
    with step._autocast():
        out = codec(audio)
    terms = step.terms(audio, out, gan_on=True)
    loss = sum(step.weights[k] * v for k, v in terms.items() if step.weights[k])
    loss.backward()
    grad = torch.cat([p.grad.flatten() for p in codec.parameters() if p.grad is not None])
    return {k: float(v.detach()) for k, v in terms.items()}, grad


def test_bf16_losses_match_fp32_and_its_gradient_error_is_below_batch_noise(speech):
    """Stated tolerance: every loss term within 2% of fp32; the gradient's relative error under bf16 smaller than
    the relative difference between the fp32 gradients of two batches (the noise SGD lives with anyway). Measured
    here: terms within 1%, gradient error about half the batch-to-batch difference."""
    cfg = tiny()
    torch.manual_seed(0)
    codec, disc = Codec(cfg.model), Discriminator(cfg.discriminator)
    clips = torch.from_numpy(speech[0][0, : 8 * 6000].reshape(8, 1, 6000).copy())  # 8 clips of real speech
    a, b = clips[:4], clips[4:]
    ref_terms, ref = _terms_and_grad(cfg, copy.deepcopy(codec), copy.deepcopy(disc), a)
    bf16 = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, precision="bf16"))
    fast_terms, fast = _terms_and_grad(bf16, copy.deepcopy(codec), copy.deepcopy(disc), a)
    _, other_batch = _terms_and_grad(cfg, copy.deepcopy(codec), copy.deepcopy(disc), b)
    for name, value in ref_terms.items():
        assert fast_terms[name] == pytest.approx(value, rel=0.02, abs=1e-4), name
    bf16_error = float((fast - ref).norm() / ref.norm())
    batch_noise = float((other_batch - ref).norm() / ref.norm())
    assert 0 < bf16_error < batch_noise, (bf16_error, batch_noise)


def test_synchronising_every_n_steps_trains_the_same_weights(tmp_path):
    cfg = tiny(eval_every=100, checkpoint_every=100, log_every=4, gan_start_step=2)
    every = Trainer(cfg, tmp_path / "a")
    every.run(4)
    lazy = Trainer(dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, sync_every=4)), tmp_path / "b")
    events = []
    lazy.on_event = events.append
    lazy.run(4)
    for k, v in every.codec.state_dict().items():
        assert torch.equal(lazy.codec.state_dict()[k], v), k
    assert [e["step"] for e in events if e["type"] == "step"] == [4]


def _first_update(cfg, speech):
    """The largest weight change of one generator + discriminator update from fixed weights, and the optimiser's
    rate afterwards."""
    torch.manual_seed(0)
    codec, disc = Codec(cfg.model), Discriminator(cfg.discriminator)
    before = [p.detach().clone() for p in codec.parameters()]
    step = TrainStep(cfg, codec, disc, torch.device("cpu"))
    audio = torch.from_numpy(speech[0][0, : 4 * 6000].reshape(4, 1, 6000).copy())
    torch.manual_seed(1)
    step(audio, 0, gan_on=True)
    moved = max(float((p.detach() - b).abs().max()) for p, b in zip(codec.parameters(), before))
    return moved, step.opt_g.param_groups[0]["lr"], step.sched_g.get_last_lr()[0]


def test_warmup_scales_the_first_steps_and_leaves_the_schedule_alone(speech):
    """A fresh Adam's first step moves every weight by about lr (m / sqrt(v) is ±1): warm-up over W steps makes
    step 0 move it by lr / W, and the schedule (ExponentialLR) goes on as without warm-up."""
    plain = tiny(lr=1e-3, lr_decay=0.5)
    warm = tiny(lr=1e-3, lr_decay=0.5, warmup_steps=4)
    moved_plain, lr_plain, sched_plain = _first_update(plain, speech)
    moved_warm, lr_warm, sched_warm = _first_update(warm, speech)
    assert moved_plain == pytest.approx(1e-3, rel=0.05)
    assert moved_warm == pytest.approx(1e-3 / 4, rel=0.05)
    assert lr_warm == lr_plain == sched_warm == sched_plain == pytest.approx(5e-4)


def test_usage_counts_only_the_stages_an_item_used():
    """Quantizer dropout: an item that used i stages counts codes in those stages only (fixed-shape counting)."""
    from neurocodec.model.quantize import VectorQuantizer

    vq = VectorQuantizer(8, 16, 4)
    codes = torch.tensor([[1, 1, 3], [2, 5, 5]])
    vq.count(codes, torch.tensor([[1.0] * 3, [0.0] * 3]))
    vq.count(torch.tensor([[7]]))
    assert vq.usage.tolist() == [0, 2, 0, 1, 0, 0, 0, 1] + [0] * 8


def test_a_nan_is_caught_at_the_next_synchronised_step_and_nothing_is_saved(tmp_path):
    from neurocodec.train.diagnostics import TrainingDiverged

    cfg = tiny(eval_every=100, checkpoint_every=2, log_every=4, sync_every=4)
    trainer = Trainer(cfg, tmp_path / "run")
    trainer.run(4)
    good = (tmp_path / "run" / "state.safetensors").read_bytes()
    with torch.no_grad():
        next(trainer.codec.decoder.parameters()).fill_(float("nan"))
    with pytest.raises(TrainingDiverged, match="step 4: loss or gradient is not finite"):
        trainer.run(8)
    assert (tmp_path / "run" / "state.safetensors").read_bytes() == good


def test_resident_crops_are_deterministic_levelled_and_padded(tmp_path):
    rng = np.random.default_rng(0)
    sf.write(tmp_path / "a.wav", (rng.standard_normal(24000 * 2) * 0.05).astype(np.float32), 24000, subtype="FLOAT")
    sf.write(tmp_path / "short.wav", (rng.standard_normal(2000) * 0.3).astype(np.float32), 24000, subtype="FLOAT")
    cfg = dataclasses.replace(tiny().data, preload=True, resident=True, segment_seconds=0.5, gain_db=6.0,
                              loudness_db=-20.0, mix_probability=0.5)
    crops = ResidentCrops(CropDataset([tmp_path], 24000, cfg), torch.device("cpu"))
    one = crops.batch(0, 5, 0, 64)
    assert one.shape == (64, 1, 12000)
    assert torch.equal(one, crops.batch(0, 5, 0, 64)) and not torch.equal(one, crops.batch(0, 6, 0, 64))
    assert not torch.equal(one, crops.batch(0, 5, 1, 64))  # each rank its own crops
    level = 20 * torch.log10(one.pow(2).mean(-1).sqrt())
    assert float(level.min()) > -26.01 and float(level.max()) < -13.99
    assert float(one.abs().max()) <= 0.99 + 1e-6
    # The short file comes out zero-padded (its crops end in exact zeros), never read past its end.
    padded = (one[..., -8000:] == 0).all(-1).sum()
    assert int(padded) > 0


def test_compile_failure_falls_back_to_eager_and_says_so(tmp_path, monkeypatch):
    def broken(module, **kwargs):
        raise RuntimeError("no compiler here")

    monkeypatch.setattr(torch, "compile", broken)
    cfg = tiny(eval_every=100, checkpoint_every=100, log_every=2, compile=True, gan_start_step=0)
    events = []
    Trainer(cfg, tmp_path / "run", on_event=events.append).run(2)
    step = [e for e in events if e["type"] == "step"][-1]
    assert any("torch.compile unavailable" in n for n in step["notes"])


def test_shared_spectra_give_the_same_losses(speech):
    """The step computes each window's STFT once for the mel, magnitude, level and complex terms: same values as
    each loss computing its own."""
    from neurocodec.train.losses import ComplexSTFTLoss, MultiResolutionSTFTLoss, MultiScaleMelLoss, Spectra

    ref = torch.from_numpy(speech[0][:, :16000].copy())[None]
    est = ref * 0.7 + 0.01 * torch.randn_like(ref)
    windows = (32, 64, 128, 256, 512, 1024, 2048)
    mel = MultiScaleMelLoss(16000, windows, (5, 10, 20, 40, 80, 160, 320))
    spectra = Spectra(ref.flatten(0, 1), est.flatten(0, 1))
    assert all(torch.equal(a, b) for a, b in zip(mel(ref, est, spectra), mel(ref, est)))
    for loss in (ComplexSTFTLoss(), MultiResolutionSTFTLoss()):
        assert torch.equal(loss(ref, est, spectra), loss(ref, est))
    assert set(spectra._cache) == set(windows)  # 512, 1024, 2048 computed once for all three losses


def test_packed_state_travels_in_small_shards_and_the_run_continues(tmp_path):
    """A run's whole state (discriminators, AdamW moments, schedule, step) in shards of at most 1 MiB here (16 MiB
    for a lent machine), unpacked into a new folder, resumes: same step and schedule, weights within fp16, first
    moments within their int8 step, second moments within 5% where not tiny."""
    from safetensors.torch import load_file

    from tools.travel import pack, unpack

    cfg = tiny(eval_every=100, checkpoint_every=3, log_every=1, gan_start_step=0)
    Trainer(cfg, tmp_path / "a").run(3)
    shards = pack(tmp_path / "a", tmp_path / "out" / "state", shard_bytes=2 << 20)
    assert len(shards) >= 2 and all(p.stat().st_size <= 2 << 20 for p in shards)
    packed_size = sum(p.stat().st_size for p in shards)
    assert packed_size < 0.5 * (tmp_path / "a" / "state.safetensors").stat().st_size
    unpack(shards, tmp_path / "b")
    before, after = load_file(str(tmp_path / "a" / "state.safetensors")), load_file(str(tmp_path / "b" / "state.safetensors"))
    assert before.keys() == after.keys()
    for name, t in before.items():
        u = after[name]
        assert u.dtype == t.dtype and u.shape == t.shape, name
        if name.endswith(".exp_avg"):
            assert float((u - t).abs().max()) <= float(t.abs().max()) / 127 + 1e-12, name
        elif name.endswith(".exp_avg_sq"):
            big = t > t.max() * 1e-6
            assert torch.all((u[big] / t[big] - 1).abs() < 0.05), name
            assert torch.equal(u == 0, t == 0), name
        elif t.is_floating_point() and name.startswith(("generator.", "discriminator.")) and t.numel() > 1:
            assert torch.allclose(u, t.half().float()), name
        else:
            assert torch.equal(u, t), name
    resumed = Trainer(cfg, tmp_path / "b", resume=True)
    assert resumed.step == 3 and resumed.config_changes == []
    assert resumed.update.sched_g.get_last_lr() == Trainer(cfg, tmp_path / "a", resume=True).update.sched_g.get_last_lr()
    record = resumed.run(4)
    assert record["step"] == 4
