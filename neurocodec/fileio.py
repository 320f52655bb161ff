"""Where bytes come from and go to: atomic outputs, non-regular targets, bounded reads, interrupted runs.

Outputs. A regular file appears complete under its name or not at all: it is written to a hidden temporary file
beside it and renamed at the end. A symbolic link is followed: the file it points to is replaced and the link
stays a link. A target that is not a regular file (`/dev/null`, `/dev/stdout`, a terminal, a FIFO) is never
replaced: the finished temporary file is copied into it, as for `-` (stdout), so a pipe never receives half a
file from a command that then fails. Every failure to write is one `OutputError` line.

Inputs. `-`, FIFOs, process substitution (`<(…)`) and character devices are streams; they are read in bounded
pieces, never "until memory runs out": the callers say how many bytes a stream may hold.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import stat
import sys
import tempfile
from pathlib import Path
from typing import BinaryIO, Iterator

from .errors import OutputError

STDIO = "-"
PIECE = 1 << 20  # bytes per read from a stream

# errno values that mean "this output cannot be written", as opposed to a bug.
_OUTPUT_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS, errno.EACCES, errno.EPERM, errno.EPIPE,
                  errno.EBADF, errno.EIO, errno.ENAMETOOLONG, errno.ENOENT, errno.ENOTDIR, errno.EISDIR}


def is_stream(path: str | os.PathLike) -> bool:
    """Whether reading `path` means reading a stream (stdin, a FIFO, a character device, a socket)."""
    if str(path) == STDIO:
        return True
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return False
    return not stat.S_ISREG(mode) and not stat.S_ISDIR(mode)


def output_failure(path: str | os.PathLike, exc: OSError) -> OutputError:
    where = "stdout" if str(path) == STDIO else str(path)
    reason = {errno.ENOSPC: "the disk is full", errno.EDQUOT: "the disk quota is exceeded",
              errno.EPIPE: "the reader closed the pipe", errno.EBADF: "it is closed",
              errno.ENAMETOOLONG: "the name is too long"}.get(exc.errno, exc.strerror or str(exc))
    return OutputError(f"{where}: cannot write ({reason})")


def _writable_folder(target: Path) -> Path:
    folder = target.parent if str(target.parent) else Path(".")
    if target.is_dir():
        raise OutputError(f"{target}: is a folder; give a file name")
    if not folder.is_dir():
        raise OutputError(f"{target}: the folder {folder} does not exist")
    return folder


def check_distinct(input: str | os.PathLike, output: str | os.PathLike) -> None:
    """Refuse to write over the input: `encode a.wav a.wav` would destroy it."""
    if STDIO in (str(input), str(output)):
        return
    try:
        same = os.path.samefile(input, output)
    except OSError:
        return  # the output does not exist yet (or the input does not: the reader says so)
    if same:
        raise OutputError(f"{output}: is the input file; writing it would destroy the input")


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path to write; on success it becomes `path` (see the module docstring for links,
    devices, FIFOs and "-"); on any error, or an interrupt, it is deleted and `path` is left as it was."""
    stream = is_stream(path)  # "-" too
    if str(path) == STDIO and (sys.stdout is None or sys.stdout.closed):
        raise OutputError("stdout: cannot write (it is closed)")  # before any work is done
    try:
        if stream:
            fd, tmp = tempfile.mkstemp(prefix="neurocodec-", suffix=suffix or ".tmp")
        else:
            target = Path(os.path.realpath(path))  # a link's target is written; the link stays
            folder = _writable_folder(target)
            # A short name: the target's own name may already be near the file system's limit.
            fd, tmp = tempfile.mkstemp(prefix=".neurocodec-", suffix=(suffix or target.suffix)[:16] + ".part",
                                       dir=folder)
    except OSError as exc:
        raise output_failure(path, exc) from None
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        try:
            yield tmp_path
            if stream:
                _copy_into(tmp_path, path)
            else:
                # mkstemp made the file private (0600); give it the permissions a plain open() would.
                umask = os.umask(0)
                os.umask(umask)
                os.chmod(tmp_path, 0o666 & ~umask)
                os.replace(tmp_path, target)
        except OSError as exc:
            if exc.errno in _OUTPUT_ERRNOS:
                raise output_failure(path, exc) from None
            raise
    finally:
        tmp_path.unlink(missing_ok=True)


