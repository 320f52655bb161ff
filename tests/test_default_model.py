"""The bundled default model: present, loadable, and doing the README's main job."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from neurocodec.checkpoint import bundled_models

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.skipif("default" not in bundled_models(), reason="no bundled default model")


def test_default_model_loads_with_fitted_tables_and_fits_the_size_budget():
    from neurocodec.checkpoint import read_model

    path = bundled_models()["default"]
    assert path.stat().st_size <= 25_000_000
    _, info = read_model(path)
    assert info.config.sample_rate == 24000 and info.config.hop_length == 320
    assert info.config.quantizer.n_q == 16 and info.config.quantizer.codebook_size == 1024
    assert not info.entropy.is_uniform


def test_readme_main_job(tmp_path):
    from typer.testing import CliRunner

    from neurocodec.cli import app

    ncd, wav = tmp_path / "speech.ncd", tmp_path / "speech.wav"
    src = ROOT / "examples" / "speech.flac"
    runner = CliRunner()
    assert runner.invoke(app, ["encode", str(src), str(ncd)]).exit_code == 0
    assert runner.invoke(app, ["decode", str(ncd), str(wav)]).exit_code == 0
    ref, sr = sf.read(src, dtype="float32")
    out, out_sr = sf.read(wav, dtype="float32")
    assert out_sr == sr and out.shape == ref.shape
    duration = len(ref) / sr
    assert ncd.stat().st_size * 8 / duration < 6000 * 1.1  # 6 kbps asked: entropy coding keeps it under
    ratio = np.sqrt(np.mean(out**2)) / np.sqrt(np.mean(ref**2))
    assert 0.5 < ratio < 2.0  # the collapse alarm's band: no amplitude collapse, no blow-up


def test_readme_python_example(tmp_path, monkeypatch):
    """The README's Python block runs as written (on the bundled example, copied to in.wav)."""
    text = (ROOT / "README.md").read_text()
    block = text.split("```python\n", 1)[1].split("```", 1)[0]
    audio, sr = sf.read(ROOT / "examples" / "speech.flac", dtype="float32")
    monkeypatch.chdir(tmp_path)
    sf.write("in.wav", audio, sr)
    scope: dict = {}
    exec(compile(block, "README.md", "exec"), scope)
    assert scope["decoded"].shape == (1, len(audio))
    assert scope["report"].damage == [] and scope["report"].samples == len(audio)
    assert (tmp_path / "out.ncd").stat().st_size > 0
