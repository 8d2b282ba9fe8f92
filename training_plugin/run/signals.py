"""SIGTERM ends a session like Ctrl-C: the running job's tree is killed, reports and JUnit XML
are still written, and the exit code is 2."""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from typing import Any

#: The interruption a SIGTERM of pytest raises (a KeyboardInterrupt).
MSG_TERMINATED = "pytest received {signal}"


class TerminatedBySignal(KeyboardInterrupt):
    """SIGTERM arrived while a job ran; handled like Ctrl-C (tree killed, session interrupted)."""


def _noted(_signum: int, _frame: object) -> None:
    """A further SIGTERM between the first one and ``Shutdown.calm``: nothing to do."""


def _raise_terminated(signum: int, _frame: object) -> None:
    # A further SIGTERM must not interrupt pytest's handling of this one (its terminal reporter
    # formats the interruption before the session's ``calm`` takes the signals over).
    signal.signal(signum, _noted)
    raise TerminatedBySignal(MSG_TERMINATED.format(signal=signal.Signals(signum).name))


def interrupt_on_sigterm() -> object:
    """Make SIGTERM raise TerminatedBySignal (a KeyboardInterrupt) in the main thread; return
    the previous handler for ``restore_sigterm`` (None when not on the main thread)."""
    if threading.current_thread() is not threading.main_thread():
        return None
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    return previous if previous is not None else signal.SIG_DFL


def restore_sigterm(previous: object) -> None:
    """Undo ``interrupt_on_sigterm``."""
    if previous is not None and threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, previous)  # type: ignore[arg-type]


class _Hurry(Exception):
    """A further Ctrl-C or SIGTERM while the session shuts down: cut the slow part short."""


class Shutdown:
    """While a session shuts down, Ctrl-C and SIGTERM cut the slow part (closing the executor)
    short and never interrupt the writing of the records."""

    def __init__(self) -> None:
        #: signal handlers replaced while the session shuts down (given back by ``restore``)
        self.replaced: dict[int, Any] = {}
        self.in_slow_part = False

    def calm(self, session: Any) -> None:
        """Take Ctrl-C and SIGTERM over (once, on the main thread); the session's own SIGTERM
        handler (``session.old_sigterm``) is what ``restore`` gives back."""
        if self.replaced or threading.current_thread() is not threading.main_thread():
            return
        for signum in (signal.SIGINT, signal.SIGTERM):
            self.replaced[signum] = signal.signal(signum, self._late_signal)
        if session.old_sigterm is not None:
            self.replaced[signal.SIGTERM], session.old_sigterm = session.old_sigterm, None

    def _late_signal(self, signum: int, _frame: object) -> None:
        if self.in_slow_part:
            raise _Hurry(signal.Signals(signum).name)

    @contextlib.contextmanager
    def slow_part(self) -> Iterator[None]:
        """A part a further signal may cut short (the signal ends it, quietly)."""
        self.in_slow_part = True
        try:
            yield
        except (_Hurry, KeyboardInterrupt):
            pass
        finally:
            self.in_slow_part = False

    def restore(self) -> None:
        """Give the replaced handlers back."""
        for signum, handler in self.replaced.items():
            signal.signal(signum, handler)
        self.replaced.clear()
