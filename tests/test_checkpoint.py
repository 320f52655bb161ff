import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from neurocodec import load_model
from neurocodec.checkpoint import read_model, save_model, weights_sha256
from neurocodec.errors import CheckpointError
from neurocodec.model import Codec

from .conftest import ROOT, TINY_MODEL


def test_round_trip_gives_identical_output(tmp_path, tiny_config):
    codec = Codec(tiny_config.model)
    path = tmp_path / "m.safetensors"
    digest = save_model(path, codec.state_dict(), tiny_config.model, name="tiny-test")
    model = load_model(path, device="cpu")
    loaded, info = model.codec, model.info
    assert info.name == "tiny-test" and info.weights_sha256 == digest and info.config == tiny_config.model
    audio = torch.randn(1, 1, 4000)
    codec.prepare_for_inference()
    assert torch.equal(loaded.encode(audio, 3), codec.encode(audio, 3))
    assert torch.allclose(loaded.decode(codec.encode(audio, 3)), codec.decode(codec.encode(audio, 3)), atol=1e-6)


def test_hash_covers_names_dtypes_shapes_and_bytes():
    base = {"a": torch.zeros(2, 3), "b": torch.ones(4)}
    h = weights_sha256(base)
    assert h == weights_sha256(dict(reversed(base.items())))
    assert h != weights_sha256({"a": torch.zeros(3, 2), "b": torch.ones(4)})
    assert h != weights_sha256({"a": torch.zeros(2, 3, dtype=torch.float16), "b": torch.ones(4)})
    assert h != weights_sha256({"c": torch.zeros(2, 3), "b": torch.ones(4)})
    changed = {"a": torch.zeros(2, 3), "b": torch.tensor([1.0, 1.0, 1.0, 1.0 + 2**-20])}
    assert h != weights_sha256(changed)


def test_altered_weights_fail_the_hash(tmp_path, tiny_config):
    path = tmp_path / "m.safetensors"
    save_model(path, Codec(tiny_config.model).state_dict(), tiny_config.model)
    from safetensors import safe_open

    with safe_open(str(path), "pt") as f:
        meta = f.metadata()
    tensors = load_file(str(path))
    key = sorted(tensors)[0]
    tensors[key] = tensors[key] + 1e-3
    save_file(tensors, str(path), metadata=meta)
    with pytest.raises(CheckpointError, match="hash mismatch"):
        read_model(path)


def test_corrupt_and_foreign_files(tmp_path, tiny_config):
    path = tmp_path / "m.safetensors"
    save_model(path, Codec(tiny_config.model).state_dict(), tiny_config.model)
    data = path.read_bytes()
    (tmp_path / "trunc.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="not a readable"):
        read_model(tmp_path / "trunc.safetensors")
    save_file({"x": torch.zeros(1)}, str(tmp_path / "foreign.safetensors"))
    with pytest.raises(CheckpointError, match="not a neurocodec model"):
        read_model(tmp_path / "foreign.safetensors")
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        read_model(tmp_path / "missing.safetensors")
    with pytest.raises(CheckpointError, match="unknown model"):
        load_model("no-such-model")


def test_config_that_does_not_fit_the_weights(tmp_path, tiny_config):
    path = tmp_path / "m.safetensors"
    save_model(path, Codec(tiny_config.model).state_dict(), tiny_config.model)
    from safetensors import safe_open

    with safe_open(str(path), "pt") as f:
        meta = dict(f.metadata())
    cfg = json.loads(meta["config"])
    cfg["latent_dim"] = 24
    meta["config"] = json.dumps(cfg)
    del meta["integrity_sha256"]  # as in a file written before the integrity hash: the shapes still catch it
    save_file(load_file(str(path)), str(path), metadata=meta)
    with pytest.raises(CheckpointError, match="do not fit"):
        load_model(path, device="cpu")


def test_unknown_key_in_stored_config(tmp_path, tiny_config):
    path = tmp_path / "m.safetensors"
    save_model(path, Codec(tiny_config.model).state_dict(), tiny_config.model)
    from safetensors import safe_open

    with safe_open(str(path), "pt") as f:
        meta = dict(f.metadata())
    cfg = json.loads(meta["config"])
    cfg["mystery"] = 1
    meta["config"] = json.dumps(cfg)
    del meta["integrity_sha256"]
    save_file(load_file(str(path)), str(path), metadata=meta)
    with pytest.raises(CheckpointError, match="unknown key 'mystery'"):
        read_model(path)


def test_gpu_shards_split_and_merge_back_to_the_fp16_model(tmp_path, tiny_config):
    """tools/shards.py: what comes back from a lent GPU (fp16 halves) joins into a loadable model checkpoint."""
    import subprocess
    import sys

    script = ROOT / "tools" / "shards.py"
    state = Codec(tiny_config.model).state_dict()
    save_model(tmp_path / "g.safetensors", state, tiny_config.model, extra={"step": "1234"})
    run = lambda *a: subprocess.run([sys.executable, str(script), *map(str, a)], capture_output=True, text=True)
    r = run("split", tmp_path / "g.safetensors", tmp_path / "leg")
    assert r.returncode == 0, r.stderr
    shards = sorted(tmp_path.glob("leg-*.safetensors"))
    assert len(shards) == 2 and all(load_file(str(s)) for s in shards)
    assert set(load_file(str(shards[0]))).isdisjoint(load_file(str(shards[1])))
    r = run("merge", *shards, tmp_path / "joined.safetensors")
    assert r.returncode == 0, r.stderr
    joined, info = read_model(tmp_path / "joined.safetensors")
    assert info.config == tiny_config.model and joined.keys() == state.keys()
    for k, v in state.items():
        expected = v.half().float() if v.is_floating_point() else v
        assert torch.equal(joined[k].to(expected.dtype), expected), k
    assert run("merge").returncode == 2


def test_integrity_hash_covers_the_config_and_old_files_still_load(tmp_path, tiny_config):
    """An edited sample rate or hop changes no tensor, so only the integrity hash can tell; a file saved before the
    hash existed (no integrity field) still loads."""
    from safetensors import safe_open

    path = tmp_path / "m.safetensors"
    save_model(path, Codec(tiny_config.model).state_dict(), tiny_config.model)
    with safe_open(str(path), "pt") as f:
        meta = dict(f.metadata())
    tensors = load_file(str(path))
    for key, value in (("sample_rate", 48000), ("hop_length", 320)):
        cfg = json.loads(meta["config"])
        cfg[key] = value
        save_file(tensors, str(path), metadata={**meta, "config": json.dumps(cfg)})
        with pytest.raises(CheckpointError, match="integrity hash mismatch"):
            read_model(path)
    save_file(tensors, str(path), metadata={**meta, "name": "renamed"})
    with pytest.raises(CheckpointError, match="integrity hash mismatch"):
        read_model(path)
    legacy = {k: v for k, v in meta.items() if k != "integrity_sha256"}
    save_file(tensors, str(path), metadata=legacy)
    assert read_model(path)[1].config == tiny_config.model
    golden = TINY_MODEL
    assert read_model(golden)[1].extra == {}  # the golden file predates the hash, and loads

