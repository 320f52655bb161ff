"""Many files in one command: `neurocodec encode IN… -o DIR` and `decode` likewise.

`plan` turns the inputs (files, folders, a list file or "-" for a list on stdin) into jobs, one output per input
under the output folder (a folder's files keep their paths below it), refuses two inputs that would write one
output, and keeps one shard of the list (`--shard K/N`: every N-th job from the K-th, after sorting, so that N
machines given the same list and command cover it exactly once; any scheduler can run them). `run` codes the jobs
in `jobs` worker processes, each loading the model once; an output already newer than its input is skipped (a
re-run finishes what is missing), a bad file is reported and skipped, and every output is written atomically, so
nothing is half-written. No model here: the workers load it.
"""

from __future__ import annotations

import os
import sys
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, NamedTuple

from .errors import ConfigError, InputError, NeurocodecError

ENCODE_SUFFIXES = {".wav", ".flac", ".ogg", ".oga", ".aif", ".aiff", ".aifc", ".au", ".caf", ".w64", ".mp3"}
DECODE_SUFFIXES = {".ncd"}


@dataclass(frozen=True)
class Job:
    input: Path
    output: Path


class Outcome(NamedTuple):
    job: Job
    status: str  # "done", "skipped" (output already newer than the input) or "failed"
    message: str  # the error for a failure; the summary otherwise
    exit_code: int = 0
    seconds: float = 0.0  # audio coded


def parse_shard(text: str | None) -> tuple[int, int] | None:
    """"K/N" → (K, N), 1 ≤ K ≤ N; None stays None."""
    if text is None:
        return None
    try:
        k, n = (int(part) for part in text.split("/"))
    except ValueError:
        raise ConfigError(f"--shard {text!r}: give K/N, e.g. 1/4") from None
    if not 1 <= k <= n:
        raise ConfigError(f"--shard {text!r}: K must be 1 to N")
    return k, n


def _listed(source: str) -> list[str]:
    try:
        text = sys.stdin.read() if source == "-" else Path(source).read_text()
    except OSError as exc:
        raise InputError(f"{source}: cannot read the list ({exc.strerror or exc})") from None
    return [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]


def plan(inputs: Iterable[str], out_dir: str | os.PathLike, suffix: str, readable: set[str],
         list_file: str | None = None, shard: tuple[int, int] | None = None) -> list[Job]:
    """Jobs for `inputs` (files; folders, searched for files with a `readable` suffix; and the paths listed in
    `list_file`), each writing `out_dir`/name`suffix`; a folder's files keep their place below it. Sorted, then
    cut to `shard` (K, N)."""
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"-o {out}: not a folder")
    pairs: list[tuple[Path, Path]] = []
    for source in [*inputs, *(_listed(list_file) if list_file else [])]:
        p = Path(source).expanduser()
        if p.is_dir():
            found = sorted(f for f in p.rglob("*") if f.suffix.lower() in readable and f.is_file())
            pairs += [(f, f.relative_to(p).with_suffix(suffix)) for f in found]
        else:
            pairs.append((p, Path(p.name).with_suffix(suffix)))
    if not pairs:
        raise InputError("no input files")
    seen: dict[Path, Path] = {}
    for src, rel in pairs:
        if rel in seen and seen[rel] != src:
            raise ConfigError(f"{seen[rel]} and {src} would both write {out / rel}: give them separately")
        seen[rel] = src
    jobs = sorted({Job(src, out / rel) for src, rel in pairs}, key=lambda j: str(j.input))
    if shard is not None:
        k, n = shard
        jobs = jobs[k - 1::n]
    return jobs


def up_to_date(job: Job) -> bool:
    """The output exists and is newer than its input: a re-run leaves it (outputs are written atomically, so one
    that exists is complete)."""
    try:
        return job.output.stat().st_mtime >= job.input.stat().st_mtime
    except OSError:
        return False


# ------------------------------------------------------------------------------------------- the workers
_MODEL = None
_LOAD_ERROR: NeurocodecError | None = None  # a worker that could not load the model fails each of its jobs


def _load(load: dict) -> None:
    """A worker's model: `load` holds `loader.load_model`'s arguments."""
    global _MODEL, _LOAD_ERROR
    from .loader import load_model

    try:
        _MODEL = load_model(**load)
    except NeurocodecError as exc:
        _LOAD_ERROR = exc


def _code(kind: str, job: Job, options: dict) -> Outcome:
    """One job in a worker: encode or decode, any domain error caught as a failed outcome."""
    if _LOAD_ERROR is not None:
        return Outcome(job, "failed", str(_LOAD_ERROR), _LOAD_ERROR.exit_code)
    try:
        job.output.parent.mkdir(parents=True, exist_ok=True)
        if kind == "encode":
            report = _MODEL.encode_file(str(job.input), str(job.output), **options)
            seconds = report.samples / report.header.sample_rate
            return Outcome(job, "done", f"{seconds:.2f} s, {report.bytes} bytes", 0, seconds)
        report = _MODEL.decode_file(str(job.input), str(job.output), **options)
        if report.damage:
            return Outcome(job, "done", f"{report.seconds:.2f} s, {len(report.damage)} problems concealed", 0,
                           report.seconds)
        return Outcome(job, "done", f"{report.seconds:.2f} s", 0, report.seconds)
    except NeurocodecError as exc:
        return Outcome(job, "failed", str(exc), exc.exit_code)
    except OSError as exc:
        return Outcome(job, "failed", f"{job.output}: {exc.strerror or exc}", 8)


def run(kind: str, jobs: list[Job], load: dict, options: dict, workers: int = 1, force: bool = False,
        on_outcome: Callable[[Outcome], None] | None = None) -> list[Outcome]:
    """Code `jobs` (`kind` "encode" or "decode", `options` for `LoadedModel.encode_file`/`decode_file`) in
    `workers` processes, each loading the model with `load` (`loader.load_model`'s arguments; its `threads`
    0: the machine's cores shared out). Returns every outcome, in the order they finished; `on_outcome` sees
    each as it comes."""
    if not 1 <= workers <= 256:
        raise ConfigError(f"--jobs {workers}: give 1 to 256")
    outcomes: list[Outcome] = []

    def report(outcome: Outcome) -> None:
        outcomes.append(outcome)
        if on_outcome is not None:
            on_outcome(outcome)

    todo = []
    for job in jobs:
        if job.output.exists() and not force:
            if up_to_date(job):
                report(Outcome(job, "skipped", "up to date"))
            else:
                report(Outcome(job, "failed", f"{job.output}: exists and is older than its input; pass --force to "
                                              "replace it", 8))
        else:
            todo.append(job)
    if not todo:
        return outcomes
    load = {**load, "threads": load.get("threads") or max(1, (os.cpu_count() or 1) // workers)}
    if workers == 1:
        _load(load)
        for job in todo:
            report(_code(kind, job, options))
        return outcomes
    import multiprocessing

    context = multiprocessing.get_context("spawn")  # torch (and ONNX Runtime's threads) and fork do not mix
    with ProcessPoolExecutor(min(workers, len(todo)), mp_context=context, initializer=_load,
                             initargs=(load,)) as pool:
        for future in as_completed([pool.submit(_code, kind, job, options) for job in todo]):
            report(future.result())
    return outcomes
