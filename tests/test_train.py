"""Training: discriminators, health alarms, exact resume, DDP, the CLI, and (slow) an overfit run."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf
import torch

from neurocodec.config import DiscriminatorConfig, load_config
from neurocodec.train.diagnostics import HealthMonitor
from neurocodec.train.discriminators import Discriminator, discriminator_loss, feature_matching_loss
from neurocodec.train.trainer import Trainer
from .conftest import DATA, ROOT, free_port



def tiny(tmp_path=None, **train):
    cfg = load_config(ROOT / "examples" / "tiny.toml")
    data = dataclasses.replace(cfg.data, train=(str(DATA),), valid=(str(DATA),), valid_clips=1)
    return dataclasses.replace(cfg, data=data, train=dataclasses.replace(cfg.train, **train))


def test_discriminator_shapes():
    cfg = DiscriminatorConfig(periods=(2, 3), mpd_channels=(4, 8, 8, 8, 8), stft_windows=(256, 128), stft_channels=4)
    disc = Discriminator(cfg)
    out = disc(torch.randn(2, 1, 4000))
    assert len(out) == 4
    for period, feats in zip((2, 3), out[:2]):
        assert len(feats) == 6
        assert feats[-1].shape[0] == 2 and feats[-1].shape[1] == 1 and feats[-1].shape[-1] == period
    for window, feats in zip((256, 128), out[2:]):
        assert len(feats) == 5 * 5 + 1  # five conv layers per band, five bands, then the score map
        assert feats[-1].shape[:2] == (2, 1)
        assert feats[-1].shape[2] == 4000 // (window // 4) + 1  # one score row per STFT frame


def test_discriminator_loss_decreases_on_a_fixed_batch(speech):
    torch.manual_seed(0)
    cfg = DiscriminatorConfig(periods=(2, 3), mpd_channels=(8, 16, 16, 16, 16), stft_windows=(512,), stft_channels=8)
    disc = Discriminator(cfg)
    opt = torch.optim.Adam(disc.parameters(), 1e-3)
    real = torch.from_numpy(speech[0][:, :8000])[None].repeat(2, 1, 1)
    fake = real + 0.05 * torch.randn_like(real)
    losses = []
    for _ in range(25):
        loss = discriminator_loss(disc(real), disc(fake))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.5 * losses[0]
    assert float(feature_matching_loss(disc(real), disc(real)).detach()) == 0.0


def test_health_monitor_alarms():
    cfg = tiny().train
    mon = HealthMonitor(cfg, codebook_size=64)
    ok = {"rms_ratio@4": 1.0, "snr@4": 5.0, "dead_codes": [3, 4]}
    assert mon.check(dict(ok)) == []
    assert any("RMS ratio 0.30" in a for a in mon.check({**ok, "rms_ratio@4": 0.3}))
    assert any("codebook 1: 40/64" in a for a in mon.check({**ok, "dead_codes": [3, 40]}))
    assert mon.check({**ok, "dead_codes": [None, None]}) == []  # too few counts to judge: no alarm
    assert any("non-finite" in a for a in mon.check({**ok, "snr@4": float("nan")}))
    mon = HealthMonitor(cfg, codebook_size=64)
    alarms = [mon.check({**ok, "snr@4": v}) for v in (5.0, 4.0, 3.0, 2.0)]
    assert alarms[2] == [] and any("SNR fell" in a for a in alarms[3])


def test_collapse_alarm_fires_on_a_random_filterbank_run_and_not_on_a_healthy_one(tmp_path):
    """The user's bug, injected: a noise "mel" filterbank. Same model, data and steps with librosa's filters as the
    control: at step 40 the broken run's output level sits near 0.35 of the input (alarm), the healthy one's near
    0.6 (no alarm), and the true mel distance tells them apart too."""
    last = {}
    for filterbank in ("librosa", "random"):
        cfg = tiny(eval_every=20, checkpoint_every=100, log_every=20)
        cfg = dataclasses.replace(cfg, loss=dataclasses.replace(
            cfg.loss, mel_filterbank=filterbank, magnitude=0.0, complex_stft=0.0, adversarial=0.0,
            feature_matching=0.0))
        events = []
        Trainer(cfg, tmp_path / filterbank, on_event=events.append).run(40)
        last[filterbank] = [e for e in events if e["type"] == "eval"][-1]
    assert any("RMS ratio" in a for a in last["random"]["alarms"]), last["random"]
    assert not any("RMS ratio" in a for a in last["librosa"]["alarms"]), last["librosa"]
    assert last["random"]["mel_distance@4"] > 1.2 * last["librosa"]["mel_distance@4"]
    log = [json.loads(line) for line in (tmp_path / "random" / "log.jsonl").read_text().splitlines()]
    assert any(r.get("alarms") for r in log)


@pytest.mark.parametrize("rate", [0.0, 1.0])
def test_resume_replays_the_same_trajectory(tmp_path, rate):
    """With the rate term on, its running code frequencies travel in the state too."""
    cfg = tiny(eval_every=3, checkpoint_every=3, log_every=1, gan_start_step=2)
    cfg = dataclasses.replace(cfg, loss=dataclasses.replace(cfg.loss, rate=rate))
    full, parts = [], []
    Trainer(cfg, tmp_path / "a", on_event=full.append).run(6)
    Trainer(cfg, tmp_path / "b", on_event=parts.append).run(3)
    Trainer(cfg, tmp_path / "b", resume=True, on_event=parts.append).run(6)
    losses = lambda ev: [(e["step"], e["loss"], e.get("loss_d")) for e in ev if e["type"] == "step"]
    assert losses(full) == losses(parts)
    assert [k for k in losses(full)][-1][0] == 6


def test_nan_stops_cleanly_and_keeps_the_last_good_checkpoint(tmp_path):
    from neurocodec.train.diagnostics import TrainingDiverged

    cfg = tiny(eval_every=100, checkpoint_every=2, log_every=1)
    trainer = Trainer(cfg, tmp_path / "run")
    trainer.run(2)
    good = (tmp_path / "run" / "state.safetensors").read_bytes()
    with torch.no_grad():
        next(trainer.codec.decoder.parameters()).fill_(float("nan"))
    with pytest.raises(TrainingDiverged, match="not finite"):
        trainer.run(4)
    assert (tmp_path / "run" / "state.safetensors").read_bytes() == good
    assert json.loads((tmp_path / "run" / "log.jsonl").read_text().splitlines()[-1])["type"] == "stopped"


def test_ddp_two_gloo_processes(tmp_path):
    cfg_path = tmp_path / "tiny.toml"
    text = (ROOT / "examples" / "tiny.toml").read_text()
    text = text.replace("[data]", f'[data]\ntrain = ["{DATA}"]\nvalid = ["{DATA}"]', 1)
    text = text.replace("eval_every = 20", "eval_every = 2").replace("checkpoint_every = 20", "checkpoint_every = 2")
    cfg_path.write_text(text)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(free_port()),
         "-m", "neurocodec.cli", "train", str(cfg_path), "--run-dir", str(tmp_path / "run"), "--steps", "2",
         "--quiet", "--threads", "1"],
        capture_output=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr.decode()[-2000:]
    log = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert log[0]["world_size"] == 2
    assert any(r["type"] == "eval" for r in log) and log[-1]["type"] == "done"
    # A time limit must stop both ranks at the same step (a lone rank would hang in its next all-reduce).
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(free_port()),
         "-m", "neurocodec.cli", "train", str(cfg_path), "--run-dir", str(tmp_path / "run"), "--resume",
         "--steps", "100000", "--minutes", "0.05", "--quiet", "--threads", "1"],
        capture_output=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr.decode()[-2000:]
    log = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert log[-1]["type"] == "done" and 2 < log[-1]["step"] < 100000


def test_train_cli_quiet_resume_and_plot(tmp_path):
    from typer.testing import CliRunner

    from neurocodec.cli import app

    cfg_path = tmp_path / "tiny.toml"
    text = (ROOT / "examples" / "tiny.toml").read_text()
    cfg_path.write_text(text.replace("[data]", f'[data]\ntrain = ["{DATA}"]\nvalid = ["{DATA}"]', 1))
    run = tmp_path / "run"
    r = CliRunner().invoke(app, ["train", str(cfg_path), "--run-dir", str(run), "--steps", "5", "--quiet"])
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(app, ["train", str(cfg_path), "--run-dir", str(run), "--steps", "5"])
    assert r.exit_code != 0 and "--resume" in r.output
    r = CliRunner().invoke(app, ["train", "--resume", "--run-dir", str(run), "--steps", "10", "--quiet"])
    assert r.exit_code == 0, r.output
    steps = [json.loads(x)["step"] for x in (run / "log.jsonl").read_text().splitlines()]
    assert max(steps) == 10
    r = CliRunner().invoke(app, ["train", "--plot", str(run)])
    assert r.exit_code == 0, r.output
    assert (run / "curves.png").stat().st_size > 10_000
    bad = tmp_path / "bad.toml"
    bad.write_text("[train]\nlearning_rate = 1\n")
    r = CliRunner().invoke(app, ["train", str(bad)])
    assert r.exit_code == 2 and "unknown key 'learning_rate'" in r.output


@pytest.mark.slow
def test_overfit_one_real_clip(tmp_path, speech):
    """Healthy training on one fixed second of real speech reaches SNR ≥ 10 dB with the level held (RMS 0.9-1.1).

    Every batch is that same second (crop = clip), so this checks that the whole path (losses, quantizer,
    optimiser, decoder) can fit a waveform, not that the model generalises."""
    audio, sr = speech
    clip = tmp_path / "clip.wav"
    sf.write(clip, audio[0, sr: 2 * sr], sr)
    cfg = tiny(eval_every=250, checkpoint_every=10_000, log_every=50, lr=3e-3, gan_start_step=10_000, batch_size=2)
    cfg = dataclasses.replace(
        cfg,
        data=dataclasses.replace(cfg.data, train=(str(clip),), valid=(str(clip),), segment_seconds=1.0,
                                 valid_segment_seconds=1.0, gain_db=0.0),
        loss=dataclasses.replace(cfg.loss, waveform_l1=10.0, mel=1.0, magnitude=1.0, complex_stft=1.0,
                                 adversarial=0.0, feature_matching=0.0),
        model=dataclasses.replace(cfg.model, quantizer=dataclasses.replace(cfg.model.quantizer, dropout=0.0)))
    record = Trainer(cfg, tmp_path / "run").run(1000)
    assert record["snr@4"] >= 10.0, record
    assert 0.9 <= record["rms_ratio@4"] <= 1.1, record


def test_resume_may_change_the_recipe_but_not_the_model(tmp_path):
    from neurocodec.errors import CheckpointError

    cfg = tiny(eval_every=100, checkpoint_every=1, log_every=1)
    Trainer(cfg, tmp_path / "run").run(1)
    changed = dataclasses.replace(cfg, loss=dataclasses.replace(cfg.loss, level=5.0))
    trainer = Trainer(changed, tmp_path / "run", resume=True)
    assert trainer.config_changes == ["loss.level: 0.0 -> 5.0"]
    assert json.loads((tmp_path / "run" / "config.json").read_text())["loss"]["level"] == 5.0
    faster = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, lr=3 * cfg.train.lr, lr_decay=0.99))
    trainer = Trainer(faster, tmp_path / "run", resume=True)
    assert all(g["lr"] == pytest.approx(3 * cfg.train.lr * 0.99) for g in trainer.update.opt_g.param_groups)
    trainer.run(2)
    assert trainer.update.sched_g.get_last_lr()[0] == pytest.approx(3 * cfg.train.lr * 0.99**2)
    # A parameter-free model option may change too (it is recorded); a shape change may not.
    ref = dataclasses.replace(cfg.model, decoder=dataclasses.replace(cfg.model.decoder, phase_reference=True))
    trainer = Trainer(dataclasses.replace(cfg, model=ref), tmp_path / "run", resume=True)
    assert "model.decoder.phase_reference: False -> True" in trainer.config_changes
    other = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, latent_dim=8))
    with pytest.raises(CheckpointError, match="different model config"):
        Trainer(other, tmp_path / "run", resume=True)


def test_sigterm_saves_state_and_resume_continues(tmp_path):
    import signal
    import time

    cfg_path = tmp_path / "tiny.toml"
    text = (ROOT / "examples" / "tiny.toml").read_text()
    cfg_path.write_text(text.replace("[data]", f'[data]\ntrain = ["{DATA}"]\nvalid = ["{DATA}"]', 1)
                        .replace("checkpoint_every = 20", "checkpoint_every = 100000"))
    run = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "neurocodec.cli", "train", str(cfg_path), "--run-dir", str(run),
                             "--steps", "100000", "--quiet", "--threads", "1"], stderr=subprocess.PIPE)
    log = run / "log.jsonl"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not (log.exists() and '"type": "step"' in log.read_text()):
        time.sleep(0.5)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=120) == 130, proc.stderr.read().decode()[-1000:]
    stopped = json.loads(log.read_text().splitlines()[-1])
    assert stopped["type"] == "stopped" and stopped["step"] >= 5
    assert (run / "state.safetensors").exists()
    resumed = Trainer(tiny(), run, resume=True)
    assert resumed.step == stopped["step"]


def test_init_from_a_released_fp16_model(tmp_path):
    from neurocodec.checkpoint import read_model, save_model

    cfg = tiny(eval_every=100, checkpoint_every=100, log_every=1)
    source = Trainer(cfg, tmp_path / "a")
    released = tmp_path / "released.safetensors"
    save_model(released, source.codec.state_dict(), cfg.model, dtype=torch.float16)
    torch.manual_seed(123)  # a different init, so equality below comes from --init
    other = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, seed=7))
    trainer = Trainer(other, tmp_path / "b", init=released)
    for k, v in source.codec.state_dict().items():
        assert torch.allclose(trainer.codec.state_dict()[k], v.half().float())
    trainer.run(steps=1)
    start = json.loads((tmp_path / "b" / "log.jsonl").read_text().splitlines()[0])
    assert start["type"] == "start" and start["init"]["path"] == str(released)
    assert start["init"]["weights_sha256"] == read_model(released)[1].weights_sha256


def test_preloaded_crops_equal_crops_read_from_disk(tmp_path):
    """`data.preload` changes where crops come from, not what they are (files at the model rate: bit-exact;
    resampled files: the same audio up to the resampler's edge effects)."""
    from neurocodec.train.data import CropDataset

    audio = np.random.default_rng(0).standard_normal(24000 * 3).astype(np.float32) * 0.1
    sf.write(tmp_path / "a.wav", audio, 24000, subtype="FLOAT")
    sf.write(tmp_path / "b.wav", audio[:16000 * 2], 16000, subtype="FLOAT")
    cfg = tiny().data
    disk = CropDataset([tmp_path / "a.wav"], 24000, cfg)
    memory = CropDataset([tmp_path / "a.wav"], 24000, dataclasses.replace(cfg, preload=True))
    assert memory.cache is not None and disk.cache is None
    for step in range(3):
        assert torch.equal(disk.batch(0, step, 0, 4), memory.batch(0, step, 0, 4))
    disk = CropDataset([tmp_path / "b.wav"], 24000, cfg)
    memory = CropDataset([tmp_path / "b.wav"], 24000, dataclasses.replace(cfg, preload=True))
    a, b = disk.read(0, 0.5, 1.0), memory.read(0, 0.5, 1.0)
    assert a.shape == b.shape == (24000,)
    inner = slice(100, -100)
    assert np.abs(a[inner] - b[inner]).max() < 1e-3 * np.abs(a).max() + 1e-6


def test_level_alarm_fires_on_a_codec_that_loses_level_and_not_on_one_that_keeps_it(speech):
    """Stand-in models on real speech clips swept from -40 to -6 dBFS through the path files take (level
    envelope, model, restore). One returns its input, one compresses dynamics (the released model's fault: it
    pulls every input toward -20 dBFS). The side information flattens the compression (the model only ever
    sees one level, -23 dBFS, where this one is 1.3 dB loud), and the alarm fires on that error; not on the
    first. Both pass the plain RMS check at one level."""
    from types import SimpleNamespace

    from neurocodec.train.diagnostics import level_sweep

    class Identity(torch.nn.Module):
        sample_rate, hop_length = 16000, 160

        def forward(self, audio, n_q=None):
            return SimpleNamespace(audio=audio)

    class Compressor(Identity):
        def forward(self, audio, n_q=None):
            rms = audio.pow(2).mean(-1, keepdim=True).sqrt()
            return SimpleNamespace(audio=audio * (10 ** (-20 / 20) / rms) ** 0.3)  # soft gets louder, loud softer

    clips = torch.from_numpy(speech[0][:, : 4 * 8000].reshape(4, 1, 8000).copy())
    cfg = tiny().train
    for codec, alarmed in ((Identity(), False), (Compressor(), True)):
        record = {"rms_ratio@4": 1.0, "snr@4": 5.0, "level_sweep": level_sweep(codec, clips, cfg.level_sweep_db)}
        alarms = HealthMonitor(cfg, codebook_size=64).check(record)
        assert any("output level depends on input level" in a for a in alarms) == alarmed, (record, alarms)
        assert not any("RMS ratio" in a for a in alarms)
    assert all(abs(r - 1) < 1e-4 for r in level_sweep(Identity(), clips, cfg.level_sweep_db).values())
    # The compressor alone makes soft inputs louder and loud ones softer; through the level path it cannot.
    rms = clips.pow(2).mean(-1, keepdim=True).sqrt()
    alone = {lv: float((Compressor()(clips / rms * 10 ** (lv / 20)).audio.pow(2).mean(-1).sqrt()
                        / 10 ** (lv / 20)).mean()) for lv in (-40, -6)}
    assert alone[-40] > 1.5 and alone[-6] < 0.7
    sweep = level_sweep(Compressor(), clips, cfg.level_sweep_db)
    assert max(sweep.values()) - min(sweep.values()) < 0.03 and min(sweep.values()) > 1.1, sweep


def test_a_state_saved_by_the_per_parameter_adamw_resumes_fused_and_steps_the_same():
    """Runs saved before the fused optimiser resume fused (torch would take `fused` from the saved groups), and the
    next update is the per-parameter one's."""
    import copy

    from neurocodec.train.state import load_optimizer

    torch.manual_seed(0)
    net = torch.nn.Linear(4, 3)
    old = torch.optim.AdamW(net.parameters(), lr=1e-2, foreach=False)
    net(torch.randn(5, 4)).sum().backward()
    old.step()
    saved = copy.deepcopy(old.state_dict())
    plain = torch.optim.AdamW(copy.deepcopy(net).parameters(), lr=1e-2, fused=True)
    plain.load_state_dict(copy.deepcopy(saved))
    assert not plain.param_groups[0]["fused"]  # what load_optimizer is there for
    twin = copy.deepcopy(net)
    new = torch.optim.AdamW(twin.parameters(), lr=1e-2, fused=True)
    load_optimizer(new, saved)
    assert all(g["fused"] for g in new.param_groups)
    x = torch.randn(5, 4)
    for module, opt in ((net, old), (twin, new)):
        opt.zero_grad()
        module(x).sum().backward()
        opt.step()
    for a, b in zip(net.parameters(), twin.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_rate_term_is_logged_and_trained_down(tmp_path):
    """With `loss.rate` on, the trainer logs the bits per code and training lowers them; off, nothing is logged."""
    cfg = tiny(eval_every=1000, checkpoint_every=1000, log_every=5, lr=3e-3, gan_start_step=1000)
    off = Trainer(cfg, tmp_path / "off")
    events = []
    off.on_event = events.append
    off.run(5)
    assert all("loss_rate" not in e for e in events if e["type"] == "step")
    cfg = dataclasses.replace(cfg, loss=dataclasses.replace(cfg.loss, rate=20.0, rate_temperature=0.05))
    on = Trainer(cfg, tmp_path / "on")
    events = []
    on.on_event = events.append
    on.run(30)
    rates = [e["loss_rate"] for e in events if e["type"] == "step"]
    assert len(rates) == 6 and rates[-1] < rates[1] - 0.5, rates  # measured: 1.52 → 0.58 bits


@pytest.mark.parametrize("reseed", [True, False])
def test_dead_codes_alarm_whether_or_not_they_are_reseeded(tmp_path, reseed):
    """A codebook collapsed onto two codes raises the dead-code alarm at an evaluation; `train.reseed_dead_codes`
    decides only whether the dead codes are then replaced (off: a rate-term run keeps its codebooks)."""
    trainer = Trainer(tiny(reseed_dead_codes=reseed), tmp_path / "run")
    trainer.codec.train()
    trainer.codec(torch.randn(2, 1, 4000))  # fills the recent encoder outputs re-seeding draws from
    vq = trainer.codec.quantizer.quantizers[0]
    size = vq.codebook_size
    vq.usage.zero_()
    vq.usage[:2] = 16.0 * size  # every count on two codes: enough evidence, all the others dead
    before = vq.codebook.weight.clone()
    record = trainer.evaluate()
    assert record["dead_codes"][0] == size - 2
    assert any(f"codebook 0: {size - 2}/{size} codes dead" in a for a in record["alarms"])
    assert record["reseeded_codes"][0] == (size - 2 if reseed else 0)
    changed = int((vq.codebook.weight != before).any(dim=1).sum())
    assert changed == (size - 2 if reseed else 0) and vq.usage.sum() == 0


def test_validation_reports_the_outputs_lag(speech):
    """A model whose output comes 10 ms late is seen as such (`lag_ms@N`): a causal model started from centred
    weights once settled 73 ms late while its mel distance looked fine."""
    from types import SimpleNamespace

    from neurocodec.train.diagnostics import validate

    class Late(torch.nn.Module):
        sample_rate, hop_length = 16000, 160

        def forward(self, audio, n_q=None):
            return SimpleNamespace(audio=torch.nn.functional.pad(audio, (160, 0))[..., : audio.shape[-1]])

    audio, sr = speech
    clips = torch.from_numpy(audio[:, sr: 3 * sr]).reshape(2, 1, -1)
    record = validate(Late(), clips, (4,))
    assert record["lag_ms@4"] == pytest.approx(10.0, abs=0.2)
    assert record["snr@4"] > 20  # aligned before it is measured
