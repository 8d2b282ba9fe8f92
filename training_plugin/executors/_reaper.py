"""Per-pytest-process fork server that starts training jobs and kills their whole process trees.
Run as ``python -I -S _reaper.py PARENT_PID PDEATHSIG GUARD_PID...`` by ``reaper.py``, once per
pytest process; stdlib only and no package import (it starts in a few tens of milliseconds).

Why no process of a job survives: it is a child subreaper (``PR_SET_CHILD_SUBREAPER``), so every
orphaned descendant of a job (a grandchild whose parent exited, a ``setsid`` daemon) is
reparented to it and the job's tree is "every process whose parent chain leads here" (walked in
``/proc``); it dies with its pytest process (``PR_SET_PDEATHSIG=SIGTERM``, checked against the
race with ``getppid``; EOF on stdin; a pidfd per guard process, such as the xdist controller of
a worker), killing every tree first; if it is SIGKILLed itself, its client sees EOF and kills
the job's process group.  Jobs start with posix_spawn (no Python in the child: 2-4 ms less per
job; the price is no parent-death signal on the job's main process).

Protocol, one JSON object per line.  Requests: {"op": "spawn", "id": N, "argv": [...], "cwd",
"env": {...}, "log", "cgroup": "<group>/cgroup.procs", "rlimit_as": BYTES} (the last two
optional) and {"op": "kill", "id": N}.  Replies: {"event": "started", "id", "pid", "cgroup":
moved into it}, {"event": "error", "id", "message"} (it could not start), and {"event": "exit",
"id", "returncode", "leftovers", "killed", "runtime_s", "cpu_s", "peak_bytes"}:
``returncode`` subprocess-style (negative = signal); ``leftovers``, processes of the tree alive
after the main process ended (killed); ``runtime_s``, the main process's lifetime.  The job's
cost: ``cpu_s``, user + system time of its whole tree (``wait4``: every orphan is reaped here,
and a reaped process's figures include its own reaped children); ``peak_bytes``, the largest
sum of the tree's RSS sampled every ``SAMPLE_S``, at least its largest process's (0: neither).
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
#: Seconds between two samples of a running tree's RSS (the peak where no cgroup measures it).
SAMPLE_S = 0.2
_PAGE = os.sysconf("SC_PAGE_SIZE")

_libc = ctypes.CDLL(None, use_errno=True)


def prctl(option: int, arg: int) -> None:
    """Call prctl(2) with one argument; raise OSError on failure."""
    if _libc.prctl(option, ctypes.c_ulong(arg), 0, 0, 0) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


def _stat(pid: int | str) -> list[bytes]:
    """The fields of /proc/PID/stat after "pid (comm)" (comm may hold spaces and parentheses):
    state, ppid, ...; a process that is gone reads as state X."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            data = fh.read()
    except OSError:
        return [b"X", b"0"]
    return data[data.rfind(b")") + 2 :].split()


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


def descendants(root: int) -> list[int]:
    """Live (non-zombie) processes whose parent chain leads to ``root``.

    Walks the children lists from ``root`` (cheap: nothing to read beyond one file when the
    tree is empty); falls back to a scan of every /proc/PID/stat without them.  A process that
    is reparented to ``root`` while the walk runs is found by the caller's next round: callers
    loop until a walk finds nothing, and a subreaper with no children has no descendants.
    """
    table = None  # ppid -> children from a scan of /proc, for kernels without children files
    found: list[int] = []
    stack = [root]
    while stack:
        pid = stack.pop()
        kids = _children(pid) if table is None else table.get(pid, [])
        if kids is None:
            table, found, stack = _scan(), [], [root]
            continue
        for kid in kids:
            if _stat(kid)[0] not in (b"Z", b"X"):
                found.append(kid)
            stack.append(kid)
    return found


def _scan() -> dict[int, list[int]]:
    """ppid -> children, for every process in /proc."""
    table: dict[int, list[int]] = {}
    for name in filter(str.isdigit, os.listdir("/proc")):
        table.setdefault(int(_stat(name)[1]), []).append(int(name))
    return table


