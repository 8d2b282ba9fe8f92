"""One session per output folder: an exclusive ``fcntl.flock`` on ``<output-dir>/.lock``.

The controller takes the lock when its session starts (not under ``--collect-only``, which
writes nothing; not on xdist workers) and holds it until the session ends; the kernel releases
it when the process dies, however it dies.  The lock file names its holder (pid, command,
start time), so that a second session on the same folder stops at once with a usage error
that says who holds it and how to run beside it.
"""

from __future__ import annotations

import fcntl
import json
import os
import shlex
import sys
import time
from pathlib import Path

import pytest

from training_plugin import safefs

LOCK_FILE = ".lock"
MSG_LOCKED = (
    "the output folder {folder} is in use by another training session (pid {pid}, started "
    "{started}: {command}); wait for it to end, or give this session a folder of its own "
    "with --output-dir=OTHER"
)
MSG_NO_FOLDER = "--output-dir {folder}: cannot create the output folder: {why}"


class FolderLock:
    """The held lock of one output folder (``release`` gives it back)."""

    def __init__(self, folder: Path, fd: int) -> None:
        self.folder = folder
        self.fd: int | None = fd

    def release(self) -> None:
        """Give the lock back (closing the descriptor unlocks it)."""
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


def holder(fd: int) -> dict[str, str]:
    """What the lock file says of its holder ({} when unreadable)."""
    try:
        data = json.loads(os.pread(fd, 65536, 0) or b"{}")
    except (OSError, ValueError):
        return {}
    return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}


def acquire(folder: Path) -> FolderLock:
    """Create ``folder`` if needed and lock it; ``pytest.UsageError`` when another session
    holds it (naming its pid, command and start time) or when the folder cannot be made."""
    folder = Path(os.path.abspath(folder))
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd = safefs.open_no_follow(folder / LOCK_FILE, os.O_RDWR | os.O_CREAT)
    except OSError as exc:
        why = exc.strerror or str(exc)
        raise pytest.UsageError(MSG_NO_FOLDER.format(folder=folder, why=why)) from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        other = holder(fd)
        os.close(fd)
        raise pytest.UsageError(MSG_LOCKED.format(
            folder=folder, pid=other.get("pid", "?"), started=other.get("started", "?"),
            command=other.get("command", "?"))) from None
    except OSError:
        os.close(fd)
        raise
    info = {"pid": os.getpid(), "command": shlex.join(sys.argv),
            "started": time.strftime("%Y-%m-%d %H:%M:%S %z")}
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(info) + "\n").encode(), 0)
    except OSError:
        pass  # a full disk: the lock holds all the same, only its holder goes unnamed
    return FolderLock(folder, fd)
