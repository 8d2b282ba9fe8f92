"""Reading a job's log from its end: the tail shown in a failure report, the last line shown
in the live status.  Both seek to the end and read a bounded window, never the whole file, and
never follow a symbolic link (a job that put a link where its log was gets an empty tail)."""

from __future__ import annotations

import os
import stat
from pathlib import Path


def _read_end(path: Path, max_bytes: int) -> bytes:
    """The last ``max_bytes`` of a regular file, opened without following a link (anything
    but a regular file reads as empty)."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    with open(fd, "rb") as fh:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return b""
        fh.seek(0, os.SEEK_END)
        size = fh.tell()
        fh.seek(max(0, size - max_bytes))
        return fh.read()


def log_tail(log_path: Path, lines: int | None = 20) -> str:
    """The last ``lines`` lines of a log file (decoded leniently; ``None``: every line of its
    last 64 KiB); "" when it does not exist."""
    try:
        data = _read_end(log_path, 64 * 1024)
    except OSError:
        return ""
    text = data.decode("utf-8", errors="replace")
    return "\n".join(text.splitlines()[-lines:] if lines is not None else text.splitlines())


def last_log_line(path: Path, max_bytes: int = 4096) -> str:
    """The last non-empty line of a log (carriage-return progress bars included), or ""."""
    try:
        data = _read_end(path, max_bytes)
    except OSError:
        return ""
    text = data.decode("utf-8", errors="replace").replace("\r", "\n")
    for line in reversed(text.splitlines()):
        if line.strip():
            return " ".join(line.split())
    return ""
