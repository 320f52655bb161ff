"""The light runtime (ONNX Runtime + NumPy, no torch) against the torch path: graphs, parity, golden files, imports."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from neurocodec import onnx_export
from neurocodec.audio import read_audio, resample
from neurocodec.checkpoint import read_model, resolve_model
from neurocodec.limiter import running_min
from neurocodec.loader import load_model
from neurocodec.model.codec import TorchNet
from neurocodec.onnxnet import GRAPHS, OnnxNet, find_graph, graph_name
from .conftest import GOLDEN, ROOT, SPEECH, TINY_MODEL

pytest.importorskip("onnx")


@pytest.fixture()
def graphs(tmp_path, monkeypatch):
    """A fresh user graph folder (nothing exported there yet)."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return tmp_path / "cache" / "neurocodec" / "graphs"


def test_the_shipped_graphs_are_what_export_writes():
    import onnx

    tensors, info = read_model(resolve_model(None), numpy=True)
    for graph in GRAPHS:
        built = onnx_export.build(info.config, graph, tensors)
        shipped = onnx.load_model_from_string(find_graph(info.config, graph))
        assert shipped.graph == built.graph and shipped.opset_import == built.opset_import, \
            f"neurocodec/graphs/{graph_name(info.config, graph)} is stale: neurocodec export -o neurocodec/graphs"


def clip(seconds: float = 3.0) -> np.ndarray:
    audio, sr = read_audio(SPEECH)
    x = resample(audio.mean(0, keepdims=True), sr, 24000)[:, : int(seconds * 24000) // 320 * 320]
    return (x * (0.1 / np.sqrt(np.mean(x ** 2)))).astype(np.float32)  # near the level the model sees


def test_the_default_model_computes_the_same_on_both_runtimes():
    onnx, torch_ = load_model(runtime="onnx"), load_model(runtime="torch", device="cpu")
    assert (onnx.runtime, torch_.runtime) == ("onnx", "torch")
    x = clip()
    latent = torch_.net.codec.encoder(torch.from_numpy(x)[:, None]).numpy()
    assert np.abs(onnx.net.encode_latent(x) - latent).max() < 1e-4 * np.abs(latent).max()
    a, b = onnx.net.encode_frames(x, 16), torch_.net.encode_frames(x, 16)
    assert (a == b).all(axis=1).mean() >= 0.999
    assert np.allclose(onnx.net.latent(b), torch_.net.latent(b), atol=1e-5)
    y_onnx, y_torch = onnx.net.decode_latent(torch_.net.latent(b)), torch_.net.decode_latent(torch_.net.latent(b))
    assert np.abs(y_onnx - y_torch).max() < 1e-5
    # Absent codebooks (variable rate) contribute nothing on both.
    partial = b.copy()
    partial[:, 8:, ::2] = -1
    assert np.allclose(onnx.net.latent(partial), torch_.net.latent(partial), atol=1e-5)


@pytest.mark.parametrize("phase_reference", [False, True])
def test_a_model_of_another_architecture_runs_once_exported(graphs, tiny_config, phase_reference):
    import dataclasses

    cfg = tiny_config.model
    cfg = dataclasses.replace(cfg, decoder=dataclasses.replace(cfg.decoder, phase_reference=phase_reference))
    from neurocodec.model import Codec

    tensors = {k: v.numpy() for k, v in Codec(cfg).state_dict().items()}  # weight-normed, as checkpoints hold
    reference = Codec(cfg)
    reference.load_state_dict({k: torch.from_numpy(v) for k, v in tensors.items()})
    reference.prepare_for_inference()
    with pytest.raises(Exception, match="neurocodec export"):
        OnnxNet(cfg, tensors)
    onnx_export.export(cfg, tensors, graphs)
    net, ref = OnnxNet(cfg, tensors), TorchNet(reference)
    assert (net.encoder_context, net.decoder_context) == (ref.encoder_context, ref.decoder_context)
    x = np.random.default_rng(0).standard_normal((2, 30 * cfg.hop_length)).astype(np.float32) * 0.1
    codes = ref.encode_frames(x, cfg.quantizer.n_q)
    assert (net.encode_frames(x, cfg.quantizer.n_q) == codes).all(axis=1).mean() >= 0.999
    latent = ref.latent(codes)
    for first in (0, 1234567):
        assert np.abs(net.decode_latent(latent, first) - ref.decode_latent(latent, first)).max() < 1e-5


def test_golden_files_decode_the_same_on_both_runtimes(graphs, tmp_path):
    tensors, info = read_model(TINY_MODEL, numpy=True)
    onnx_export.export(info.config, tensors, graphs)
    light, heavy = load_model(TINY_MODEL, runtime="onnx"), load_model(TINY_MODEL, runtime="torch", device="cpu")
    expected = json.loads((GOLDEN / "expected.json").read_text())
    decoded = 0
    for name, exp in expected.items():
        if exp.get("model", "tiny") != "tiny" or not (GOLDEN / exp["file"]).exists():
            continue
        try:
            a = light.decode_file(str(GOLDEN / exp["file"]), str(tmp_path / f"{name}-onnx.wav"))
        except Exception as exc:  # a file the tiny model does not decode (another model's) is refused alike
            with pytest.raises(type(exc)):
                heavy.decode_file(str(GOLDEN / exp["file"]), str(tmp_path / f"{name}-torch.wav"))
            continue
        b = heavy.decode_file(str(GOLDEN / exp["file"]), str(tmp_path / f"{name}-torch.wav"))
        assert a.samples == b.samples
        ya, _ = read_audio(tmp_path / f"{name}-onnx.wav")
        yb, _ = read_audio(tmp_path / f"{name}-torch.wav")
        assert np.abs(ya - yb).max() <= 2 / 32768  # 16-bit WAV: a rounding step either way
        decoded += 1
    assert decoded >= 3


def test_the_light_path_never_imports_torch(tmp_path):
    """A whole encode and decode of the default model, and `info`, in a process that then lists its modules."""
    script = (
        "import sys; from neurocodec.loader import load_model; from neurocodec.ncdinfo import describe; "
        f"m = load_model(); m.encode_file({str(SPEECH)!r}, {str(tmp_path / 'a.ncd')!r}); "
        f"m.decode_file({str(tmp_path / 'a.ncd')!r}, {str(tmp_path / 'a.wav')!r}); "
        f"describe({str(tmp_path / 'a.ncd')!r}); "
        "print(m.runtime, sorted(k for k in sys.modules if k.split('.')[0] in ('torch', 'librosa', 'scipy', 'onnx')))")
    out = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["onnx", "[]"], out.stdout + out.stderr


def test_effort_runs_on_torch_behind_the_light_runtime(tmp_path):
    """Analysis by synthesis needs gradients: a model loaded on ONNX Runtime hands it to torch, same codes."""
    light, heavy = load_model(runtime="onnx"), load_model(runtime="torch", device="cpu")
    audio, sr = read_audio(SPEECH)
    a = light.encode(audio[:, : sr], sr, kbps=3, effort=1)
    b = heavy.encode(audio[:, : sr], sr, kbps=3, effort=1)
    assert np.array_equal(a.codes, b.codes)


def test_the_running_minimum_is_exact():
    rng = np.random.default_rng(0)
    for n, width in ((1, 1), (7, 7), (100, 7), (1000, 263), (3000, 2640), (10, 1)):
        x = rng.random(n)
        naive = np.array([x[i:i + width].min() for i in range(n - width + 1)])
        assert np.array_equal(running_min(x, width), naive), (n, width)


def test_export_and_runtime_from_the_command_line(graphs, tmp_path):
    from typer.testing import CliRunner

    from neurocodec.cli import app

    runner = CliRunner()
    r = runner.invoke(app, ["export", "-m", str(TINY_MODEL)])
    assert r.exit_code == 0 and r.output.count("wrote") == 3, r.output
    assert len(list(graphs.glob("*.onnx"))) == 3
    r = runner.invoke(app, ["export", "-m", str(TINY_MODEL), "-o", str(tmp_path / "out"), "--weights"])
    assert r.exit_code == 0 and {p.name for p in (tmp_path / "out").iterdir()} == {f"{g}.onnx" for g in GRAPHS}
    import onnx

    for graph in GRAPHS:
        onnx.checker.check_model(str(tmp_path / "out" / f"{graph}.onnx"))  # self-contained: weights inside
    ncd = tmp_path / "a.ncd"
    for runtime in ("onnx", "torch"):
        r = runner.invoke(app, ["encode", str(SPEECH), str(ncd), "-m", str(TINY_MODEL), "--runtime", runtime, "-f"])
        assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["decode", str(ncd), str(tmp_path / "a.wav"), "--runtime", "tpu"])
    assert r.exit_code == 2 and "--runtime 'tpu'" in r.output


