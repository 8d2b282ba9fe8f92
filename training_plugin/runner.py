"""Process lifecycle of one training job: start, log, timeout, kill, name the way it ended.

First, simple version: the job runs in its own process group (own session) and the whole group is
killed on timeout, on KeyboardInterrupt and after a normal end (leftover grandchildren).  The
hardened version (a per-process reaper with a child subreaper) keeps exactly this interface.
"""

from __future__ import annotations

import os
import pathlib
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

#: Seconds between SIGTERM and SIGKILL when a job's process tree is stopped.
KILL_GRACE_S = 2.0

MSG_TIMED_OUT = "timed out after {timeout} s (process tree killed)"
MSG_KILLED = "killed by {signal}"
MSG_EXIT_CODE = "exit code {code}"
MSG_INTERRUPTED = "interrupted (process tree killed)"


def _format_seconds(value: float) -> str:
    """Render a timeout like a user wrote it: 60 -> "60", 0.5 -> "0.5"."""
    return f"{value:g}"


@dataclass(frozen=True)
class RunResult:
    """How one job's process ended."""

    returncode: int | None
    duration_s: float
    timed_out: bool
    timeout_s: float | None
    log_path: pathlib.Path
    interrupted: bool = False

    @property
    def ok(self) -> bool:
        """True when the job exited with code 0 within its timeout."""
        return self.returncode == 0 and not self.timed_out and not self.interrupted

    @property
    def signal_name(self) -> str | None:
        """Name of the signal that killed the job ("SIGKILL"), or None."""
        if self.returncode is None or self.returncode >= 0:
            return None
        try:
            return signal.Signals(-self.returncode).name
        except ValueError:
            return f"signal {-self.returncode}"

    def describe(self) -> str:
        """One short phrase for the failure report: "exit code 2", "killed by SIGSEGV" ..."""
        if self.timed_out:
            return MSG_TIMED_OUT.format(timeout=_format_seconds(self.timeout_s or 0.0))
        if self.interrupted:
            return MSG_INTERRUPTED
        name = self.signal_name
        if name is not None:
            text = MSG_KILLED.format(signal=name)
            return text + " (out of memory?)" if name == "SIGKILL" else text
        if self.returncode is None:
            return "did not run"
        return MSG_EXIT_CODE.format(code=self.returncode)


def _kill_group(pgid: int, grace_s: float = KILL_GRACE_S) -> None:
    """SIGTERM the process group, wait up to ``grace_s`` for it to empty, then SIGKILL it."""
    try:
        os.killpg(pgid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)
    try:
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def run_job(
    argv: list[str],
    *,
    cwd: Path,
    env: dict[str, str],
    log_path: Path,
    timeout: float | None = None,
) -> RunResult:
    """Run ``argv`` (no shell) in ``cwd`` with exactly ``env``; stdout+stderr go to ``log_path``.

    The job gets its own process group; its whole tree is killed on timeout, on
    KeyboardInterrupt (re-raised after cleanup) and after it ends (leftover grandchildren).
    """
    log_path = Path(log_path)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    with open(log_path, "wb") as log:
        try:
            proc = subprocess.Popen(
                argv,
                cwd=cwd,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        except OSError as exc:
            log.write(f"could not start {argv[0]!r}: {exc}\n".encode())
            return RunResult(127, time.monotonic() - started, False, timeout, log_path)
    timed_out = False
    try:
        try:
            returncode: int | None = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            timed_out = True
            _kill_group(proc.pid)
            returncode = proc.wait()
    except BaseException:
        _kill_group(proc.pid)
        proc.wait()
        raise
    _kill_group(proc.pid, grace_s=0.5)
    return RunResult(returncode, time.monotonic() - started, timed_out, timeout, log_path)


def log_tail(log_path: Path, lines: int = 20) -> str:
    """The last ``lines`` lines of a log file (decoded leniently); "" when it does not exist."""
    try:
        with open(log_path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - 64 * 1024))
            data = fh.read()
    except OSError:
        return ""
    text = data.decode("utf-8", errors="replace")
    return "\n".join(text.splitlines()[-lines:])
