"""What a hostile or careless user runs into: output paths, signals, stream inputs, option values, CLI habits.

One test per class of defect found by the red-team pass (issue "Hardening"); the .ncd reader's own defences are in
test_bitstream.py and the structure-aware fuzzing in test_fuzz.py.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from typer.testing import CliRunner

from neurocodec.cli import app
from .conftest import SPEECH as SPEECH_PATH, TINY_MODEL

MODEL = str(TINY_MODEL)
SPEECH = str(SPEECH_PATH)


def cli(*args: str):
    return CliRunner().invoke(app, [*args, "-m", MODEL] if args[0] in ("encode", "decode") else list(args))


def one_line_error(r, code: int, message: str) -> None:
    assert r.exit_code == code, r.output
    assert message in r.output and "Traceback" not in r.output, r.output
    assert len(r.output.strip().splitlines()) == 1, r.output


def _run(*args, input: bytes | None = None, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "neurocodec.cli", *args], input=input, capture_output=True,
                          timeout=120, **kw)


@pytest.fixture(scope="module")
def ncd(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("ncd") / "a.ncd"
    assert cli("encode", SPEECH, str(path), "-b", "1.2", "-q").exit_code == 0
    return path


# ------------------------------------------------------------------------------------------- outputs
def test_output_path_failures_are_one_line_errors(tmp_path):
    one_line_error(cli("encode", SPEECH, str(tmp_path / "no" / "x.ncd"), "-q"), 8, "does not exist")
    one_line_error(cli("encode", SPEECH, str(tmp_path), "-q"), 8, "is a folder")
    one_line_error(cli("encode", SPEECH, str(tmp_path / ("a" * 260 + ".ncd")), "-q"), 8, "name is too long")
    one_line_error(cli("decode", SPEECH, str(tmp_path / "x.wav"), "-q"), 5, "not an .ncd")
    assert not any(tmp_path.iterdir())


def test_unknown_output_extension_is_refused_not_given_wav(tmp_path, ncd):
    one_line_error(cli("decode", str(ncd), str(tmp_path / "x.mp3"), "-q"), 8, "cannot write .mp3")
    assert cli("decode", str(ncd), str(tmp_path / "noext"), "-q").exit_code == 0
    assert sf.info(str(tmp_path / "noext")).format == "WAV"


def test_the_input_is_never_the_output(tmp_path):
    src = tmp_path / "a.flac"
    src.write_bytes(Path(SPEECH).read_bytes())
    (tmp_path / "link.flac").symlink_to(src)
    for out in (src, tmp_path / "link.flac"):
        one_line_error(cli("encode", str(src), str(out), "-q"), 8, "is the input file")
    assert src.read_bytes() == Path(SPEECH).read_bytes()


def test_a_symlink_is_followed_and_stays_a_link(tmp_path, ncd):
    target, link = tmp_path / "real.wav", tmp_path / "link.wav"
    target.write_bytes(b"old")
    link.symlink_to(target)
    one_line_error(cli("decode", str(ncd), str(link), "-q"), 8, "exists; pass --force")  # nothing is lost
    assert target.read_bytes() == b"old"
    assert cli("decode", str(ncd), str(link), "-q", "--force").exit_code == 0
    assert link.is_symlink() and sf.info(str(target)).frames == sf.info(SPEECH).frames


def test_devices_and_fifos_are_written_not_replaced(tmp_path, ncd):
    assert cli("encode", SPEECH, os.devnull, "-q").exit_code == 0
    assert Path(os.devnull).is_char_device()
    one_line_error(cli("decode", str(ncd), "/dev/full", "-q"), 8, "the disk is full")
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    reader = subprocess.Popen(["cat", str(fifo)], stdout=subprocess.PIPE)
    assert cli("decode", str(ncd), str(fifo), "-q").exit_code == 0
    data = reader.communicate(timeout=60)[0]
    assert fifo.is_fifo() and data[:4] == b"RIFF" and len(data) > 2 * sf.info(SPEECH).frames
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fifo"]


def test_closed_stdout_is_one_line_error(ncd):
    r = subprocess.run([sys.executable, "-m", "neurocodec.cli", "decode", str(ncd), "-", "-m", MODEL, "-q"],
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=120,
                       preexec_fn=lambda: os.close(1))
    assert r.returncode == 8 and r.stderr.decode().strip() == "error: stdout: cannot write (it is closed)"


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP])
def test_signals_leave_no_temporary_files(tmp_path, signum):
    long = tmp_path / "long.flac"
    audio, sr = sf.read(SPEECH, dtype="float32")
    sf.write(long, np.tile(audio, 40), sr)  # about 2 minutes: decoding takes seconds
    ncd = tmp_path / "long.ncd"
    assert _run("encode", str(long), str(ncd), "-m", MODEL, "-q").returncode == 0
    work = tmp_path / "work"
    work.mkdir()
    env = {**os.environ, "TMPDIR": str(work)}
    for out in (work / "out.wav", "-"):
        proc = subprocess.Popen([sys.executable, "-m", "neurocodec.cli", "decode", str(ncd), str(out), "-m", MODEL,
                                 "-q"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not any(work.iterdir()):
            time.sleep(0.05)  # the temporary file exists: decoding is under way
        proc.send_signal(signum)
        assert proc.wait(timeout=60) == 128 + signum, proc.stderr.read().decode()[-500:]
        assert list(work.iterdir()) == []


# ------------------------------------------------------------------------------------------- inputs
def test_fifo_and_process_substitution_are_readable(tmp_path):
    fifo = tmp_path / "in.fifo"
    os.mkfifo(fifo)
    writer = subprocess.Popen(["sh", "-c", f"cat '{SPEECH}' > '{fifo}'"])
    r = _run("encode", str(fifo), str(tmp_path / "a.ncd"), "-m", MODEL, "-b", "1.2", "-q")
    writer.wait(timeout=60)
    assert r.returncode == 0, r.stderr.decode()
    r = subprocess.run(["bash", "-c", f"'{sys.executable}' -m neurocodec.cli encode <(cat '{SPEECH}') "
                                      f"'{tmp_path / 'b.ncd'}' -m '{MODEL}' -b 1.2 -q"], capture_output=True, timeout=120)
    assert r.returncode == 0, r.stderr.decode()
    assert (tmp_path / "a.ncd").read_bytes()[200:] == (tmp_path / "b.ncd").read_bytes()[200:]


def test_endless_or_foreign_streams_are_refused_early(tmp_path):
    r = _run("encode", "/dev/zero", str(tmp_path / "z.ncd"), "-m", MODEL)
    assert r.returncode == 3 and b"no audio header in its first 1 MiB" in r.stderr
    r = _run("decode", "/dev/zero", str(tmp_path / "z.wav"), "-m", MODEL)
    assert r.returncode == 5 and b"not an .ncd file" in r.stderr
    # A real audio stream longer than the limit stops being read at the limit.
    wav = (tmp_path / "w.wav")
    sf.write(wav, np.zeros(16000 * 20, np.float32), 16000)
    r = _run("encode", "-", str(tmp_path / "w.ncd"), "-m", MODEL, "--max-hours", str(10 / 3600),
             input=wav.read_bytes())
    assert r.returncode == 3 and b"longer than the" in r.stderr and b"--max-hours" in r.stderr
    r = _run("encode", str(wav), str(tmp_path / "w.ncd"), "-m", MODEL, "--max-hours", str(10 / 3600))
    assert r.returncode == 3 and b"longer than the" in r.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["w.wav"]


def test_nan_and_inf_samples_are_refused(tmp_path):
    audio = np.zeros(16000, np.float32)
    audio[12345] = np.nan
    sf.write(tmp_path / "nan.wav", audio, 16000, subtype="FLOAT")
    one_line_error(cli("encode", str(tmp_path / "nan.wav"), str(tmp_path / "x.ncd"), "-q"), 3, "sample 12345")
    audio[12345] = np.inf
    sf.write(tmp_path / "inf.wav", audio, 16000, subtype="FLOAT")
    one_line_error(cli("encode", str(tmp_path / "inf.wav"), str(tmp_path / "x.ncd"), "-q"), 3, "NaN or infinite")


# ------------------------------------------------------------------------------------------- options
@pytest.mark.parametrize("args, message", [
    (["-b", "nan"], "give a positive number"),
    (["-b", "inf"], "give a positive number"),
    (["-b", "-3"], "give a positive number"),
    (["-b", "100"], "above the 2.4 kbps"),
    (["--threads", "100000"], "--threads 100000"),
    (["--device", "meta"], "runs on cpu, cuda or mps"),
    (["--device", "nonsense"], "unknown device"),
])
def test_option_values_are_validated(tmp_path, args, message):
    one_line_error(cli("encode", SPEECH, str(tmp_path / "x.ncd"), "-q", *args), 2, message)


def test_bitrate_is_for_the_whole_file(tmp_path):
    stereo = tmp_path / "st.wav"
    audio, sr = sf.read(SPEECH, dtype="float32")
    sf.write(stereo, np.stack([audio, audio[::-1]], axis=1), sr)
    r = cli("encode", str(stereo), str(tmp_path / "st.ncd"), "-b", "1.2")
    assert r.exit_code == 0 and "1 codebooks/ch" in r.output
    r = cli("info", str(tmp_path / "st.ncd"), "--json")
    assert '"nominal_kbps": 1.2' in r.output


# ------------------------------------------------------------------------------------------- habits
def test_version_summary_and_quiet(tmp_path):
    from neurocodec import __version__

    r = CliRunner().invoke(app, ["--version"])
    assert r.exit_code == 0 and r.output.strip() == f"neurocodec {__version__}"
    r = cli("encode", SPEECH, str(tmp_path / "a.ncd"), "-b", "1.2")
    assert r.exit_code == 0 and "3.29 s, 1 ch, 16 kHz" in r.output and "real time" in r.output
    r = cli("decode", str(tmp_path / "a.ncd"), str(tmp_path / "a.wav"))
    assert r.exit_code == 0 and "52640 samples/ch" in r.output
    assert cli("encode", SPEECH, str(tmp_path / "b.ncd"), "-b", "1.2", "-q").output == ""
    proc = _run("decode", str(tmp_path / "a.ncd"), "-", "-m", MODEL)
    assert proc.stdout[:4] == b"RIFF" and b"real time" in proc.stderr  # the summary never goes to stdout


def test_messages_are_not_read_as_markup(tmp_path, monkeypatch):
    from neurocodec.errors import MissingDependencyError
    from neurocodec.eval import run

    def missing(*a, **k):
        raise MissingDependencyError("PESQ needs the pesq package: pip install 'neurocodec[eval]'")

    monkeypatch.setattr(run, "evaluate", missing)
    r = CliRunner().invoke(app, ["eval", SPEECH, "-m", MODEL, "--bitrate", "1.2"])
    assert r.exit_code == 6 and "pip install 'neurocodec[eval]'" in r.output


def test_progress_bar_on_a_terminal(tmp_path, monkeypatch):
    import io

    from rich.console import Console

    from neurocodec import cli as cli_module
    from neurocodec.cli import display

    screen = io.StringIO()
    monkeypatch.setattr(cli_module, "err", Console(file=screen, force_terminal=True, width=100))
    monkeypatch.setattr(display, "PROGRESS_AFTER_S", 0.0)
    r = cli("encode", SPEECH, str(tmp_path / "a.ncd"), "-b", "1.2")
    assert r.exit_code == 0
    assert "encode" in screen.getvalue() and "━" in screen.getvalue() and "real time" in screen.getvalue()
    screen.truncate(0)
    assert cli("encode", SPEECH, str(tmp_path / "b.ncd"), "-b", "1.2", "-q").exit_code == 0
    assert screen.getvalue() == ""
