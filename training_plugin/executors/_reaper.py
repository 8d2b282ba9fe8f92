"""Per-pytest-process fork server that starts training jobs and kills their whole process trees.

Run as ``python -I -S path/to/_reaper.py PARENT_PID PDEATHSIG GUARD_PID...`` by ``runner.py``;
stdlib only and no package import, so it starts in a few tens of milliseconds, once per pytest
process (the controller with -n0, each xdist worker).

Why it can promise that no process of a job survives:
- it is a child subreaper (``PR_SET_CHILD_SUBREAPER``): every orphaned descendant of a job
  (a grandchild whose parent exited, a ``setsid`` daemon) is reparented to it, so the job's tree
  is exactly "every process whose parent chain leads here", found by walking ``/proc``;
- it dies with its pytest process: ``PR_SET_PDEATHSIG=SIGTERM`` (checked against the race with
  ``getppid``), EOF on stdin, and a pidfd per guard process (the xdist controller of a worker),
  each of which makes it kill every tree, reap and exit;
- should the reaper itself be SIGKILLed, its client (runner.py) sees EOF on the pipe and kills
  the job's process group.  (Jobs are started with posix_spawn, not fork + Python code in the
  child: 2-4 ms less per job, which the 100-trivial-jobs bench needs; the price is no
  parent-death signal on the job's main process, which only mattered if the reaper and pytest
  were SIGKILLed together.)

Protocol, one JSON object per line.  Requests on stdin:
  {"op": "spawn", "id": N, "argv": [...], "cwd": "...", "env": {...}, "log": "..."}
  {"op": "kill", "id": N}
Replies on stdout:
  {"event": "started", "id": N, "pid": P}
  {"event": "error", "id": N, "message": "..."}        (the job could not be started)
  {"event": "exit", "id": N, "returncode": R, "leftovers": K, "killed": bool, "runtime_s": S}
``returncode`` is subprocess-style (negative = signal); ``leftovers`` counts the processes of the
tree still alive after the main process ended (they were killed); ``runtime_s`` is the main
process's lifetime (without the clean-up that followed).
"""

from __future__ import annotations

import ctypes
import errno
import json
import os
import select
import signal
import sys
import time

PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36

#: Grace between SIGTERM and SIGKILL for a kill request (timeout, Ctrl-C) and at shutdown.
KILL_GRACE_S = 2.5
#: Grace for processes left behind by a job that ended on its own.
LEFTOVER_GRACE_S = 1.0
#: After this long of SIGKILLs, processes stuck in uninterruptible sleep are given up on.
GIVE_UP_S = 30.0
_POLL_S = 0.02

_libc = ctypes.CDLL(None, use_errno=True)


def prctl(option: int, arg: int) -> None:
    """Call prctl(2) with one argument; raise OSError on failure."""
    if _libc.prctl(option, ctypes.c_ulong(arg), 0, 0, 0) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


def _proc_table() -> dict[int, tuple[int, str]]:
    """pid -> (ppid, state) for every process visible in /proc."""
    table: dict[int, tuple[int, str]] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as fh:
                data = fh.read()
        except OSError:
            continue
        # "pid (comm) state ppid ..." -- comm may contain spaces and parentheses.
        fields = data[data.rfind(b")") + 2 :].split()
        if len(fields) < 2:
            continue
        table[int(name)] = (int(fields[1]), fields[0].decode())
    return table


def _children(pid: int) -> list[int] | None:
    """Children of ``pid`` from /proc/PID/task/*/children (None when the kernel lacks the file)."""
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return []
    kids: list[int] = []
    for tid in tasks:
        try:
            with open(f"/proc/{pid}/task/{tid}/children", "rb") as fh:
                kids.extend(int(k) for k in fh.read().split())
        except FileNotFoundError:
            if not os.path.exists(f"/proc/{pid}/task/{tid}"):
                continue  # the thread or process just ended
            return None  # no CONFIG_PROC_CHILDREN
        except OSError:
            continue
    return kids


