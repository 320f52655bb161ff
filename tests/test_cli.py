"""The command line, through Typer's CliRunner and through real subprocesses and pipes."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf
from typer.testing import CliRunner

from neurocodec.cli import app
from .conftest import ROOT, SPEECH as SPEECH_PATH, TINY_MODEL

MODEL = str(TINY_MODEL)
SPEECH = str(SPEECH_PATH)
runner = CliRunner()


def cli(*args: str):
    return runner.invoke(app, list(args), catch_exceptions=False)


def test_encode_info_decode_round_trip(tmp_path):
    ncd, wav = tmp_path / "a.ncd", tmp_path / "a.wav"
    r = cli("encode", SPEECH, str(ncd), "-m", MODEL, "-b", "1.2")
    assert r.exit_code == 0, r.output
    r = cli("info", str(ncd), "--json")
    assert r.exit_code == 0
    desc = json.loads(r.output)
    assert desc["codebooks"] == "2" and desc["damage"] == [] and desc["sample_rate"] == 16000
    assert desc["bitrate_kbps"] == pytest.approx(ncd.stat().st_size * 8 / desc["duration_s"] / 1000, rel=1e-3)
    r = cli("decode", str(ncd), str(wav), "-m", MODEL)
    assert r.exit_code == 0, r.output
    ref = sf.info(SPEECH)
    out = sf.info(str(wav))
    assert (out.samplerate, out.channels, out.frames) == (ref.samplerate, ref.channels, ref.frames)
    assert oct(wav.stat().st_mode & 0o777) == oct(0o666 & ~_umask())


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_damaged_file_is_refused_without_output_then_concealed(tmp_path):
    ncd, wav = tmp_path / "a.ncd", tmp_path / "a.wav"
    cli("encode", SPEECH, str(ncd), "-m", MODEL, "-b", "2.4")
    data = bytearray(ncd.read_bytes())
    data[len(data) // 2] ^= 0x10
    ncd.write_bytes(bytes(data))
    r = cli("decode", str(ncd), str(wav), "-m", MODEL)
    assert r.exit_code == 5
    assert "error:" in r.output and "Traceback" not in r.output and len(r.output.strip().splitlines()) == 1
    assert not wav.exists() and list(tmp_path.iterdir()) == [ncd]
    r = cli("decode", str(ncd), str(wav), "-m", MODEL, "--decode-through-errors")
    assert r.exit_code == 0 and "warning:" in r.output
    assert sf.info(str(wav)).frames == sf.info(SPEECH).frames
    r = cli("decode", str(ncd), str(tmp_path / "b.wav"), "-m", MODEL, "--decode-through-errors", "--strict")
    assert r.exit_code == 5
    r = cli("info", str(ncd))
    assert r.exit_code == 5 and "damage" in r.output


def test_model_mismatch_is_refused_before_decoding(tmp_path):
    import torch

    from neurocodec.checkpoint import read_model, save_model

    state, info = read_model(MODEL)
    state = {k: v.clone() for k, v in state.items()}
    first = sorted(state)[0]
    state[first] = state[first] + 1
    other = tmp_path / "other.safetensors"
    save_model(other, state, info.config, name="other", dtype=torch.float16)
    ncd = tmp_path / "a.ncd"
    cli("encode", SPEECH, str(ncd), "-m", MODEL, "-b", "1.2")
    r = cli("decode", str(ncd), str(tmp_path / "a.wav"), "-m", str(other))
    # A 2.x header names the model by its id (a bundled model's name is found from it; this one is not bundled).
    assert r.exit_code == 5 and f"made by model 'unknown' (id {info.decoder_sha256[:12]}" in r.output
    assert not (tmp_path / "a.wav").exists()


@pytest.mark.parametrize("args, code, message", [
    (["encode", "/no/such.wav", "x.ncd", "-m", MODEL], 3, "no such file"),
    (["encode", str(ROOT / "README.md"), "x.ncd", "-m", MODEL], 3, "not a readable audio file"),
    (["encode", SPEECH, "x.ncd", "-m", "/no/model.safetensors"], 4, "no such checkpoint"),
    (["decode", SPEECH, "x.wav", "-m", MODEL], 5, "not an .ncd file"),
    (["encode", SPEECH, "x.ncd", "-m", MODEL, "-b", "0.1"], 2, "below one codebook"),
    (["encode", SPEECH, "x.ncd", "-m", MODEL, "--quality", "0.1"], 2, "quality 0.1: 0.1 kbps is below one codebook"),
    (["encode", str(ROOT / "examples"), "x.ncd", "-m", MODEL], 3, "is a folder, not a file"),
])
def test_bad_input_gives_one_line_error_and_exit_code(tmp_path, monkeypatch, args, code, message):
    monkeypatch.chdir(tmp_path)
    r = cli(*args)
    assert r.exit_code == code, r.output
    assert message in r.output and "Traceback" not in r.output
    assert not any(tmp_path.iterdir())


def _run(*args, input: bytes | None = None) -> subprocess.CompletedProcess:
    exe = [sys.executable, "-m", "neurocodec.cli"]
    return subprocess.run(exe + list(args), input=input, capture_output=True, timeout=120)


def test_stdin_stdout_pipeline_through_real_processes(tmp_path):
    wav = tmp_path / "in.wav"
    audio, sr = sf.read(SPEECH, dtype="float32")
    stereo = np.stack([audio, audio[::-1]], axis=1)[: sr * 2]
    sf.write(wav, stereo, sr)
    enc = _run("encode", "-", "-", "-m", MODEL, "-b", "1.2", input=wav.read_bytes())
    assert enc.returncode == 0, enc.stderr.decode()
    assert enc.stdout[:8] == b"\x89NCD\r\n\x1a\n"
    dec = _run("decode", "-", "-", "-m", MODEL, input=enc.stdout)
    assert dec.returncode == 0, dec.stderr.decode()
    out = tmp_path / "out.wav"
    out.write_bytes(dec.stdout)
    info = sf.info(str(out))
    assert (info.samplerate, info.channels, info.frames) == (sr, 2, len(stereo))
    bad = _run("decode", "-", "-", "-m", MODEL, input=enc.stdout[: len(enc.stdout) // 2])
    assert bad.returncode == 5 and bad.stdout == b""
    assert b"Traceback" not in bad.stderr and b"truncated" in bad.stderr


@pytest.mark.skipif(shutil.which("neurocodec") is None, reason="console script not installed")
def test_console_script_help_is_fast_and_imports_no_torch():
    r = subprocess.run([sys.executable, "-X", "importtime", "-m", "neurocodec.cli", "--help"], capture_output=True,
                       timeout=60)
    assert r.returncode == 0
    imported = {line.split("|")[-1].strip() for line in r.stderr.decode().splitlines()}
    assert "torch" not in imported and "librosa" not in imported