def _copy_into(tmp: Path, path: str | os.PathLike) -> None:
    with open(tmp, "rb") as src:
        if str(path) == STDIO:
            try:
                shutil.copyfileobj(src, sys.stdout.buffer)
                sys.stdout.buffer.flush()
            except (OSError, ValueError) as exc:
                # Nobody reads stdout any more: say so once, and keep the interpreter from failing again at exit.
                with contextlib.suppress(OSError):
                    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
                raise output_failure(path, exc if isinstance(exc, OSError) else OSError(errno.EBADF, "closed")) from None
        else:
            with open(path, "wb") as dst:
                shutil.copyfileobj(src, dst)


@contextlib.contextmanager
def open_input(path: str | os.PathLike) -> Iterator[BinaryIO]:
    """A binary reader of a file, or of stdin for "-". Raises OSError as open() does."""
    if str(path) == STDIO:
        if sys.stdin is None or sys.stdin.closed:
            raise OSError(errno.EBADF, "stdin is closed")
        yield sys.stdin.buffer
    else:
        with open(path, "rb") as f:
            yield f


@contextlib.contextmanager
def live_output(path: str | os.PathLike) -> Iterator[BinaryIO]:
    """Live coding's output: a stream (stdout, a FIFO, a device) is written directly, each write flushed as it is
    made (a live receiver cannot wait for the end; what it received is valid up to the last flush); a regular file
    is still written atomically (`atomic_path`)."""
    if not is_stream(path):
        with atomic_path(path) as tmp, open(tmp, "wb") as out:
            yield out
        return
    if str(path) == STDIO and (sys.stdout is None or sys.stdout.closed):
        raise OutputError("stdout: cannot write (it is closed)")
    try:
        target = sys.stdout.buffer if str(path) == STDIO else open(path, "wb")
    except OSError as exc:
        raise output_failure(path, exc) from None
    try:
        yield _Flushing(target)
        target.flush()
    except OSError as exc:
        if exc.errno in _OUTPUT_ERRNOS:
            with contextlib.suppress(OSError):  # nobody reads any more: keep the interpreter from failing at exit
                os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            raise output_failure(path, exc) from None
        raise
    finally:
        if target is not sys.stdout.buffer:
            with contextlib.suppress(OSError):
                target.close()


class _Flushing:
    """A binary writer whose every write is flushed."""

    def __init__(self, out: BinaryIO):
        self.out = out

    def write(self, data: bytes) -> int:
        n = self.out.write(data)
        self.out.flush()
        return n

    def flush(self) -> None:
        self.out.flush()


def read_bounded(source: BinaryIO, limit: int, first: bytes = b"") -> bytes | None:
    """`first` plus the rest of `source`, or None when that would exceed `limit` bytes (nothing more is read)."""
    parts, size = [first], len(first)
    while True:
        piece = source.read(PIECE)
        if not piece:
            return b"".join(parts)
        size += len(piece)
        if size > limit:
            return None
        parts.append(piece)


def release_free_memory() -> None:
    """Hand memory the process has freed back to the system (glibc's `malloc_trim`; elsewhere nothing). The command
    line keeps freed memory for reuse (it is faster), so a long job that allocates in phases calls this between
    them to keep its peak at one phase's."""
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def keep_freed_memory() -> None:
    """glibc's malloc returns big arrays to the system with mmap/munmap on every call, which cost 35-45 % of
    inference time here: keep them in the heap instead (the command line does, before anything allocates;
    `release_free_memory` hands them back between phases). Elsewhere nothing."""
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        m_trim_threshold, m_mmap_max = -1, -4
        libc.mallopt(m_mmap_max, 0)
        libc.mallopt(m_trim_threshold, 1 << 30)
    except (OSError, AttributeError):
        pass
