"""Metrics on signals with known answers, baselines, and the eval command end to end."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from neurocodec import metrics
from neurocodec.eval import baselines
from .conftest import TINY_MODEL

MODEL = str(TINY_MODEL)


@pytest.fixture(scope="module")
def ref(speech) -> np.ndarray:
    return speech[0][0].astype(np.float64)


def test_snr_and_si_sdr_on_known_signals(ref):
    rng = np.random.default_rng(0)
    noise = rng.standard_normal(len(ref))
    noise *= np.sqrt(np.sum(ref**2) / np.sum(noise**2)) * 10 ** (-20 / 20)  # exactly 20 dB below the signal
    assert metrics.snr(ref, ref + noise, aligned=False) == pytest.approx(20.0, abs=0.01)
    assert metrics.si_sdr(ref, ref + noise, aligned=False) == pytest.approx(20.0, abs=0.2)
    # A scaled copy: SNR punishes the level error, SI-SDR does not.
    assert metrics.si_sdr(ref, 0.5 * ref) > 100
    assert metrics.snr(ref, 0.5 * ref) == pytest.approx(20 * np.log10(1 / 0.5), abs=0.01)
    assert metrics.rms_ratio(ref, 0.5 * ref) == pytest.approx(0.5)
    # An inverted copy is as far as it gets: SNR = 10·log10(1/4).
    assert metrics.snr(ref, -ref, aligned=False) == pytest.approx(-6.02, abs=0.01)


def test_delay_is_aligned_before_scoring(ref):
    delayed = np.concatenate([np.zeros(37), ref[:-37]])
    assert metrics.align(ref, delayed)[2] == 37
    assert metrics.snr(ref, delayed) > 40
    assert metrics.snr(ref, delayed, aligned=False) < 10


def test_mel_and_stft_distance_order_damage(ref):
    rng = np.random.default_rng(1)
    small = ref + 0.001 * rng.standard_normal(len(ref))
    large = ref + 0.03 * rng.standard_normal(len(ref))
    assert metrics.mel_distance(ref, ref, 16000) == 0.0
    assert 0 < metrics.mel_distance(ref, small, 16000) < metrics.mel_distance(ref, large, 16000)
    assert 0 < metrics.stft_distance(ref, small) < metrics.stft_distance(ref, large)


def test_pesq_and_stoi_rank_identical_above_degraded(ref):
    rng = np.random.default_rng(2)
    degraded = ref + 0.05 * rng.standard_normal(len(ref))
    assert metrics.pesq_wb(ref, ref, 16000) > 4.5 > metrics.pesq_wb(ref, degraded, 16000)
    assert metrics.stoi(ref, ref, 16000) > 0.99 > metrics.stoi(ref, degraded, 16000)


@pytest.mark.skipif(shutil.which("opusenc") is None, reason="opus-tools not installed")
def test_opus_baseline_real_bitrate_and_quality(ref):
    from neurocodec.eval import baselines

    low, high = baselines.opus(ref.astype(np.float32), 16000, 6), baselines.opus(ref.astype(np.float32), 16000, 12)
    assert len(low.audio) == len(ref)
    assert 5 < low.kbps < 9 and 11 < high.kbps < 15
    assert metrics.pesq_wb(ref, high.audio, 16000) > metrics.pesq_wb(ref, low.audio, 16000)


def test_missing_tool_is_a_clear_message(monkeypatch, ref):
    from neurocodec.errors import MissingDependencyError
    from neurocodec.eval import baselines

    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(MissingDependencyError, match="apt-get install opus-tools"):
        baselines.opus(ref.astype(np.float32), 16000, 6)
    with pytest.raises(MissingDependencyError, match="apt-get install codec2"):
        baselines.codec2(ref.astype(np.float32), 16000)


def eval_folder(tmp_path: Path, speech) -> Path:
    """A tiny eval set: 2 s of real speech in speech/, a two-tone chord in music/."""
    folder = tmp_path / "set"
    (folder / "speech").mkdir(parents=True)
    (folder / "music").mkdir()
    audio, sr = speech
    sf.write(folder / "speech" / "a.flac", audio[0, : 2 * sr], sr)
    t = np.arange(2 * sr) / sr
    sf.write(folder / "music" / "chord.flac", 0.2 * np.sin(2 * np.pi * 220 * t) + 0.1 * np.sin(2 * np.pi * 330 * t), sr)
    return folder


@pytest.mark.skipif(shutil.which("opusenc") is None or shutil.which("c2enc") is None, reason="baselines missing")
def test_eval_command_writes_report(tmp_path, speech):
    from typer.testing import CliRunner

    from neurocodec.cli import app

    folder = eval_folder(tmp_path, speech)
    report = tmp_path / "report"
    r = CliRunner().invoke(app, ["eval", str(folder), "-m", MODEL, "--bitrates", "0.6,2.4", "--baseline",
                                 "opus,codec2", "--opus-bitrates", "6", "--report", str(report)])
    assert r.exit_code == 0, r.output
    assert "opus" in r.output and "codec2" in r.output
    results = json.loads((report / "results.json").read_text())
    systems = {(row["kind"], row["system"]) for row in results["rows"]}
    assert systems == {("speech", "neurocodec"), ("speech", "opus"), ("speech", "codec2"),
                       ("music", "neurocodec"), ("music", "opus")}
    speech_row = next(row for row in results["rows"] if row["kind"] == "speech" and row["system"] == "neurocodec")
    assert {"pesq", "stoi", "si_sdr", "snr", "mel_distance", "stft_distance", "rms_ratio", "kbps"} <= set(speech_row)
    assert (report / "results.csv").read_text().count("\n") == len(results["rows"]) + 1
    assert "| kind |" in (report / "report.md").read_text()
    assert (report / "pesq_vs_bitrate.png").stat().st_size > 5000
    assert (report / "spectrogram_a.png").stat().st_size > 5000


def test_rms_ratio_of_silence_is_undefined_not_huge():
    assert np.isnan(metrics.rms_ratio(np.zeros(100), np.ones(100)))


def test_eval_command_without_baselines(tmp_path, speech):
    """`neurocodec eval` end to end with no external tools: real .ncd round trips, every metric, the report."""
    from typer.testing import CliRunner

    from neurocodec.cli import app

    folder = eval_folder(tmp_path, speech)
    report = tmp_path / "report"
    r = CliRunner().invoke(app, ["eval", str(folder), "-m", MODEL, "--bitrates", "0.6,2.4", "--report", str(report)])
    assert r.exit_code == 0, r.output
    results = json.loads((report / "results.json").read_text())
    assert {(row["kind"], row["system"], row["bitrate"]) for row in results["rows"]} == {
        (kind, "neurocodec", kbps) for kind in ("speech", "music") for kbps in (0.6, 2.4)}
    speech_rows = [row for row in results["rows"] if row["kind"] == "speech"]
    assert all({"pesq", "stoi", "dnsmos_ovrl", "dnsmos_sig", "dnsmos_bak", "mel_distance", "rms_ratio", "kbps",
                "decode_x_realtime"} <= set(row) for row in speech_rows)
    assert all(0.0 < row["dnsmos_ovrl"] <= 5.0 for row in speech_rows)  # the untrained model: near the bottom
    low, high = sorted(speech_rows, key=lambda row: row["bitrate"])
    assert 0 < low["kbps"] < high["kbps"]  # real bits follow the codebooks asked for
    assert not any("pesq" in row for row in results["rows"] if row["kind"] == "music")
    assert "| kind |" in (report / "report.md").read_text()
    assert (report / "mel_distance_vs_bitrate.png").stat().st_size > 5000


def test_eval_compares_efforts_and_says_how_to_get_opus_1_5(tmp_path, speech, monkeypatch):
    from typer.testing import CliRunner

    from neurocodec.cli import app

    folder = eval_folder(tmp_path, speech)
    r = CliRunner().invoke(app, ["eval", str(folder / "speech"), "-m", MODEL, "--bitrates", "2.4", "--effort", "0,1",
                                 "--report", str(tmp_path / "r")])
    assert r.exit_code == 0, r.output
    rows = json.loads((tmp_path / "r" / "results.json").read_text())["rows"]
    assert {row["system"] for row in rows} == {"neurocodec", "neurocodec-e1"}
    monkeypatch.setenv("NEUROCODEC_OPUS_DEMO", str(tmp_path / "missing"))
    r = CliRunner().invoke(app, ["eval", str(folder), "-m", MODEL, "--baseline", "nolace"])
    assert r.exit_code == 6 and "tools/build_opus15.sh" in r.output


@pytest.mark.skipif(not Path(os.environ.get("NEUROCODEC_OPUS_DEMO", baselines.OPUS_DEMO)).is_file(),
                    reason="opus_demo (Opus 1.5) not built: bash tools/build_opus15.sh")
def test_opus_1_5_with_nolace_round_trips_speech(speech):
    audio, sr = speech
    coded = baselines.nolace(audio[0], sr, 8)
    assert coded.audio.shape == audio[0].shape and 4 < coded.kbps < 12
    assert metrics.pesq_wb(audio[0], coded.audio, sr) > 1.5


def test_a_plain_folder_is_sorted_into_speech_and_music(tmp_path, speech):
    import pytest as _pytest

    from neurocodec.errors import ConfigError
    from neurocodec.eval.run import collect

    folder = eval_folder(tmp_path, speech)
    plain = tmp_path / "plain"
    plain.mkdir()
    for f in folder.rglob("*.flac"):
        shutil.copy(f, plain / f.name)
    kinds = {it.path.name: it.kind for it in collect([plain])}
    assert kinds == {"a.flac": "speech", "chord.flac": "music"}, kinds  # the detector, no folder names
    assert {it.kind for it in collect([plain], domain="music")} == {"music"}
    assert {it.path.name: it.kind for it in collect([folder])} == kinds  # the folder names
    with _pytest.raises(ConfigError, match="--domain"):
        collect([plain], domain="noise")
