"""A new user's first hour: arguments answered before torch loads, one-line usage errors, `-h`, help and a default
for every option, outputs never replaced without `--force`, no binary on a terminal, and the README's exit-code
table walked row by row through the real command line."""

from __future__ import annotations

import json
import os
import pty
import re
import signal
import subprocess
import sys
import time

import pytest
import typer
from typer.testing import CliRunner

from neurocodec.cli import app
from .conftest import ROOT, SPEECH, TINY_MODEL

MODEL = str(TINY_MODEL)

# The command, run in-process so that `sys.modules` shows what was imported, then the exit code.
NO_TORCH = """
import sys
from neurocodec.cli import main
sys.argv = ["neurocodec", *{args!r}]
try:
    main()
except SystemExit as exc:
    print("exit", exc.code, "torch" in sys.modules, file=sys.stderr)
"""


def _in_process(*args: str, cwd=None) -> tuple[int, bool, str]:
    r = subprocess.run([sys.executable, "-c", NO_TORCH.format(args=list(args))], capture_output=True, text=True,
                       timeout=120, cwd=cwd)
    lines = r.stderr.strip().splitlines()
    _, code, torch = lines[-1].split()
    return int(code), torch == "True", "\n".join(lines[:-1])


@pytest.fixture(scope="module")
def ncd(tmp_path_factory):
    out = tmp_path_factory.mktemp("first") / "a.ncd"
    assert CliRunner().invoke(app, ["encode", str(SPEECH), str(out), "-m", MODEL, "-q"]).exit_code == 0
    return out


def test_arguments_are_answered_before_torch_loads(tmp_path, ncd):
    existing = tmp_path / "exists.ncd"
    existing.write_bytes(b"keep me")
    cases = [
        (["encode", str(SPEECH), str(SPEECH)], 8, "is the input file"),
        (["encode", str(SPEECH), str(tmp_path / "x.mp3")], 8, "encode writes .ncd files"),
        (["encode", str(SPEECH), str(existing)], 8, "exists; pass --force"),
        (["encode", str(SPEECH), str(tmp_path / "x.ncd"), "-b", "100"], 2, "above the"),
        (["encode", str(SPEECH), str(tmp_path / "x.ncd"), "-b", "abc"], 2, "Invalid value for '--bitrate'"),
        (["encode", str(SPEECH), str(tmp_path / "x.ncd"), "--effort", "9"], 2, "--effort 9"),
        (["encode", str(tmp_path / "none.wav"), str(tmp_path / "x.ncd")], 3, "no such file"),
        (["encode", str(SPEECH), str(tmp_path / "x.ncd"), "--max-hours", "nan"], 2, "--max-hours nan"),
        (["decode", str(tmp_path / "none.ncd"), str(tmp_path / "x.wav")], 3, "no such file"),
        (["decode", str(ncd), str(tmp_path / "x.mp3")], 8, "cannot write .mp3"),
        (["info", str(ncd)], 0, ""),
        (["info", str(ncd), "--json"], 0, ""),
    ]
    for args, code, message in cases:
        got, torch, stderr = _in_process(*args)
        assert (got, torch) == (code, False), (args, stderr)
        assert message in stderr and len(stderr.splitlines()) <= (1 if code else 0) + (0 if code else 99), stderr
    assert existing.read_bytes() == b"keep me"
    assert not (tmp_path / "x.ncd").exists() and not (tmp_path / "x.mp3").exists()


def test_usage_errors_are_one_line_and_every_command_has_dash_h():
    for args in (["encode"], ["bogus"], ["encode", "a", "b", "--bogus"], ["decode", "a"]):
        r = subprocess.run([sys.executable, "-m", "neurocodec.cli", *args], capture_output=True, text=True,
                           timeout=120)
        assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, r.stderr
        assert r.stderr.startswith("error: ") and "-h)" in r.stderr, r.stderr
    for command in ("encode", "decode", "info", "train", "eval", "fit-entropy"):
        r = CliRunner().invoke(app, [command, "-h"])
        assert r.exit_code == 0 and "Usage" in r.output, (command, r.output)


def test_every_option_has_help_and_a_default_shown():
    import inspect

    group = typer.main.get_command(app)
    for name, command in group.commands.items():
        for param in command.params:
            if param.param_type_name != "option" or param.name in ("help",):
                continue
            assert (param.help or "").strip(), f"{name} {param.opts}: no help"
            if not param.required and not param.is_flag:
                shown = param.show_default
                assert shown not in (None, False) or param.default not in (None, inspect.Parameter.empty), \
                    f"{name} {param.opts}: no default shown"
                if param.default is None:
                    assert isinstance(shown, str) and shown, f"{name} {param.opts}: default None, not explained"


