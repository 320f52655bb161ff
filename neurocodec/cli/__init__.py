"""The `neurocodec` command line: a thin layer over the library that turns domain errors into exit codes.

This package (`display.py`: what the commands draw; `many.py`: many files) is the only one that imports typer and
rich. Heavy modules (the model, training, evaluation) are imported inside the commands that need them.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.markup import escape

from .. import __version__
from ..fileio import keep_freed_memory
from ..errors import ConfigError, NeurocodecError
from .display import TrainDisplay, name as _name, print_table, progress_bar, speed as _speed
from .many import load_options as _load, run_many, two_paths

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  context_settings={"help_option_names": ["-h", "--help"]},
                  help="Neural audio codec: encode audio to .ncd, decode it back, inspect, train, evaluate.")
err = Console(stderr=True, highlight=False)


def _say(label: str, style: str, text: str) -> None:
    """One line on stderr; the text is never read as markup (a message may hold brackets: 'neurocodec[eval]')."""
    err.print(f"[{style}]{label}[/] {escape(text)}", markup=True, soft_wrap=True)


def _fail(exc: NeurocodecError) -> None:
    _say("error:", "bold red", str(exc))
    raise typer.Exit(exc.exit_code)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"neurocodec {__version__}")
        raise typer.Exit()


@app.callback()
def _main(version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                       help="Print the version and exit.")) -> None:
    """Neural audio codec: encode audio to .ncd, decode it back, inspect, train, evaluate."""


LIVE = typer.Option(False, "--live", help="Audio in, audio out within about half a second: WAV through pipes, 0.2 s chunks flushed as they are made (decode conceals damage, as a receiver must).")
MAX_HOURS = typer.Option(24.0, "--max-hours", show_default=True, help="Refuse inputs longer than this many hours (streams are read at most this far).")
QUIET = typer.Option(False, "--quiet", "-q", help="No summary line or progress bar (errors and warnings still show).")
FORCE = typer.Option(False, "--force", "-f", help="Replace an existing output file (without it, an existing file is refused).")
MODEL = typer.Option(None, "--model", "-m", show_default="the bundled default", help="Bundled model name or .safetensors path.")
DEVICE = typer.Option(None, "--device", show_default="cpu (torch: cuda when present)", help="cpu, cuda, cuda:1 … (a device other than the cpu runs on torch).")
THREADS = typer.Option(0, "--threads", show_default=True, help="CPU threads (0: the runtime's default, the machine's cores).")
RUNTIME = typer.Option("auto", "--runtime", show_default=True, help="onnx (ONNX Runtime, no torch), torch, or auto: onnx on the cpu when it can run the model.")


OUT_DIR = typer.Option(None, "--output-dir", "-o", show_default="off: INPUT OUTPUT", help="Code every input into this folder (a folder's files keep their paths below it); an output newer than its input is skipped, a bad file reported and skipped.")
FROM = typer.Option(None, "--from", show_default="none", help="With -o: also the paths listed in this file, one per line (- : stdin).")
JOBS = typer.Option(1, "--jobs", "-j", show_default=True, help="With -o: worker processes, each loading the model once.")
SHARD = typer.Option(None, "--shard", show_default="all", help="With -o: K/N codes every N-th file from the K-th of the sorted list, so that N machines running the same command share it.")


@app.command()
def encode(
    paths: list[str] = typer.Argument(..., metavar="INPUT OUTPUT | INPUT… -o DIR", help="Audio file (wav/flac/ogg/…) or - for stdin, then the .ncd file or - for stdout (not a terminal); with -o, audio files and folders."),
    output_dir: Optional[str] = OUT_DIR,
    list_file: Optional[str] = FROM,
    jobs: int = JOBS,
    shard: Optional[str] = SHARD,
    bitrate: Optional[float] = typer.Option(None, "--bitrate", "-b", show_default="6, or the model's maximum if lower", help="kbps for the whole file, channels sharing it: 1.5, 3, 6, 12 per channel for the default model."),
    model: Optional[str] = MODEL,
    device: Optional[str] = DEVICE,
    runtime: str = RUNTIME,
    threads: int = THREADS,
    level_loop: bool = typer.Option(True, "--level-loop/--no-level-loop", show_default=True, help="Decode while encoding to make the output's level the input's exactly; --no-level-loop encodes about twice as fast."),
    quality: Optional[float] = typer.Option(None, "--quality", "-Q", show_default="off: constant rate", help="Variable rate: each 0.2 s gets the fewest codebooks that keep it within the distortion constant QUALITY kbps gives this input (pauses cost little). --bitrate is the constant-rate mode."),
    effort: int = typer.Option(0, "--effort", "-e", show_default=True, help="0-4: analysis by synthesis, each level about twice the work of the one below for better codes (0: the encoder's own, fastest)."),
    live: bool = LIVE,
    max_hours: float = MAX_HOURS,
    force: bool = FORCE,
    quiet: bool = QUIET,
) -> None:
    """Encode audio into an .ncd file (--bitrate for the whole file, channels sharing it; --quality: variable)."""
    try:
        t0 = time.perf_counter()
        from ..preflight import check_encode, max_seconds

        limit = max_seconds(max_hours)
        load = _load(model, device, runtime, threads)
        if output_dir is not None:
            check_encode(None, None, model, bitrate, quality, effort, live=live)
            options = dict(kbps=bitrate, max_seconds=limit, level_loop=level_loop, quality=quality, effort=effort)
            return run_many(err, "encode", paths, output_dir, ".ncd", list_file, shard, jobs, load, force, quiet,
                            options)
        input, output = two_paths("encode", paths, list_file, shard, jobs)
        check_encode(input, output, model, bitrate, quality, effort, force, live)
        from ..loader import load_model

        loaded = load_model(**load)
        options = {} if live else dict(level_loop=level_loop, quality=quality, effort=effort)
        with progress_bar(err, quiet or live, "encode") as progress:
            report = (loaded.encode_live if live else loaded.encode_file)(
                input, output, kbps=bitrate, max_seconds=limit, progress=progress, **options)
        if not quiet:
            h, seconds = report.header, report.samples / report.header.sample_rate
            err.print(f"{_name(input, 'stdin')}: {seconds:.2f} s, {h.channels} ch, {h.sample_rate / 1000:g} kHz -> "
                      f"{_name(output, 'stdout')}: {report.n_q:.3g} codebooks/ch, "
                      f"{report.bytes * 8 / max(seconds, 1e-9) / 1000:.2f} kbps ({report.bytes} bytes), "
                      f"{_speed(seconds, time.perf_counter() - t0)}", soft_wrap=True)
    except NeurocodecError as exc:
        _fail(exc)


@app.command()
def decode(
    paths: list[str] = typer.Argument(..., metavar="INPUT OUTPUT | INPUT… -o DIR", help=".ncd file or - for stdin, then the audio file (.wav/.flac/.ogg; no extension: WAV) or - for WAV on stdout (not a terminal); with -o, .ncd files and folders."),
    output_dir: Optional[str] = OUT_DIR,
    list_file: Optional[str] = FROM,
    jobs: int = JOBS,
    shard: Optional[str] = SHARD,
    audio_format: str = typer.Option("wav", "--format", show_default=True, help="With -o: wav, flac or ogg."),
    model: Optional[str] = MODEL,
    device: Optional[str] = DEVICE,
    decode_through_errors: bool = typer.Option(False, "--decode-through-errors", help="Conceal damaged chunks with silence instead of stopping."),
    strict: bool = typer.Option(False, "--strict", help="With --decode-through-errors: still exit non-zero if anything was concealed."),
    live: bool = LIVE,
    runtime: str = RUNTIME,
    threads: int = THREADS,
    max_hours: float = MAX_HOURS,
    force: bool = FORCE,
    quiet: bool = QUIET,
) -> None:
    """Decode an .ncd file to audio (WAV, FLAC or Ogg Vorbis by the output's extension)."""
    try:
        t0 = time.perf_counter()
        from ..preflight import check_decode, max_seconds

        limit = max_seconds(max_hours)
        load = _load(model, device, runtime, threads)
        if output_dir is not None:
            if live:
                raise ConfigError("--live decodes one stream: without -o")
            if audio_format not in ("wav", "flac", "ogg"):
                raise ConfigError(f"--format {audio_format!r}: give wav, flac or ogg")
            options = dict(conceal=decode_through_errors, max_seconds=limit)
            return run_many(err, "decode", paths, output_dir, "." + audio_format, list_file, shard, jobs, load,
                            force, quiet, options)
        input, output = two_paths("decode", paths, list_file, shard, jobs)
        check_decode(input, output, force)
        from ..loader import load_model

        loaded = load_model(**load)
        options = {} if live else dict(conceal=decode_through_errors)
        with progress_bar(err, quiet or live, "decode") as progress:
            report = (loaded.decode_live if live else loaded.decode_file)(input, output, max_seconds=limit,
                                                                          progress=progress, **options)
        for line in report.damage:
            _say("warning:", "yellow", line)
        if not quiet:
            err.print(f"{_name(input, 'stdin')} -> {_name(output, 'stdout')}: {report.seconds:.2f} s, "
                      f"{report.samples} samples/ch, {len(report.damage)} problems concealed, "
                      + (f"{report.limited} samples limited below full scale, " if report.limited else "")
                      + _speed(report.seconds, time.perf_counter() - t0), soft_wrap=True)
        if report.damage and strict:
            raise typer.Exit(5)
    except NeurocodecError as exc:
        _fail(exc)


@app.command()
def info(
    input: str = typer.Argument(..., help=".ncd file, or - for stdin."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of text (fields: docs/info.md)."),
    max_hours: float = MAX_HOURS,
) -> None:
    """Show an .ncd file's header, chunks, real bitrate and any damage found (no model needed)."""
    try:
        from ..ncdinfo import describe
        from ..preflight import max_seconds

        desc = describe(input, max_seconds(max_hours))
    except NeurocodecError as exc:
        _fail(exc)
    if as_json:
        typer.echo(json.dumps(desc, indent=1))
    else:
        for key, value in desc.items():
            if isinstance(value, list) and len(value) > 12:
                value = ", ".join(map(str, value[:12])) + f", … ({len(value)} in all; --json lists them)"
            elif isinstance(value, list):
                value = ", ".join(map(str, value))
            if key != "damage":
                typer.echo(f"{key:>18}: {value}")
        for line in desc["damage"]:
            typer.echo(f"{'damage':>18}: {line}")
    if desc["damage"]:
        raise typer.Exit(5)


@app.command()
def export(
    model: Optional[str] = MODEL,
    output_dir: Optional[Path] = typer.Option(None, "--output-dir", "-o", show_default="the graph folder the light runtime reads (~/.cache/neurocodec/graphs)", help="Write the graphs here."),
    weights: bool = typer.Option(False, "--weights", help="Self-contained encoder.onnx and decoder.onnx with float32 weights inside, for use outside neurocodec (needs -o)."),
) -> None:
    """Write a model's encoder and decoder as ONNX graphs for the light runtime (bundled models' ship with it)."""
    try:
        from ..checkpoint import read_model, resolve_model
        from ..onnx_export import export as write_graphs
        from ..onnxnet import user_graphs

        if weights and output_dir is None:
            raise ConfigError("--weights writes self-contained graphs: give -o DIR for them")
        tensors, info = read_model(resolve_model(model), numpy=True)
        for path in write_graphs(info.config, tensors, output_dir or user_graphs(), embed=weights):
            err.print(f"wrote {escape(str(path))} ({path.stat().st_size} bytes)", soft_wrap=True)
    except NeurocodecError as exc:
        _fail(exc)


@app.command()
def train(
    config: Optional[Path] = typer.Argument(None, help="TOML config (examples/default.toml …)."),
    run_dir: Optional[Path] = typer.Option(None, "--run-dir", "-o", show_default="~/.cache/neurocodec/runs/NAME", help="Checkpoints and logs."),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in --run-dir exactly where it stopped."),
    steps: Optional[int] = typer.Option(None, "--steps", show_default="the config's", help="Stop at this step."),
    device: Optional[str] = DEVICE,
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Plain log lines instead of a live display."),
    plot: Optional[Path] = typer.Option(None, "--plot", show_default="off", help="Draw RUN_DIR's curves to RUN_DIR/curves.png and exit."),
    threads: int = typer.Option(0, "--threads", help="CPU threads per process (overrides the config's train.threads)."),
    minutes: Optional[float] = typer.Option(None, "--minutes", show_default="no limit", help="Stop (evaluate, checkpoint) after this much wall time."),
    init: Optional[Path] = typer.Option(None, "--init", show_default="a fresh model", help="Start a new run from these generator weights (e.g. a released model)."),
) -> None:
    """Train a codec from folders of audio (see examples/default.toml)."""
    try:
        if plot is not None:
            from ..train.report import plot_run

            typer.echo(str(plot_run(plot)))
            return
        if config is None and not resume:
            raise typer.BadParameter("give a CONFIG, or --resume with --run-dir")
        from ..config import load_config
        from ..train.rundir import RunDir
        from ..train.trainer import Trainer

        if config is None:
            if run_dir is None:
                raise typer.BadParameter("--resume without a CONFIG needs --run-dir")
            cfg = RunDir(run_dir).read_config()
        else:
            cfg = load_config(config)
        if threads > 0:
            import dataclasses

            cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, threads=threads))
        run = RunDir(run_dir) if run_dir else RunDir.default(cfg.model.name)
        if run.holds_run() and not resume:
            raise typer.BadParameter(f"{run} already holds a run: pass --resume, or another --run-dir")
        import signal

        def stop(signum, frame):  # kill / SIGTERM: stop like Ctrl-C, saving the state first
            raise KeyboardInterrupt

        signal.signal(signal.SIGTERM, stop)
        with TrainDisplay(quiet=quiet, console=err) as display:
            trainer = Trainer(cfg, run, resume=resume, on_event=display, device=device, init=init)
            try:
                trainer.run(steps, max_seconds=minutes * 60 if minutes else None)
            finally:
                trainer.close()
    except NeurocodecError as exc:
        _fail(exc)
    except KeyboardInterrupt:
        err.print("interrupted: state saved; continue with --resume")
        raise typer.Exit(130)


