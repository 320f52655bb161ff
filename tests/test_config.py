import dataclasses

import pytest

from neurocodec.config import Config, ISTFTDecoderConfig, STFTEncoderConfig, from_dict, load_config, to_dict
from neurocodec.errors import ConfigError

from .conftest import ROOT


@pytest.mark.parametrize("name", sorted(str(p.relative_to(ROOT / "examples")) for p in (ROOT / "examples").rglob("*.toml")))
def test_examples_load_and_round_trip(name):
    cfg = load_config(ROOT / "examples" / name)
    assert from_dict(Config, to_dict(cfg)) == cfg


def test_gpu_config_is_the_default_recipe_with_only_its_stated_changes():
    """examples/default-gpu.toml continues the default model: a near-copy must not drift from default.toml."""
    base, gpu = (to_dict(load_config(ROOT / "examples" / n)) for n in ("default.toml", "default-gpu.toml"))
    differ = {(section, key) for section in base for key in base[section]
              if isinstance(base[section], dict) and base[section][key] != gpu[section][key]}
    assert {s for s in base if not isinstance(base[s], dict) and base[s] != gpu[s]} == set()
    assert differ == {("data", "train"), ("data", "valid"), ("data", "preload"), ("data", "resident"),
                      ("train", "batch_size"), ("train", "warmup_steps"), ("train", "gan_start_step"), ("train", "eval_every"),
                      ("train", "checkpoint_every"), ("train", "log_every"), ("train", "precision"),
                      ("train", "sync_every"), ("train", "reseed_dead_codes"), ("loss", "rate")}


def test_default_config_bitrates():
    cfg = load_config(ROOT / "examples" / "default.toml").model
    assert (cfg.sample_rate, cfg.hop_length, cfg.quantizer.n_q, cfg.quantizer.codebook_size) == (24000, 320, 16, 1024)
    assert [cfg.kbps(n) for n in (2, 4, 8, 16)] == [1.5, 3, 6, 12]
    assert [cfg.n_q_for_kbps(k) for k in (1.5, 3, 6, 7, 12)] == [2, 4, 8, 9, 16]
    for bad, message in ((12.1, "above the 12 kbps"), (100, "above the 12 kbps"), (0.5, "below one codebook"), (float("nan"), "positive"),
                         (float("inf"), "positive"), (-6, "positive")):
        with pytest.raises(ConfigError, match=message):
            cfg.n_q_for_kbps(bad)
    assert isinstance(cfg.encoder, STFTEncoderConfig) and isinstance(cfg.decoder, ISTFTDecoderConfig)


def write(tmp_path, text):
    p = tmp_path / "c.toml"
    p.write_text(text)
    return p


def test_unknown_key_is_named(tmp_path):
    with pytest.raises(ConfigError, match="unknown key 'hop_lenght'"):
        load_config(write(tmp_path, "[model]\nhop_lenght = 320\n"))
    with pytest.raises(ConfigError, match="unknown key 'bogus'"):
        load_config(write(tmp_path, "[model.quantizer]\nbogus = 1\n"))
    with pytest.raises(ConfigError, match="unknown key 'trian'"):
        load_config(write(tmp_path, "[trian]\n"))


def test_kind_selects_dataclass_and_bad_values_fail(tmp_path):
    cfg = load_config(write(tmp_path, '[model.encoder]\nkind = "stft"\nn_fft = 960\n'))
    assert cfg.model.encoder == STFTEncoderConfig(n_fft=960)
    with pytest.raises(ConfigError, match="unknown kind 'wavelet'"):
        load_config(write(tmp_path, '[model.encoder]\nkind = "wavelet"\n'))
    with pytest.raises(ConfigError, match="unknown key 'strides'"):
        load_config(write(tmp_path, '[model.encoder]\nkind = "stft"\nstrides = [2]\n'))
    with pytest.raises(ConfigError, match="expected int"):
        load_config(write(tmp_path, '[model]\nhop_length = "320"\n'))
    with pytest.raises(ConfigError, match="multiply to"):
        load_config(write(tmp_path, '[model.encoder]\nkind = "conv"\nstrides = [2, 4]\n'))
    with pytest.raises(ConfigError, match="invalid TOML"):
        load_config(write(tmp_path, "[model\n"))
    with pytest.raises(ConfigError, match="no such config"):
        load_config(tmp_path / "missing.toml")


def test_config_is_frozen(tiny_config):
    with pytest.raises(dataclasses.FrozenInstanceError):
        tiny_config.model.hop_length = 1


@pytest.mark.parametrize("text, message", [
    ("[train]\nbatch_size = 0\n", r"train.batch_size must be at least 1, got 0"),
    ("[train]\nlr = -1e-4\n", r"train.lr must be above 0"),
    ("[train]\nwarmup_steps = -5\n", r"train.warmup_steps must be at least 0"),
    ("[train]\neval_every = 0\n", r"train.eval_every must be at least 1"),
    ("[data]\nsegment_seconds = 0\n", r"data.segment_seconds must be above 0"),
    ("[data]\nvalid_clips = 0\n", r"data.valid_clips must be at least 1"),
    ("[data]\nmix_probability = 1.5\n", r"data.mix_probability must be in \[0, 1\]"),
    ("[loss]\nrate = -0.5\n", r"loss.rate must be at least 0"),
    ("[loss]\nrate_temperature = 0\n", r"loss.rate_temperature must be above 0"),
])
def test_out_of_range_training_values_are_refused_when_read(tmp_path, text, message):
    with pytest.raises(ConfigError, match=message):
        load_config(write(tmp_path, text))