def test_a_device_other_than_the_cpu_is_refused_by_the_light_runtime():
    from neurocodec.errors import ConfigError

    with pytest.raises(ConfigError, match="runs on the cpu"):
        load_model(runtime="onnx", device="cuda")


def test_the_readme_names_the_light_install():
    text = (ROOT / "README.md").read_text()
    assert "pip install -e ." in text and "--runtime" in text


def test_the_level_loop_decodes_with_int8_and_keeps_the_codes_and_the_level():
    """The encoder's level loop runs the int8 decoder (it only measures the level): the codes are the float32
    path's, the points within a step of it, and the decoded level the input's."""
    light, heavy = load_model(runtime="onnx"), load_model(runtime="torch", device="cpu")
    assert light.net.level_net() is not light.net and heavy.net.level_net() is heavy.net
    audio, sr = read_audio(SPEECH)
    a, b = light.encode(audio, sr, kbps=6), heavy.encode(audio, sr, kbps=6)
    assert (a.codes == b.codes).all(axis=1).mean() >= 0.99
    assert np.abs(a.points - b.points).max() <= 1
    y = light.decode(a)
    ratio = np.sqrt(np.mean(y ** 2) / np.mean(audio ** 2))
    assert 0.97 < ratio < 1.03, ratio


def test_without_torch_what_needs_it_is_refused_in_one_line(tmp_path):
    """A light install (torch made unimportable): `--effort`, `--runtime torch`, `eval` and `train` exit 6 with
    one line."""
    script = ("import sys; sys.modules['torch'] = None; sys.argv = ['neurocodec', *sys.argv[1:]]\n"
              "from neurocodec.cli import main\nmain()")
    for args in (["encode", str(SPEECH), "a.ncd", "--effort", "1"], ["encode", str(SPEECH), "a.ncd", "--runtime",
                 "torch"], ["eval", str(SPEECH), "--bitrate", "6"], ["train", str(ROOT / "examples" / "tiny.toml")]):
        r = subprocess.run([sys.executable, "-c", script, *args], capture_output=True, text=True, timeout=120,
                           cwd=tmp_path)
        assert r.returncode == 6 and "Traceback" not in r.stderr, r.stderr
        assert r.stderr.strip().count("\n") == 0 and "pip install torch" in r.stderr, r.stderr