def _state(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            data = fh.read()
    except OSError:
        return "X"
    return data[data.rfind(b")") + 2 :].split()[0].decode()


def descendants(root: int) -> list[int]:
    """Live (non-zombie) processes whose parent chain leads to ``root``.

    Walks the children lists from ``root`` (cheap: nothing to read beyond one file when the
    tree is empty); falls back to a scan of every /proc/PID/stat without them.  A process that
    is reparented to ``root`` while the walk runs is found by the caller's next round: callers
    loop until a walk finds nothing, and a subreaper with no children has no descendants.
    """
    found: list[int] = []
    stack = [root]
    while stack:
        kids = _children(stack.pop())
        if kids is None:
            return _descendants_by_scan(root)
        for pid in kids:
            if _state(pid) not in ("Z", "X"):
                found.append(pid)
            stack.append(pid)
    return found


def _descendants_by_scan(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    table = _proc_table()
    for pid, (ppid, _state_) in table.items():
        children.setdefault(ppid, []).append(pid)
    found: list[int] = []
    stack = list(children.get(root, ()))
    while stack:
        pid = stack.pop()
        if table[pid][1] not in ("Z", "X"):
            found.append(pid)
        stack.extend(children.get(pid, ()))
    return found


class Reaper:
    """The server's state: the running jobs (normally one) and the reply channel."""

    def __init__(self, out_fd: int) -> None:
        self.out_fd = out_fd
        self.me = os.getpid()
        self.jobs: dict[int, int] = {}  # main pid -> request id
        self.statuses: dict[int, int] = {}  # main pid -> returncode, once reaped
        self.started: dict[int, float] = {}  # main pid -> monotonic start
        self.ended: dict[int, float] = {}  # main pid -> monotonic end of the main process

    # -- replies -------------------------------------------------------------------------------
    def reply(self, **message: object) -> None:
        """Write one JSON line to the client; a vanished client is not an error here."""
        data = (json.dumps(message) + "\n").encode()
        try:
            while data:
                data = data[os.write(self.out_fd, data) :]
        except OSError:
            pass

    # -- processes -----------------------------------------------------------------------------
    def reap(self) -> None:
        """Collect every exited child (jobs and reparented orphans) without blocking."""
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            if pid in self.jobs:
                self.statuses[pid] = os.waitstatus_to_exitcode(status)
                self.ended[pid] = time.monotonic()

    def kill_tree(self, grace_s: float, pgids: list[int]) -> int:
        """SIGTERM every descendant (and the jobs' process groups), SIGKILL what is left after
        ``grace_s``, until nothing of the tree is alive; return how many processes were found."""
        deadline = time.monotonic() + grace_s
        seen: set[int] = set()
        while True:
            self.reap()
            pids = descendants(self.me)
            if not pids:
                return len(seen)
            now = time.monotonic()
            if now > deadline + GIVE_UP_S:  # stuck in the kernel (D state): report, go on
                sys.stderr.write(f"training_plugin reaper: processes {pids} survive SIGKILL\n")
                return len(seen)
            sig = signal.SIGTERM if now < deadline else signal.SIGKILL
            for pgid in pgids:
                try:
                    os.killpg(pgid, sig)
                except OSError:
                    pass
            for pid in pids:
                if sig == signal.SIGKILL or pid not in seen:
                    try:
                        os.kill(pid, sig)
                    except OSError:
                        pass
            seen.update(pids)
            time.sleep(_POLL_S)

    def spawn(self, request: dict) -> None:
        """Start one job with posix_spawn (vfork-fast: no Python runs in the child); reply
        "started", or "error" with the reason also written to the job's log."""
        rid = request["id"]
        try:
            pid = _spawn(request["argv"], request["cwd"], request["env"], request["log"])
        except OSError as exc:
            message = f"{exc.strerror or exc}"
            _note_in_log(request["log"], message)
            self.reply(event="error", id=rid, message=message)
            return
        self.jobs[pid] = rid
        self.started[pid] = time.monotonic()
        self.reply(event="started", id=rid, pid=pid)

    def finish(self, pid: int, grace_s: float, killed: bool) -> None:
        """Kill what is left of job ``pid``'s tree and send its "exit" reply."""
        found = self.kill_tree(grace_s, [pid])
        self.reap()
        self.statuses.setdefault(pid, -signal.SIGKILL)  # only when it could not be reaped
        rid = self.jobs.pop(pid)
        code = self.statuses.pop(pid)
        runtime = self.ended.pop(pid, time.monotonic()) - self.started.pop(pid)
        leftovers = found if not killed else 0
        self.reply(event="exit", id=rid, returncode=code, leftovers=leftovers, killed=killed,
                   runtime_s=round(runtime, 4))

    def handle(self, request: dict) -> None:
        """Dispatch one request from the client."""
        op = request.get("op")
        if op == "spawn":
            self.spawn(request)
        elif op == "kill":
            for pid, rid in list(self.jobs.items()):
                if rid == request["id"]:
                    self.finish(pid, KILL_GRACE_S, killed=True)
        elif op == "ping":
            self.reply(event="pong", id=request.get("id"))

    def check_exited_jobs(self) -> None:
        """Send "exit" for every job whose main process has ended, after killing its leftovers."""
        self.reap()
        for pid in [p for p in self.jobs if p in self.statuses]:
            self.finish(pid, LEFTOVER_GRACE_S, killed=False)

    def shutdown(self) -> None:
        """Kill every tree and reap everything (client gone or told us to stop)."""
        self.kill_tree(KILL_GRACE_S, list(self.jobs))
        self.reap()


class SpawnError(OSError):
    """A job could not be started; ``strerror`` is the whole user-facing message."""


def _resolve(program: str, cwd: str, env: dict) -> str:
    """The executable for argv[0], searched like subprocess does: on the job's own PATH."""
    if "/" in program:
        return program if os.path.isabs(program) else os.path.join(cwd, program)
    for directory in env.get("PATH", os.defpath).split(os.pathsep):
        candidate = os.path.join(directory or ".", program)
        if not os.path.isabs(candidate):
            candidate = os.path.join(cwd, candidate)
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    raise SpawnError(errno.ENOENT, f"cannot start {program!r}: not found on the job's PATH")


#: Signals reset to their default action in a job (Python ignores SIGPIPE/SIGXFSZ, the reaper
#: ignores SIGINT; handlers would be reset by exec anyway).
_DEFAULT_SIGNALS = (signal.SIGPIPE, signal.SIGXFSZ, signal.SIGINT, signal.SIGTERM,
                    signal.SIGHUP, signal.SIGCHLD, signal.SIGQUIT)


def _spawn(argv: list, cwd: str, env: dict, log: str) -> int:
    """posix_spawn ``argv`` in its own session, cwd ``cwd`` (the single-threaded reaper changes
    its own directory around the call), stdin /dev/null, stdout+stderr to ``log``."""
    try:
        os.chdir(cwd)
    except OSError as exc:
        raise SpawnError(exc.errno, f"cannot change directory to {cwd!r}: {exc.strerror}") from None
    try:
        if os.path.islink(log):
            raise SpawnError(errno.ELOOP, f"{log} is a symbolic link (to {os.readlink(log)}); "
                             "the job's log is never written through a link")
        executable = _resolve(str(argv[0]), cwd, env)
        actions = [
            (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
            (os.POSIX_SPAWN_OPEN, 1, log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW,
             0o644),
            (os.POSIX_SPAWN_DUP2, 1, 2),
        ]
        try:
            return os.posix_spawn(executable, argv, env, file_actions=actions, setsid=True,
                                  setsigdef=_DEFAULT_SIGNALS, setsigmask=())
        except OSError as exc:
            raise SpawnError(exc.errno, f"cannot start {argv[0]!r}: {exc.strerror}") from None
    finally:
        os.chdir("/")


def _note_in_log(log: str, message: str) -> None:
    """Put a start failure where the user looks first: the job's log (never through a link)."""
    try:
        fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC,
                     0o644)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(message + "\n")
    except OSError:
        pass


def main(argv: list[str]) -> int:
    """Serve spawn/kill requests until stdin closes, a guard dies or SIGTERM/SIGHUP arrives."""
    parent = int(argv[0])
    use_pdeathsig = argv[1] == "1"
    guards = [int(a) for a in argv[2:]]
    stop = []

    def on_stop(signum: int, _frame: object) -> None:
        stop.append(signum)

    signal.signal(signal.SIGTERM, on_stop)
    signal.signal(signal.SIGHUP, on_stop)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    prctl(PR_SET_CHILD_SUBREAPER, 1)
    if use_pdeathsig:
        prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != parent:  # the parent died before PDEATHSIG was armed
        return 1
    guard_fds = []
    for pid in guards:
        try:
            guard_fds.append(os.pidfd_open(pid))
        except OSError:
            return 1  # that guard is already gone
    os.chdir("/")
    wake_r, wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    signal.set_wakeup_fd(wake_w)
    in_fd = sys.stdin.fileno()
    server = Reaper(sys.stdout.fileno())
    buf = b""
    try:
        while not stop:
            try:
                ready, _, _ = select.select([in_fd, wake_r, *guard_fds], [], [], 1.0)
            except InterruptedError:
                ready = []
            if wake_r in ready:
                try:
                    while os.read(wake_r, 512):
                        pass
                except BlockingIOError:
                    pass
            server.check_exited_jobs()
            if any(fd in ready for fd in guard_fds):
                break
            if in_fd in ready:
                chunk = os.read(in_fd, 65536)
                if not chunk:
                    break
                buf += chunk
                while b"\n" in buf:
                    line, buf = buf.split(b"\n", 1)
                    if line.strip():
                        server.handle(json.loads(line))
                server.check_exited_jobs()
    finally:
        server.shutdown()
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except OSError as exc:
        if exc.errno == errno.EINVAL:
            sys.stderr.write(f"training_plugin reaper: prctl not supported: {exc}\n")
        raise
