"""A command's arguments checked before anything heavy loads (torch, the model's weights): paths, the output's
name and whether it may be replaced, and the options a model's config alone decides. No torch here, so that a typo
is answered in a fraction of a second. The library checks the same things again where it does the work.
"""

from __future__ import annotations

import math
import os
import sys
from pathlib import Path

from .audio import output_format
from .checkpoint import read_config, resolve_model
from .errors import AudioError, ConfigError, InputError, OutputError
from .fileio import STDIO, check_distinct, is_stream
from .limits import MAX_EFFORT

NCD_SUFFIX = ".ncd"


def max_seconds(hours: float) -> float:
    """`--max-hours` → seconds; it must be a positive, finite number (NaN would silently mean no limit)."""
    if not (isinstance(hours, (int, float)) and math.isfinite(hours) and hours > 0):
        raise ConfigError(f"--max-hours {hours}: give a positive number of hours")
    return hours * 3600.0


def _input(path: str) -> None:
    if is_stream(path):
        return
    p = Path(path)
    if p.is_dir():
        raise InputError(f"{path}: is a folder, not a file")
    if not p.exists():
        raise InputError(f"{path}: no such file")
    if not os.access(p, os.R_OK):
        raise InputError(f"{path}: cannot read (permission denied)")


def _output(path: str, what: str, force: bool) -> None:
    """A terminal is not a place for binary data; an existing regular file is replaced only with `force`."""
    if path == STDIO:
        if sys.stdout is not None and not sys.stdout.closed and sys.stdout.isatty():
            raise OutputError(f"stdout is a terminal: refusing to print binary {what} data (redirect it, "
                              "e.g. > out, or give a file name)")
        return
    if not force and not is_stream(path) and os.path.isfile(path):
        raise OutputError(f"{path}: exists; pass --force (-f) to replace it")


def check_encode(input: str | None, output: str | None, model: str | None, kbps: float | None,
                 quality: float | None, effort: int, force: bool = False, live: bool = False) -> None:
    """`neurocodec encode`'s arguments, before the model loads (None for the paths: the options alone, for many
    files; the bitrate is then checked for one channel)."""
    if quality is not None and kbps is not None:
        raise ConfigError("--quality (variable rate) and --bitrate (constant rate) exclude each other")
    if live and (quality is not None or effort or input is None):
        raise ConfigError("--live codes one stream at constant rate: without --quality, --effort or -o")
    if not 0 <= effort <= MAX_EFFORT:
        raise ConfigError(f"--effort {effort}: give 0 to {MAX_EFFORT}")
    if input is None or output is None:
        path = resolve_model(model)
        if path.is_file():
            config = read_config(path)
            config.n_q_for_quality(quality) if quality is not None else config.n_q_for_total_kbps(kbps)
        return
    _input(input)
    check_distinct(input, output)
    suffix = "" if is_stream(output) else Path(output).suffix.lower()
    if suffix and suffix != NCD_SUFFIX:
        raise OutputError(f"{output}: encode writes .ncd files; name it {Path(output).stem}{NCD_SUFFIX} (or give "
                          "no extension)")
    _output(output, ".ncd", force)
    path = resolve_model(model)
    if not path.is_file():
        return  # a missing model file is the loader's to report
    config = read_config(path)
    channels = 1
    if not is_stream(input) and not live:
        import soundfile as sf

        try:
            channels = sf.info(input).channels
        except (sf.LibsndfileError, RuntimeError, TypeError) as exc:
            raise AudioError(f"{input}: not a readable audio file ({str(exc).strip().splitlines()[-1]})") from None
    if quality is not None:
        config.n_q_for_quality(quality, channels)
    else:
        config.n_q_for_total_kbps(kbps, channels)


def check_decode(input: str, output: str, force: bool = False) -> None:
    """`neurocodec decode`'s arguments, before the model loads."""
    _input(input)
    check_distinct(input, output)
    output_format(output)  # an extension we cannot write (.mp3) is refused now, not after decoding
    _output(output, "WAV", force)
