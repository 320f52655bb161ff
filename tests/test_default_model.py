"""The bundled default model: present, loadable, and doing the README's main job."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from neurocodec.checkpoint import bundled_models
from .conftest import ROOT


pytestmark = pytest.mark.skipif("default" not in bundled_models(), reason="no bundled default model")


def test_default_model_loads_with_fitted_tables_and_fits_the_size_budget():
    from neurocodec.checkpoint import read_model

    path = bundled_models()["default"]
    assert path.stat().st_size <= 25_000_000
    _, info = read_model(path)
    assert info.config.sample_rate == 24000 and info.config.hop_length == 320
    assert info.config.quantizer.n_q == 16 and info.config.quantizer.codebook_size == 1024
    assert not info.entropy.is_uniform and not info.entropy.coder.is_uniform


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


def test_level_is_kept_through_files_on_a_fade_and_an_onset(tmp_path):
    """Real speech through `.ncd` files with the default model: faded in over 8 s from -55 to -25 dBFS, and
    starting at once after a second of silence at -25 dBFS. The output's level follows the input's in every
    0.25 s window within 25 dB of the loudest, within what a 6 kbps model's error allows (no steps at 1 s chunk
    boundaries, no lag behind the onset), and overall within 5%."""
    from neurocodec.audio import read_audio, resample
    from neurocodec.loader import load_model

    model = load_model("default", "cpu")
    speech, sr = read_audio(ROOT / "examples" / "speech.flac")
    speech = resample(speech.mean(0, keepdims=True), sr, 24000)[0]
    speech = np.tile(speech, -(-8 * 24000 // len(speech)))[: 8 * 24000]
    rms = np.sqrt(np.mean(speech.astype(np.float64) ** 2))
    # This clip peaks 22 dB above its RMS: up to -25 dBFS nothing clips (a clipped file loses level by itself).
    fade = speech / rms * 10 ** (np.linspace(-55, -25, len(speech)) / 20)
    onset = np.concatenate([np.zeros(24000), speech[: 4 * 24000] / rms * 10 ** (-25 / 20)])
    window = 6000
    for name, x in (("fade", fade), ("onset", onset)):
        x = x.astype(np.float32)
        src, ncd, out = tmp_path / f"{name}.wav", tmp_path / f"{name}.ncd", tmp_path / f"{name}.out.wav"
        sf.write(src, x, 24000, subtype="FLOAT")
        model.encode_file(str(src), str(ncd), kbps=6)
        model.decode_file(str(ncd), str(out))
        y, _ = sf.read(out, dtype="float32")
        n = len(x) // window * window
        level_in = 10 * np.log10(np.mean(x[:n].reshape(-1, window).astype(np.float64) ** 2, axis=1) + 1e-12)
        level_out = 10 * np.log10(np.mean(y[:n].reshape(-1, window).astype(np.float64) ** 2, axis=1) + 1e-12)
        voiced = level_in > level_in.max() - 25  # (quieter windows beside loud ones are masked; the clip
        # starts with 0.25 s at -53 dBFS, into which the next word's pre-echo and the loop's ±0.6 s reach)
        error = level_out[voiced] - level_in[voiced]
        assert np.abs(error).max() < 4.0, (name, np.round(error, 2))
        assert abs(np.median(error)) < 0.6 and np.abs(error).mean() < 1.2, (name, np.round(error, 2))
        assert 0.95 < np.sqrt(np.mean(y.astype(np.float64) ** 2) / np.mean(x.astype(np.float64) ** 2)) < 1.05
        if name == "onset":  # silence stays silence
            assert level_out[: 24000 // window - 1].max() < -60


def test_quality_spends_codebooks_where_they_buy_quality(tmp_path):
    """Variable rate: speech then 3 s of near silence. The quiet segments get fewer codebooks than the speech, the
    file is smaller than constant rate, `info` shows the codebooks per chunk, and it decodes to the input's
    length."""
    import json

    import soundfile as sf
    from typer.testing import CliRunner

    from neurocodec.cli import app

    speech, sr = sf.read(Path(__file__).parent / "data" / "librivox_0930.flac", dtype="float32")
    quiet = 1e-4 * np.random.default_rng(0).standard_normal(3 * sr).astype(np.float32)
    src = tmp_path / "in.wav"
    sf.write(src, np.concatenate([speech, quiet]), sr)
    runner = CliRunner()
    vbr, cbr, out = tmp_path / "vbr.ncd", tmp_path / "cbr.ncd", tmp_path / "out.wav"
    assert runner.invoke(app, ["encode", str(src), str(vbr), "--quality", "6"]).exit_code == 0
    assert runner.invoke(app, ["encode", str(src), str(cbr), "--bitrate", "6"]).exit_code == 0
    assert vbr.stat().st_size < cbr.stat().st_size
    info = json.loads(runner.invoke(app, ["info", str(vbr), "--json"]).output)
    per_chunk = info["codebooks_by_chunk"]
    assert info["codebooks"] == f"variable: {min(per_chunk):.2f} to {max(per_chunk):.2f} per chunk"
    assert info["damage"] == [] and per_chunk[-1] < per_chunk[0] and info["codebooks_mean"] < 8
    assert runner.invoke(app, ["decode", str(vbr), str(out)]).exit_code == 0
    assert sf.info(str(out)).frames == len(speech) + len(quiet)
    r = runner.invoke(app, ["encode", str(src), str(vbr), "--quality", "6", "--bitrate", "6"])
    assert r.exit_code != 0 and "exclude each other" in r.output


def test_quality_through_the_python_api_matches_the_file():
    """`LoadedModel.encode(..., quality=)` gives the codes a variable-rate file carries (-1 where a segment keeps
    fewer codebooks), and they decode."""
    import soundfile as sf

    from neurocodec import load_model

    model = load_model()
    audio, sr = sf.read(Path(__file__).parent / "data" / "librivox_0930.flac", dtype="float32")
    encoded = model.encode(audio, sr, quality=3)
    kept = (encoded.codes[0] >= 0).sum(axis=0)
    assert kept.min() >= 1 and kept.max() <= 16 and 1 < kept.mean() < 16
    assert np.all((encoded.codes[0] >= 0)[:-1] >= (encoded.codes[0] >= 0)[1:])  # codebooks kept coarse to fine
    out = model.decode(encoded)
    assert out.shape == (1, len(audio)) and np.isfinite(out).all()