@app.command("fit-entropy")
def fit_entropy(
    model: str = typer.Argument(..., help="Model checkpoint (or bundled name) whose codes are modelled."),
    audio: list[str] = typer.Argument(..., help="Folders/manifests/files of training audio (not the eval set)."),
    output: Path = typer.Option(..., "--output", "-o", show_default="required", help="Checkpoint to write: same weights, fitted tables."),
    contexts: int = typer.Option(16, "--contexts", help="Tables per codebook and expert (context clusters + 1)."),
    minutes: float = typer.Option(60.0, "--minutes", help="At most this much audio (random files)."),
    device: Optional[str] = DEVICE,
) -> None:
    """Fit the entropy coder's integer probability tables on real audio and store them with the model."""
    try:
        from ..entropy_fit import fit_entropy_model

        result = fit_entropy_model(model, audio, str(output), contexts, minutes * 60, device)
        typer.echo(json.dumps(result))
    except NeurocodecError as exc:
        _fail(exc)


@app.command("eval")
def eval_(
    inputs: list[str] = typer.Argument(..., help="Folders, audio files, or an eval manifest.json (tools/build_corpus.py)."),
    model: Optional[str] = MODEL,
    bitrates: str = typer.Option("1.5,3,6,12", "--bitrate", "--bitrates", "-b", help="Comma-separated kbps."),
    baseline: str = typer.Option("", "--baseline", help="Comma-separated: opus, nolace (Opus 1.5 + NoLACE, tools/build_opus15.sh), codec2 (run in the same run)."),
    opus_bitrates: Optional[str] = typer.Option(None, "--opus-bitrate", "--opus-bitrates", show_default="the --bitrate list", help="Opus kbps, comma-separated."),
    efforts: str = typer.Option("0", "--effort", help="Comma-separated encoder efforts to compare (0-4)."),
    report: Optional[Path] = typer.Option(None, "--report", show_default="none: the table only", help="Write results.json/.csv, report.md and PNGs here."),
    domain: str = typer.Option("auto", "--domain", help="speech, music, or auto: a manifest's kind, else a speech/ or music/ folder in the path, else a detector (the share of low-energy frames). PESQ and STOI are measured on speech only."),
    limit: Optional[int] = typer.Option(None, "--limit", show_default="all", help="At most this many files of each kind."),
    device: Optional[str] = DEVICE,
    runtime: str = RUNTIME,
    threads: int = THREADS,
) -> None:
    """Round-trip audio through .ncd files (and baselines); print quality, bitrate and speed."""
    try:
        load = _load(model, device, runtime, threads)
        from ..eval.run import aggregate, collect, evaluate
        from ..loader import load_model

        def kbps_list(text: str) -> tuple[float, ...]:
            try:
                return tuple(float(x) for x in text.split(",") if x.strip())
            except ValueError:
                raise typer.BadParameter(f"not a list of numbers: {text!r}") from None

        items = collect(inputs, limit, domain)
        audio_dir = report / "audio" if report else None
        loaded = load_model(**load)
        err.print(f"evaluating {len(items)} files …")
        rows = evaluate(items, loaded, kbps_list(bitrates), tuple(b for b in baseline.split(",") if b),
                        kbps_list(opus_bitrates) if opus_bitrates else None, audio_dir,
                        efforts=tuple(int(e) for e in kbps_list(efforts)))
        print_table(aggregate(rows))
        if report:
            from ..eval.report import write_report

            command = "neurocodec eval " + " ".join(sys.argv[2:])
            for path in write_report(rows, report, audio_dir, "neurocodec evaluation", command):
                err.print(f"wrote {path}")
    except NeurocodecError as exc:
        _fail(exc)


