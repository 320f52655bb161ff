"""What the command line draws: progress bars, the evaluation table, the training display (rich)."""

from __future__ import annotations

import contextlib
import sys
import time
from typing import Iterator

from rich.console import Console
from rich.markup import escape

PROGRESS_AFTER_S = 1.0  # a progress bar appears when a command has run this long (and stderr is a terminal)


def name(path: str, stdio: str) -> str:
    """A path as the summary line shows it ("-" as `stdio`), never read as markup."""
    return escape(stdio if path == "-" else path)


def speed(seconds: float, elapsed: float) -> str:
    """"×real time" that stays readable for short and slow runs: 3 significant digits, never 0x."""
    x = seconds / max(elapsed, 1e-9)
    return f"{x:.3g}x real time" if x >= 0.001 else f"{elapsed:.1f} s"


@contextlib.contextmanager
def progress_bar(err: Console, quiet: bool, what: str, after: float | None = None) -> Iterator:
    """A callback (done, total) drawing a progress bar on a terminal once the work has taken `after` seconds
    (None: `PROGRESS_AFTER_S`)."""
    after = PROGRESS_AFTER_S if after is None else after
    if quiet or not err.is_terminal:
        yield None
        return
    from rich.progress import BarColumn, Progress, TaskProgressColumn, TimeRemainingColumn

    start = time.monotonic()
    bar = Progress(f"[bold]{what}", BarColumn(), TaskProgressColumn(), TimeRemainingColumn(), console=err,
                   transient=True)
    task = None

    def update(done: int, total: int | None) -> None:
        nonlocal task
        if task is None:
            if time.monotonic() - start < after:
                return
            bar.start()
            task = bar.add_task(what, total=total)
        bar.update(task, completed=done, total=total)

    try:
        yield update
    finally:
        if task is not None:
            bar.stop()



def print_table(agg: list[dict]) -> None:
    from rich.table import Table

    from ..eval.run import METRICS

    extra = ("encode_x_realtime", "decode_x_realtime", "wideband")
    cols = [c for c in ("files", *METRICS, *extra) if any(c in a for a in agg)]
    table = Table(title="quality vs bitrate (means over files)", header_style="bold")
    for c in ("kind", "system", "bitrate", *cols):
        table.add_column(c.replace("_x_realtime", " ×RT").replace("_distance", " dist"), no_wrap=True,
                         justify="right" if c not in ("kind", "system") else "left")
    for a in agg:
        cells = [a["kind"], a["system"], f"{a['bitrate']:g}"]
        cells += ["–" if c not in a else (f"{a[c]:.3f}" if isinstance(a[c], float) else str(a[c])) for c in cols]
        table.add_row(*cells)
    # Piped output has no width of its own; a table squeezed to 80 columns would be unreadable.
    console = Console()
    Console(width=None if console.is_terminal else 220).print(table)



class TrainDisplay:
    """Shows trainer events: a rich progress bar with the latest losses, or plain lines with --quiet.

    The losses shown are the total, every term of the config's table (`config.LOSS_TERMS`) with a non-zero weight
    (the weights come in the run's start record), and the discriminator's. Alarms always go to stderr as loud
    warning lines, whatever the mode.
    """

    def __init__(self, quiet: bool, console: Console):
        from ..config import LOSS_TERMS

        self.quiet = quiet
        self.console = console
        self.progress = None
        self.task = None
        self.keys = ("loss", *(f"loss_{t}" for t in LOSS_TERMS), "loss_d")

    def __enter__(self) -> "TrainDisplay":
        if not self.quiet:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self.progress = Progress(TextColumn("[bold]train"), BarColumn(), MofNCompleteColumn(),
                                     TimeRemainingColumn(), TextColumn("{task.fields[info]}"), console=self.console)
            self.progress.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        if self.progress is not None:
            self.progress.__exit__(*exc)

    def _line(self, text: str) -> None:
        if self.progress is not None:
            self.progress.console.print(text, markup=False, highlight=False)
        else:
            print(text, file=sys.stderr, flush=True)

    def __call__(self, event: dict) -> None:
        kind = event.get("type")
        if kind == "start":
            weights = event.get("loss_weights") or {}
            self.keys = ("loss", *(f"loss_{t}" for t, w in weights.items() if w), "loss_d")
            if self.progress is not None:
                self.task = self.progress.add_task("train", total=event["target"], completed=event["step"], info="")
        elif kind == "step":
            info = f"{event['steps_per_s']:.2f} step/s  " + "  ".join(
                f"{k.removeprefix('loss_')} {event[k]:.3f}" for k in self.keys if k in event)
            if self.progress is not None and self.task is not None:
                self.progress.update(self.task, completed=event["step"], info=info)
            else:
                self._line(f"step {event['step']}/{event['target']}  {info}")
        elif kind == "eval":
            from ..metrics import split_key

            metrics = "  ".join(f"{k} {v:.3f}" for k, v in event.items() if split_key(k) and isinstance(v, float))
            self._line(f"eval @ {event['step']}: {metrics}")
            for alarm in event.get("alarms", []):
                self.console.print(f"[bold red]ALARM[/] step {event['step']}: {escape(alarm)}", markup=True,
                                   soft_wrap=True)
        elif kind in ("stopped", "done"):
            self._line(f"{kind} at step {event['step']}" + (f": {event['reason']}" if "reason" in event else ""))
