"""Process lifecycle of one training job: start, log, timeout, kill, name the way it ended.

Jobs are started by a small per-process fork server, ``_reaper.py`` (see its docstring): it is a
child subreaper, so every process a job starts -- grandchildren, ``setsid`` daemons, data-loader
workers -- stays findable and is killed when the job ends, times out or is interrupted; and it
dies with its pytest process (parent-death signal, EOF on its stdin, a pidfd on the xdist
controller), taking every job with it, even when pytest is SIGKILLed.  One reaper serves one
pytest process (the controller with -n0, each xdist worker); that process runs one job at a time.
"""

from __future__ import annotations

import atexit
import json
import os
import select
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from training_plugin import safefs
from training_plugin.executors.base import (MSG_OOM_HINT, MSG_OUTSIDE_SIGNAL, OUTSIDE_SIGNALS,
                                            PEAK_SAMPLED, JobCost, RunResult)
from training_plugin.run.signals import interrupt_on_sigterm, restore_sigterm

MSG_REAPER_DIED = (
    "the job supervisor (training_plugin reaper) died while the job ran; "
    "the job's process group was killed"
)
MSG_LEFTOVERS = "[training_plugin] the job ended; {n} process(es) it left running were killed\n"

#: The reaper script (run as a file, ``python -I -S``; also shipped to Ray nodes as text).
REAPER_SCRIPT = Path(__file__).with_name("_reaper.py")
#: Longest wait for the reaper to confirm that a tree is gone after a kill request.
_KILL_WAIT_S = 30.0


class ReaperDied(RuntimeError):
    """The reaper process ended while this process was talking to it."""