def main() -> None:
    os.environ.setdefault("MALLOC_MMAP_MAX_", "0")  # for processes this one spawns (batch workers)
    keep_freed_memory()  # before anything allocates
    # kill, a closed terminal: unwind like Ctrl-C does, so that no temporary file is left behind (`train` saves
    # its state first: it installs its own SIGTERM handler).
    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, _exit_on_signal)
    # click's exception classes (typer vendors click in recent versions and names only BadParameter publicly).
    usage_error, click_exception = (next(c for c in typer.BadParameter.__mro__ if c.__name__ == name)
                                    for name in ("UsageError", "ClickException"))
    try:
        code = app(standalone_mode=False)
    except usage_error as exc:  # one line, as every other error (click would draw a box)
        command = exc.ctx.command_path if exc.ctx is not None else "neurocodec"
        if exc.format_message():  # (none when help was shown for a bare command)
            _say("error:", "bold red", f"{exc.format_message()} (see: {command} -h)")
        code = 2
    except click_exception as exc:
        _say("error:", "bold red", exc.format_message())
        code = exc.exit_code
    except (typer.Abort, KeyboardInterrupt):
        code = 130
    except ModuleNotFoundError as exc:  # a light install (no torch) running what needs the full one
        if (exc.name or "").split(".")[0] not in ("torch", "librosa", "matplotlib", "pesq", "pystoi", "speechmos"):
            raise
        _say("error:", "bold red", f"this needs {exc.name.split('.')[0]}, which the light install leaves out: "
             "pip install torch==2.13.0 'neurocodec[eval]'")
        code = 6
    sys.exit(code if isinstance(code, int) else 0)


def run() -> None:
    """The `neurocodec` command: `main`, then out without the interpreter's teardown (0.15 s of unloading)."""
    code = 0
    try:
        main()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError, AttributeError):  # a closed pipe: nothing reaches it
            stream.flush()
    os._exit(code)


def _exit_on_signal(signum, frame) -> None:
    raise SystemExit(128 + signum)