class Reaper:
    """The server's state: the running jobs (normally one) and the reply channel."""

    def __init__(self, out_fd: int) -> None:
        self.out_fd = out_fd
        self.me = os.getpid()
        self.jobs: dict[int, int] = {}  # main pid -> request id
        self.statuses: dict[int, int] = {}  # main pid -> returncode, once reaped
        self.started: dict[int, float] = {}  # main pid -> monotonic start
        self.ended: dict[int, float] = {}  # main pid -> monotonic end of the main process
        self.cost: dict[int, list] = {}  # main pid -> [cpu s, max rss, sampled peak, sampled?]
        self.next_sample = 0.0

    def reply(self, **message: object) -> None:
        """Write one JSON line to the client; a vanished client is not an error here."""
        data = (json.dumps(message) + "\n").encode()
        try:
            while data:
                data = data[os.write(self.out_fd, data) :]
        except OSError:
            pass

    def reap(self) -> None:
        """Collect every exited child (jobs and reparented orphans) without blocking."""
        while True:
            try:
                pid, status, usage = os.wait4(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            if pid in self.jobs:
                self.statuses[pid] = os.waitstatus_to_exitcode(status)
                self.ended[pid] = time.monotonic()
            # an orphan belongs to the job running now (a reaper runs one job at a time)
            cost = self.cost.get(pid) or next(iter(self.cost.values()), None)
            if cost is not None:
                cost[0] += usage.ru_utime + usage.ru_stime
                cost[1] = max(cost[1], usage.ru_maxrss * 1024)

    def tick(self) -> float:
        """When due, add up the RSS of the running tree and keep the largest sum (jobs without
        a cgroup); return the seconds until the next sample."""
        costs = [cost for cost in self.cost.values() if cost[3]]
        if not costs:
            return 1.0
        if time.monotonic() >= self.next_sample:
            total = 0
            for pid in descendants(self.me):
                try:
                    with open(f"/proc/{pid}/statm", "rb") as fh:
                        total += int(fh.read().split()[1]) * _PAGE
                except (OSError, IndexError, ValueError):
                    continue
            for cost in costs:
                cost[2] = max(cost[2], total)
            self.next_sample = time.monotonic() + SAMPLE_S
        return max(0.0, self.next_sample - time.monotonic())

    def kill_tree(self, grace_s: float, pgids: list[int]) -> int:
        """SIGTERM the tree (and ``pgids``), SIGKILL what is left after ``grace_s``, until
        nothing of it is alive; return how many processes were found."""
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
            targets = [(os.killpg, pgid) for pgid in pgids] + [
                (os.kill, pid) for pid in pids if sig == signal.SIGKILL or pid not in seen]
            for kill, target in targets:
                try:
                    kill(target, sig)
                except OSError:
                    pass
            seen.update(pids)
            time.sleep(_POLL_S)

    def spawn(self, request: dict) -> None:
        """Start one job; reply "started", or "error" (the reason also goes to its log)."""
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
        moved = _limit(pid, request.get("cgroup"), request.get("rlimit_as"))
        self.cost[pid] = [0.0, 0, 0, not moved]
        self.next_sample = time.monotonic() + SAMPLE_S
        self.reply(event="started", id=rid, pid=pid, cgroup=moved)

    def finish(self, pid: int, grace_s: float, killed: bool) -> None:
        """Kill what is left of job ``pid``'s tree and send its "exit" reply."""
        found = self.kill_tree(grace_s, [pid])
        self.reap()
        self.statuses.setdefault(pid, -signal.SIGKILL)  # only when it could not be reaped
        rid, code = self.jobs.pop(pid), self.statuses.pop(pid)
        runtime = self.ended.pop(pid, time.monotonic()) - self.started.pop(pid)
        leftovers = found if not killed else 0
        cpu, maxrss, peak, _ = self.cost.pop(pid)
        self.reply(event="exit", id=rid, returncode=code, leftovers=leftovers, killed=killed,
                   runtime_s=round(runtime, 4), cpu_s=round(cpu, 4), peak_bytes=max(peak, maxrss))

    def handle(self, request: dict) -> None:
        """Dispatch one request from the client."""
        op = request.get("op")
        if op == "spawn":
            self.spawn(request)
        elif op == "kill":
            for pid, rid in list(self.jobs.items()):
                if rid == request["id"]:
                    self.finish(pid, KILL_GRACE_S, killed=True)

    def check_exited_jobs(self) -> None:
        """Send "exit" for every job whose main process has ended, after killing its leftovers."""
        self.reap()
        for pid in [p for p in self.jobs if p in self.statuses]:
            self.finish(pid, LEFTOVER_GRACE_S, killed=False)

    def shutdown(self) -> None:
        """Kill every tree and reap everything (client gone or told us to stop)."""
        self.kill_tree(KILL_GRACE_S, list(self.jobs))
        self.reap()


def _limit(pid: int, procs: str | None, rlimit_as: int | None) -> bool:
    """Cap a new job's address space; move it into its cgroup (True when it was moved)."""
    if rlimit_as:
        import resource

        try:
            hard = resource.getrlimit(resource.RLIMIT_AS)[1]
            resource.prlimit(pid, resource.RLIMIT_AS, (int(rlimit_as), hard))
        except (OSError, ValueError):
            pass
    try:
        with open(procs or "", "w") as fh:
            fh.write(str(pid))
        return True
    except OSError:  # no group asked for (""), or it cannot take the job
        return False


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
        os.write(fd, (message + "\n").encode("utf-8", "replace"))
        os.close(fd)
    except OSError:
        pass


def main(argv: list[str]) -> int:
    """Serve spawn/kill requests until stdin closes, a guard dies or SIGTERM/SIGHUP arrives."""
    parent = int(argv[0])
    use_pdeathsig = argv[1] == "1"
    guards = [int(a) for a in argv[2:]]
    stop = []

    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, lambda num, _frame: stop.append(num))
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    prctl(PR_SET_CHILD_SUBREAPER, 1)
    if use_pdeathsig:
        prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != parent:  # the parent died before PDEATHSIG was armed
        return 1
    try:
        guard_fds = [os.pidfd_open(pid) for pid in guards]
    except OSError:
        return 1  # a guard is already gone
    os.chdir("/")
    wake_r, wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    signal.set_wakeup_fd(wake_w)
    in_fd = sys.stdin.fileno()
    server = Reaper(sys.stdout.fileno())
    buf = b""
    try:
        while not stop:
            try:
                ready, _, _ = select.select([in_fd, wake_r, *guard_fds], [], [], server.tick())
            except InterruptedError:
                ready = []
            try:
                while wake_r in ready and os.read(wake_r, 512):
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
