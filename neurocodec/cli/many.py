"""`encode`/`decode` over many files (`-o DIR`): the plan, one progress bar, a line per failure, one summary; and
the model-loading options both forms share."""

from __future__ import annotations

import time
from typing import Optional

import typer
from rich.console import Console
from rich.markup import escape

from ..errors import ConfigError
from .display import progress_bar

BATCH_OPTIONS = ("--from", "--shard", "--jobs")
MAX_THREADS = 1024


def two_paths(kind: str, paths: list[str], list_file: Optional[str], shard: Optional[str], jobs: int
              ) -> tuple[str, str]:
    """Without -o: exactly INPUT OUTPUT, and none of the batch options."""
    if list_file is not None or shard is not None or jobs != 1:
        raise typer.BadParameter(f"{', '.join(BATCH_OPTIONS)} need -o DIR (an output folder)")
    if len(paths) != 2:
        raise typer.BadParameter(f"give INPUT OUTPUT, or INPUT… -o DIR to {kind} many files")
    return paths[0], paths[1]


def load_options(model: str | None, device: str | None, runtime: str, threads: int) -> dict:
    """`loader.load_model`'s arguments, checked."""
    if not 0 <= threads <= MAX_THREADS:
        raise ConfigError(f"--threads {threads}: give 0 (the runtime's default) to {MAX_THREADS}")
    from ..loader import RUNTIMES

    if runtime not in RUNTIMES:
        raise ConfigError(f"--runtime {runtime!r}: give {', '.join(RUNTIMES)}")
    return {"name_or_path": model, "device": device, "runtime": runtime, "threads": threads}


def run_many(err: Console, kind: str, inputs: list[str], out_dir: str, suffix: str, list_file: Optional[str],
             shard: Optional[str], jobs: int, load: dict, force: bool, quiet: bool, options: dict) -> None:
    """Plan, run, report; exits with the first failure's code when any file failed (the others are written)."""
    from ..batch import DECODE_SUFFIXES, ENCODE_SUFFIXES, parse_shard, plan, run

    t0 = time.perf_counter()
    readable = ENCODE_SUFFIXES if kind == "encode" else DECODE_SUFFIXES
    todo = plan(inputs, out_dir, suffix, readable, list_file, parse_shard(shard))
    counts = {"done": 0, "skipped": 0, "failed": 0}
    seconds = 0.0
    first_failure = 0
    with progress_bar(err, quiet, kind, after=0.0) as progress:
        def seen(outcome) -> None:
            nonlocal seconds, first_failure
            counts[outcome.status] += 1
            seconds += outcome.seconds
            if outcome.status == "failed":
                first_failure = first_failure or outcome.exit_code
                err.print(f"[bold red]failed:[/] {escape(str(outcome.job.input))}: {escape(outcome.message)}",
                          soft_wrap=True)
            if progress is not None:
                progress(sum(counts.values()), len(todo))

        run(kind, todo, load, options, jobs, force, seen)
    elapsed = time.perf_counter() - t0
    if not quiet or counts["failed"]:
        speed = f" ({seconds / max(elapsed, 1e-9):.3g}x real time)" if seconds else ""
        err.print(f"{len(todo)} files: {counts['done']} {kind}d, {counts['skipped']} up to date, {counts['failed']} "
                  f"failed; {seconds:.1f} s of audio in {elapsed:.1f} s{speed}", soft_wrap=True)
    if counts["failed"]:
        raise typer.Exit(first_failure or 1)
