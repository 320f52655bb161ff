"""Many files in one command (`encode IN… -o DIR`, `decode` likewise): the plan, skipping what is up to date, a
bad file reported and skipped, shards that cover a list exactly once, worker processes."""

from __future__ import annotations

import os
import shutil
import time

import numpy as np
import pytest
import soundfile as sf
from typer.testing import CliRunner

from neurocodec.batch import ENCODE_SUFFIXES, Job, parse_shard, plan
from neurocodec.cli import app
from neurocodec.errors import ConfigError
from .conftest import SPEECH, TINY_MODEL

MODEL = str(TINY_MODEL)


def cli(*args: str):
    return CliRunner().invoke(app, [*args, "-m", MODEL, "-b", "1.2"] if args[0] == "encode" else [*args, "-m", MODEL])


@pytest.fixture
def folder(tmp_path):
    audio, sr = sf.read(SPEECH, dtype="float32")
    (tmp_path / "in" / "sub").mkdir(parents=True)
    for name in ("a.flac", "b.wav", "sub/c.flac"):
        sf.write(tmp_path / "in" / name, audio[: sr], sr)
    (tmp_path / "in" / "notes.txt").write_text("not audio")
    return tmp_path


def test_plan_keeps_a_folders_paths_refuses_collisions_and_shards_exactly(folder):
    jobs = plan([str(folder / "in")], folder / "out", ".ncd", ENCODE_SUFFIXES)
    assert [j.output.relative_to(folder / "out").as_posix() for j in jobs] == ["a.ncd", "b.ncd", "sub/c.ncd"]
    listed = folder / "list.txt"
    listed.write_text(f"# a list\n{folder / 'in' / 'a.flac'}\n\n")
    assert [j.input.name for j in plan([], folder / "out", ".ncd", ENCODE_SUFFIXES, str(listed))] == ["a.flac"]
    (folder / "other").mkdir()
    shutil.copy(folder / "in" / "a.flac", folder / "other" / "a.flac")
    with pytest.raises(ConfigError, match="would both write"):
        plan([str(folder / "in" / "a.flac"), str(folder / "other" / "a.flac")], folder / "o", ".ncd", ENCODE_SUFFIXES)
    many = [str(folder / f"{i}.wav") for i in range(10)]
    shards = [plan(many, folder / "o", ".ncd", ENCODE_SUFFIXES, shard=(k, 3)) for k in (1, 2, 3)]
    assert sorted(j.input for s in shards for j in s) == sorted(j.input for j in plan(many, folder / "o", ".ncd",
                                                                                    ENCODE_SUFFIXES))
    assert [len(s) for s in shards] == [4, 3, 3]
    for bad in ("0/3", "4/3", "x", "1/2/3"):
        with pytest.raises(ConfigError, match="--shard"):
            parse_shard(bad)


def test_encode_many_skips_what_is_up_to_date_and_reports_a_bad_file(folder):
    shutil.copy(folder / "in" / "notes.txt", folder / "in" / "broken.wav")  # a bad file among good ones
    r = cli("encode", str(folder / "in"), "-o", str(folder / "out"))
    assert r.exit_code == 3, r.output
    assert "broken.wav" in r.output and "4 files: 3 encoded, 0 up to date, 1 failed" in r.output, r.output
    outputs = sorted(p.relative_to(folder / "out").as_posix() for p in (folder / "out").rglob("*"))
    assert outputs == ["a.ncd", "b.ncd", "sub", "sub/c.ncd"]  # nothing half-written, no temporary file left
    (folder / "in" / "broken.wav").unlink()
    stamp = (folder / "out" / "a.ncd").stat().st_mtime_ns
    r = cli("encode", str(folder / "in"), "-o", str(folder / "out"))
    assert r.exit_code == 0 and "0 encoded, 3 up to date" in r.output, r.output
    assert (folder / "out" / "a.ncd").stat().st_mtime_ns == stamp
    future = time.time() + 10
    os.utime(folder / "in" / "a.flac", (future, future))  # the input changed after its output was made
    r = cli("encode", str(folder / "in"), "-o", str(folder / "out"))
    assert r.exit_code == 8 and "pass --force" in r.output
    assert cli("encode", str(folder / "in"), "-o", str(folder / "out"), "--force").exit_code == 0


def test_many_files_in_two_worker_processes_match_one_by_one(folder):
    r = cli("encode", str(folder / "in"), "-o", str(folder / "ncd"), "--jobs", "2")
    assert r.exit_code == 0 and "3 encoded" in r.output, r.output
    r = cli("decode", str(folder / "ncd"), "-o", str(folder / "wav"), "--jobs", "2", "--format", "flac")
    assert r.exit_code == 0 and "3 decoded" in r.output, r.output
    for audio in (folder / "in").rglob("*.*"):
        if audio.suffix == ".txt":
            continue
        rel = audio.relative_to(folder / "in")
        ncd, one = folder / "one.ncd", folder / "one.flac"
        assert cli("encode", str(audio), str(ncd), "--force").exit_code == 0
        assert ncd.read_bytes() == (folder / "ncd" / rel.with_suffix(".ncd")).read_bytes()  # codes are exact
        assert cli("decode", str(ncd), str(one), "--force").exit_code == 0
        many = sf.read(folder / "wav" / rel.with_suffix(".flac"), dtype="int16")[0].astype(int)
        # Another process, another thread count: the decoder's sums may round the last bit differently.
        assert np.abs(sf.read(one, dtype="int16")[0].astype(int) - many).max() <= 1


def test_batch_options_need_an_output_folder(folder):
    r = CliRunner().invoke(app, ["encode", str(folder / "in" / "a.flac"), "x.ncd", "--jobs", "2"])
    assert r.exit_code == 2 and "need -o DIR" in r.output
    r = CliRunner().invoke(app, ["encode", str(folder / "in" / "a.flac"), "x.ncd", "y.ncd"])
    assert r.exit_code == 2 and "INPUT… -o DIR" in r.output
    assert Job(folder / "a", folder / "b").output.name == "b"
