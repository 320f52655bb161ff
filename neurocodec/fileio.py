"""Atomic output: a file appears complete under its name or not at all."""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Iterator

STDIO = "-"


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path beside `path`; rename it onto `path` on success, delete it on any error.

    `path == "-"` writes the finished temporary file to stdout instead, so a pipe never receives half a file
    from a command that then fails.
    """
    if str(path) == STDIO:
        fd, tmp = tempfile.mkstemp(suffix=suffix or ".tmp")
    else:
        target = Path(path)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=(suffix or target.suffix) + ".part", dir=target.parent if str(target.parent) else ".")
    os.close(fd)
    tmp_path = Path(tmp)

    try:
        yield tmp_path
        if str(path) == STDIO:
            with open(tmp_path, "rb") as src:
                shutil.copyfileobj(src, sys.stdout.buffer)
            sys.stdout.buffer.flush()
        else:
            # mkstemp made the file private (0600); give it the permissions a plain open() would.
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(tmp_path, 0o666 & ~umask)
            os.replace(tmp_path, path)
    finally:
        tmp_path.unlink(missing_ok=True)


def read_input_bytes(path: str | os.PathLike) -> bytes:
    """All bytes of a file, or of stdin for "-"."""
    if str(path) == STDIO:
        return sys.stdin.buffer.read()
    return Path(path).read_bytes()
