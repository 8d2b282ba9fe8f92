"""Live progress on the controller's terminal: running jobs, elapsed time, last log line.

Shown only when the terminal is a TTY and verbosity >= 0 (``-q`` and CI logs stay calm: nothing
is written there).  A daemon thread redraws one status line every ``interval_s`` seconds at the
end of the terminal's current line; every write of pytest's terminal writer first erases the
status (a wrapper on the writer's ``write``, under one lock), so normal output is never garbled,
and the status reappears on the next tick.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from training_plugin import pytest_compat
from training_plugin.executors.base import format_duration
from training_plugin.run.logs import last_log_line

#: Seconds between two redraws of the status line.
REFRESH_S = 2.0
_CLEAR = "\r\x1b[K"


@dataclass
class _Job:
    job_id: str
    log_path: Path
    started: float = field(default_factory=time.monotonic)


def format_elapsed(seconds: float) -> str:
    """Whole seconds, as a live counter ticks: 5 -> "5s", 75 -> "1m15s", 3700 -> "1h01m"
    (``format_duration`` of the whole seconds, without its tenths below 10 s)."""
    whole = int(seconds)
    return f"{whole}s" if whole < 10 else format_duration(whole)


class Progress:
    """Tracks the running jobs and draws the status line on a TerminalWriter."""

    def __init__(self, tw: Any, interval_s: float = REFRESH_S,
                 clock: Callable[[], float] = time.monotonic, fd: int | None = None) -> None:
        self.tw = tw
        self.fd = fd
        self.interval_s = interval_s
        self.clock = clock
        self.jobs: dict[str, _Job] = {}
        #: The executor's own view, when it runs many jobs at once for one waiting item (the
        #: Ray executor): ``() -> (running [(job id, log path, started)], queued count)``;
        #: it then replaces what the items' reports say.
        self.source: Callable[[], tuple[list[tuple[str, Path, float]], int]] | None = None
        self.lock = threading.RLock()
        self.shown = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._orig_write: Any = None

    # -- jobs ----------------------------------------------------------------------------------
    def job_started(self, nodeid: str, log_path: str | Path) -> None:
        """A job began (its setup report arrived)."""
        with self.lock:
            self.jobs[nodeid] = _Job(nodeid.rsplit("::", 1)[-1], Path(log_path), self.clock())

    def job_finished(self, nodeid: str) -> None:
        """A job ended, failed or its worker crashed."""
        with self.lock:
            self.jobs.pop(nodeid, None)

    def status_text(self) -> str:
        """The status line, e.g. ``running 2: als 1m12s (epoch 3/10 loss 0.41) | mri 40s``
        (``running 2, 5 queued: ...`` from an executor that queues)."""
        queued = 0
        if self.source is not None:
            running, queued = self.source()
            jobs = [_Job(job_id, Path(log), started) for job_id, log, started in running]
        else:
            with self.lock:
                jobs = list(self.jobs.values())
        if not jobs:
            return f"{queued} queued" if queued else ""
        now = self.clock()
        parts = []
        for job in sorted(jobs, key=lambda j: j.started):
            line = last_log_line(job.log_path)
            tail = f" ({line})" if line else ""
            parts.append(f"{job.job_id} {format_elapsed(now - job.started)}{tail}")
        head = f"running {len(jobs)}" + (f", {queued} queued" if queued else "")
        return f"{head}: " + " | ".join(parts)

    # -- drawing -------------------------------------------------------------------------------
    def _raw(self, text: str) -> None:
        """Write around the writer's line bookkeeping: straight to the terminal's fd when given
        (a dup taken before any test ran, so pytest's fd capture during a -n0 job does not
        swallow it), else to the writer's file."""
        self.tw.flush()
        if self.fd is None:
            pytest_compat.terminal_file(self.tw).write(text)
            pytest_compat.terminal_file(self.tw).flush()
            return
        data = text.encode(errors="replace")
        while data:
            data = data[os.write(self.fd, data) :]

    def _erase(self) -> None:
        if self.shown:
            self._raw(_CLEAR + pytest_compat.current_line(self.tw))
            self.shown = False

    def draw(self) -> None:
        """Redraw the status after the terminal's current (partial) line, if it fits."""
        with self.lock:
            text = self.status_text()
            current = pytest_compat.current_line(self.tw)
            room = self.tw.fullwidth - len(current) - 4
            self._erase()
            if not text or room < 20:
                return
            if len(text) > room:
                text = text[: room - 3] + "..."
            self._raw(_CLEAR + current + ("  " if current else "") + text)
            self.shown = True

    def _write(self, msg: str, **kw: Any) -> None:
        with self.lock:
            self._erase()
            self._orig_write(msg, **kw)

    # -- lifetime ------------------------------------------------------------------------------
    def start(self) -> None:
        """Wrap the writer and start the redraw thread."""
        self._orig_write = self.tw.write
        self.tw.write = self._write
        self._thread = threading.Thread(target=self._run, name="training-progress", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.draw()
            except Exception:  # noqa: BLE001 - a status line must never break the run
                return

    def stop(self) -> None:
        """Stop the thread, erase the status and unwrap the writer."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        with self.lock:
            self._erase()
            if self._orig_write is not None:
                del self.tw.write  # the instance attribute; the class method shows again
                self._orig_write = None
