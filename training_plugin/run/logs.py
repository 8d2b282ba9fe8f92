"""Reading a job's log from its end: the tail shown in a failure report, the last line shown
in the live status.  Both seek to the end and read a bounded window, never the whole file."""

from __future__ import annotations

import os
from pathlib import Path


def log_tail(log_path: Path, lines: int | None = 20) -> str:
    """The last ``lines`` lines of a log file (decoded leniently; ``None``: every line of its
    last 64 KiB); "" when it does not exist."""
    try:
        with open(log_path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - 64 * 1024))
            data = fh.read()
    except OSError:
        return ""
    text = data.decode("utf-8", errors="replace")
    return "\n".join(text.splitlines()[-lines:] if lines is not None else text.splitlines())


def last_log_line(path: Path, max_bytes: int = 4096) -> str:
    """The last non-empty line of a log (carriage-return progress bars included), or ""."""
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - max_bytes))
            data = fh.read()
    except OSError:
        return ""
    text = data.decode("utf-8", errors="replace").replace("\r", "\n")
    for line in reversed(text.splitlines()):
        if line.strip():
            return " ".join(line.split())
    return ""
