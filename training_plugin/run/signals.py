"""SIGTERM ends a session like Ctrl-C: the running job's tree is killed, reports and JUnit XML
are still written, and the exit code is 2."""

from __future__ import annotations

import signal
import threading

#: The interruption a SIGTERM of pytest raises (a KeyboardInterrupt).
MSG_TERMINATED = "pytest received {signal}"


class TerminatedBySignal(KeyboardInterrupt):
    """SIGTERM arrived while a job ran; handled like Ctrl-C (tree killed, session interrupted)."""


def _raise_terminated(signum: int, _frame: object) -> None:
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