class _ReaperClient:
    """This process's connection to its reaper (JSON lines over two pipes)."""

    def __init__(self) -> None:
        in_main = threading.current_thread() is threading.main_thread()
        guards: list[str] = []
        if os.environ.get("PYTEST_XDIST_WORKER"):
            guards.append(str(os.getppid()))  # the xdist controller
        self.owner = os.getpid()
        self.proc = subprocess.Popen(
            [sys.executable, "-I", "-S", str(REAPER_SCRIPT), str(self.owner), "1" if in_main else "0",
             *guards],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            start_new_session=True,
            close_fds=True,
        )
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.out_fd = self.proc.stdin.fileno()
        self.in_fd = self.proc.stdout.fileno()
        self.buf = b""
        self.last_id = 0

    def next_id(self) -> int:
        """A fresh request id."""
        self.last_id += 1
        return self.last_id

    def send(self, **request: object) -> None:
        """Write one request; raise ReaperDied when the reaper is gone."""
        data = (json.dumps(request) + "\n").encode()
        try:
            while data:
                data = data[os.write(self.out_fd, data) :]
        except (BrokenPipeError, OSError) as exc:
            raise ReaperDied(str(exc)) from exc

    def wait_for(self, rid: int, timeout: float | None) -> dict | None:
        """Next reply about request ``rid`` (older replies are dropped); None on timeout."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            while b"\n" in self.buf:
                line, self.buf = self.buf.split(b"\n", 1)
                message = json.loads(line)
                if message.get("id") == rid:
                    return message
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            ready, _, _ = select.select([self.in_fd], [], [], remaining)
            if not ready:
                return None
            chunk = os.read(self.in_fd, 65536)
            if not chunk:
                raise ReaperDied("reaper closed its pipe")
            self.buf += chunk

    def alive(self) -> bool:
        """Whether the reaper process is still running."""
        return self.proc.poll() is None

    def close(self, wait_s: float = 10.0) -> None:
        """Ask the reaper to stop (EOF), which kills whatever runs, and wait for it."""
        try:
            self.proc.stdin.close()  # type: ignore[union-attr]
        except OSError:
            pass
        try:
            self.proc.wait(wait_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        try:
            self.proc.stdout.close()  # type: ignore[union-attr]
        except OSError:
            pass


class _ReaperHolder:
    """The per-process reaper.  A process-wide resource (like subprocess's child list), so it
    lives at module level rather than in a pytest config; forked children get their own."""

    client: _ReaperClient | None = None
    lock = threading.RLock()

    @classmethod
    def get(cls) -> _ReaperClient:
        client = cls.client
        if client is None or client.owner != os.getpid() or not client.alive():
            if client is not None and client.owner == os.getpid():
                client.close(wait_s=1.0)
            client = cls.client = _ReaperClient()
        return client

    @classmethod
    def drop(cls) -> None:
        with cls.lock:
            client, cls.client = cls.client, None
            if client is not None and client.owner == os.getpid():
                client.close()


def shutdown() -> None:
    """Stop this process's reaper (kills any job still running).  Safe to call repeatedly;
    called at pytest_unconfigure and at interpreter exit."""
    _ReaperHolder.drop()


atexit.register(shutdown)


def run_job(
    argv: list[str],
    *,
    cwd: Path,
    env: dict[str, str],
    log_path: Path,
    timeout: float | None = None,
    cgroup_procs: str | None = None,
    rlimit_as: int | None = None,
) -> RunResult:
    """Run ``argv`` (no shell) in ``cwd`` with exactly ``env``; stdout+stderr go to ``log_path``.

    The job runs in its own session and process group.  Its whole process tree is killed on
    timeout (-> ``timed_out=True``), on KeyboardInterrupt or SIGTERM of this process (re-raised
    after cleanup) and when the job ends (processes it left behind; counted in ``leftovers``).
    A process runs one job at a time: concurrent callers (threads) wait for each other.

    ``cgroup_procs`` (a cgroup's ``cgroup.procs``): the job is moved into that group as it
    starts; ``rlimit_as``: its address space is capped (``RLIMIT_AS``).  The result's ``cost``
    has the tree's CPU time and the sampled peak of the tree's RSS, or, when the job went into
    its cgroup (``peak_method`` None: the caller reads the group), its largest process's.  A SIGKILL or SIGTERM
    the plugin did not send, and the reaper's death, are ``infrastructure`` failures.
    """
    with _ReaperHolder.lock:
        return _run_job(argv, cwd=cwd, env=env, log_path=log_path, timeout=timeout,
                        cgroup_procs=cgroup_procs, rlimit_as=rlimit_as)


def _run_job(
    argv: list[str],
    *,
    cwd: Path,
    env: dict[str, str],
    log_path: Path,
    timeout: float | None,
    cgroup_procs: str | None = None,
    rlimit_as: int | None = None,
) -> RunResult:
    log_path = Path(log_path)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    timeout = timeout if timeout and timeout > 0 else None

    def result(**kw: object) -> RunResult:
        fields: dict = dict(returncode=None, duration_s=time.monotonic() - started,
                            timed_out=False, timeout_s=timeout, log_path=log_path)
        fields.update(kw)
        return RunResult(**fields)

    old_term = interrupt_on_sigterm()
    pid: int | None = None
    client = _ReaperHolder.get()
    rid = client.next_id()
    try:
        try:
            limits = {k: v for k, v in (("cgroup", cgroup_procs), ("rlimit_as", rlimit_as)) if v}
            client.send(op="spawn", id=rid, argv=[str(a) for a in argv],
                        cwd=os.path.abspath(cwd), env={str(k): str(v) for k, v in env.items()},
                        log=os.path.abspath(log_path), **limits)
            message = client.wait_for(rid, None)
            assert message is not None
            if message["event"] == "error":
                return result(error=message["message"])
            pid = int(message["pid"])
            in_group = bool(message.get("cgroup"))
            wait = None if timeout is None else max(0.0, started + timeout - time.monotonic())
            message = client.wait_for(rid, wait)
            timed_out = message is None
            if timed_out:
                client.send(op="kill", id=rid)
                message = client.wait_for(rid, None)
                assert message is not None
        except BaseException:
            try:
                client.send(op="kill", id=rid)
                client.wait_for(rid, _KILL_WAIT_S)
            except ReaperDied:
                _kill_group(pid)
            raise
    except ReaperDied:
        _kill_group(pid)
        _ReaperHolder.drop()
        return result(error=MSG_REAPER_DIED, infrastructure=MSG_REAPER_DIED)
    finally:
        restore_sigterm(old_term)
    leftovers = int(message.get("leftovers", 0))
    if leftovers:
        try:
            safefs.append_text(log_path, MSG_LEFTOVERS.format(n=leftovers))
        except OSError:
            pass  # a link the job left where its log was, or a full disk
    if not timed_out and "runtime_s" in message:  # the job's own time, not the clean-up's
        wall = float(message["runtime_s"])
    else:
        wall = time.monotonic() - started
    cost = JobCost(wall_s=wall, cpu_s=message.get("cpu_s"),
                   peak_bytes=int(message.get("peak_bytes") or 0) or None,
                   peak_method=None if in_group else PEAK_SAMPLED)
    code = int(message["returncode"])
    killed = timed_out or bool(message.get("killed"))
    return result(returncode=code, duration_s=wall, timed_out=timed_out, leftovers=leftovers,
                  cost=cost, killed_by_plugin=killed,
                  infrastructure=None if killed else outside_signal(code, hint=not in_group))


def outside_signal(returncode: int | None, hint: bool = True) -> str | None:
    """The infrastructure story of a job ended by a SIGKILL or SIGTERM the plugin did not send
    (``hint``: "out of memory?" for a SIGKILL no cgroup could explain), else None."""
    if returncode is None or -returncode not in OUTSIDE_SIGNALS:
        return None
    name = signal.Signals(-returncode).name
    return MSG_OUTSIDE_SIGNAL.format(
        signal=name, hint=MSG_OOM_HINT if hint and name == "SIGKILL" else "")


def _kill_group(pgid: int | None) -> None:
    """Last resort when the reaper is gone: SIGKILL the job's process group."""
    if pgid is None:
        return
    try:
        os.killpg(pgid, signal.SIGKILL)
    except OSError:
        pass