def test_an_existing_output_is_replaced_only_with_force(tmp_path, ncd):
    out = tmp_path / "out.wav"
    out.write_bytes(b"precious")
    r = CliRunner().invoke(app, ["decode", str(ncd), str(out), "-m", MODEL, "-q"])
    assert r.exit_code == 8 and "exists; pass --force" in r.output and out.read_bytes() == b"precious"
    assert CliRunner().invoke(app, ["decode", str(ncd), str(out), "-m", MODEL, "-q", "-f"]).exit_code == 0
    assert out.read_bytes()[:4] == b"RIFF"


@pytest.mark.parametrize("command", ["encode", "decode"])
def test_binary_output_to_a_terminal_is_refused(ncd, command):
    source = str(SPEECH) if command == "encode" else str(ncd)
    leader, follower = pty.openpty()
    try:
        r = subprocess.run([sys.executable, "-m", "neurocodec.cli", command, source, "-", "-m", MODEL],
                           stdout=follower, stderr=subprocess.PIPE, text=True, timeout=120)
    finally:
        os.close(follower)
        os.close(leader)
    assert r.returncode == 8 and "stdout is a terminal" in r.stderr, r.stderr


def test_summary_line_gives_a_real_speed(ncd, tmp_path):
    r = CliRunner().invoke(app, ["decode", str(ncd), str(tmp_path / "a.wav"), "-m", MODEL])
    speed = re.search(r"([0-9.e+-]+)x real time", r.output)
    assert r.exit_code == 0 and speed and float(speed.group(1)) > 0, r.output


def test_info_json_has_a_schema_and_full_ids(ncd):
    r = CliRunner().invoke(app, ["info", str(ncd), "--json"])
    desc = json.loads(r.stdout)
    assert desc["schema"] == "neurocodec-info/2" and "…" not in r.stdout
    assert len(desc["model_id"]) == 16 and desc["model_id_names"] == "decoder"
    documented = set(re.findall(r"^\| `(\w+)` \|", (ROOT / "docs" / "info.md").read_text(), re.M))
    assert documented == set(desc), documented ^ set(desc)


# ------------------------------------------------------------------------------------ the exit-code table
def _table() -> dict[str, str]:
    rows = re.findall(r"^\| (\d+|128\+N) \| (.+) \|$", (ROOT / "README.md").read_text(), re.M)
    return dict(rows)


def test_the_readme_exit_code_table_is_what_the_commands_do(tmp_path, ncd, monkeypatch):
    table = _table()
    assert set(table) == {"2", "3", "4", "5", "6", "7", "8", "128+N"}, table
    runner = CliRunner()

    def code(*args: str) -> int:
        return runner.invoke(app, list(args)).exit_code

    damaged = tmp_path / "damaged.ncd"
    damaged.write_bytes(ncd.read_bytes()[:40])
    assert code("encode", str(SPEECH), str(tmp_path / "a.ncd"), "-m", MODEL, "--threads", "-1") == 2
    assert code("decode", str(tmp_path / "missing.ncd"), str(tmp_path / "a.wav"), "-m", MODEL) == 3
    assert code("train", "--plot", str(tmp_path)) == 3
    assert code("encode", str(SPEECH), str(tmp_path / "a.ncd"), "-m", str(tmp_path / "no.safetensors")) == 4
    assert code("decode", str(damaged), str(tmp_path / "a.wav"), "-m", MODEL) == 5
    monkeypatch.setenv("NEUROCODEC_OPUS_DEMO", str(tmp_path / "missing"))
    assert code("eval", str(SPEECH), "-m", MODEL, "-b", "1.2", "--baseline", "nolace") == 6

    from neurocodec.train import trainer
    from neurocodec.train.diagnostics import TrainingDiverged

    class Diverging:  # what the trainer raises when a loss turns NaN
        def __init__(self, *args, **kwargs):
            pass

        def run(self, *args, **kwargs):
            raise TrainingDiverged("loss became NaN at step 1; the last good checkpoint is kept")

        def close(self):
            pass

    monkeypatch.setattr(trainer, "Trainer", Diverging)
    assert code("train", str(ROOT / "examples" / "tiny.toml"), "--run-dir", str(tmp_path / "run"), "-q") == 7
    assert code("decode", str(ncd), str(tmp_path / "no" / "a.wav"), "-m", MODEL) == 8

    fifo = tmp_path / "in.fifo"
    os.mkfifo(fifo)
    proc = subprocess.Popen([sys.executable, "-m", "neurocodec.cli", "encode", str(fifo), str(tmp_path / "b.ncd"),
                             "-m", MODEL, "-q"], stderr=subprocess.PIPE)
    with open(fifo, "wb") as writer:  # the command waits on a stream that never ends
        writer.write(SPEECH.read_bytes()[:4096])
        writer.flush()
        time.sleep(1.0)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 128 + signal.SIGTERM
