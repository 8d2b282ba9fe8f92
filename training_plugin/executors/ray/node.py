"""What runs on a Ray node for one training job (the body of the Ray task).

Shipped to the cluster by value (``cloudpickle.register_pickle_by_value``): a node needs the
Python environment and Ray, not this package or a checkout.  Stdlib only at import time.

The task is a streaming generator; it yields ``(kind, payload)`` pairs to the controller:
  ("start", {"node_id", "ip", "pid", "workdir", "began", "spawned"})
                                                   the job's main process runs (``began``: the
                                                   task's first line, ``spawned``: the job
                                                   started; this node's wall clock)
  ("log", bytes)                                   new bytes of the job's stdout+stderr
  ("out", bytes)                                   a piece of a tar of the job's output folder
  ("exit", {"returncode", "timed_out", "leftovers", "runtime_s", "killed", "cpu_s",
            "peak_bytes", "gpus"} | {"error": message})
                                                   (``killed``: the supervisor ended the job;
                                                   what it cost, measured by the supervisor as
                                                   locally: ``cpu_s``, user + system time of
                                                   the whole tree (``wait4``), ``peak_bytes``,
                                                   the largest sampled sum of the tree's RSS
                                                   (at least its largest process's), ``gpus``,
                                                   how many GPUs Ray gave the task)

Under Ray Client (``ray://``), which runs no streaming tasks, ``run_job_relayed`` runs the same
generator on the node and sends each pair to a ``Relay`` actor, from which the controller pulls
them.

The job runs under the same supervisor as locally (``_reaper.py``, passed in as source text and
run with ``python -I -S -c``): a child subreaper, so every process of the job's tree stays
findable and is killed on timeout and when the job ends.  It is a grandchild of the Ray worker
(Ray SIGKILLs a dying worker's own children, which would orphan the job) and watches the worker
through a pidfd, so a cancelled task (``ray.cancel(force=True)``), a worker ended because its
driver (pytest) died, or a lost raylet all take the job's whole tree with them.
"""

from __future__ import annotations

#: Bytes per "log" message at most.
LOG_CHUNK = 1 << 20
#: Bytes per "out" message at most.
OUT_CHUNK = 16 << 20
#: Seconds between two looks at the log and the supervisor.
POLL_S = 0.2
#: Appended to the log when the job left processes running (like the local runner).
MSG_LEFTOVERS = "[training_plugin] the job ended; {n} process(es) it left running were killed\n"


#: Starts the supervisor as a grandchild: fork, the child waits until it is reparented, then
#: becomes ``_reaper.py`` (argv: source, guard pid) with its new parent as the one to check.
_LAUNCHER = """
import os, sys, time
source, guard = sys.argv[1], sys.argv[2]
launcher = os.getpid()
if os.fork():
    os._exit(0)
while os.getppid() == launcher:
    time.sleep(0.001)
os.execv(sys.executable, [sys.executable, "-I", "-S", "-c", source, str(os.getppid()), "0",
                          guard])
"""


def _localize(value: str, mapping: list[tuple[str, str]]) -> str:
    """Controller paths in an argument or env value -> this node's (exact, prefix, ``--x=``)."""
    for old, new in mapping:
        if not old:
            continue
        if value == old or value.startswith(old + "/"):
            return new + value[len(old):]
        head, sep, tail = value.partition("=")
        if sep and (tail == old or tail.startswith(old + "/")):
            return head + sep + new + tail[len(old):]
    return value


def _gpus_given(ray) -> int:
    """How many GPUs Ray gave this task (0 when it asked for none)."""
    try:
        return len(ray.get_gpu_ids())
    except Exception:  # noqa: BLE001 - an older or odd Ray: nothing measured
        return 0


def run_job(job_id: str, argv: list, env_add: dict, controller: dict, timeout: float | None,
            reaper_source: str):
    """Run one job on this node; a generator of ``(kind, payload)`` (see the module doc)."""
    import json
    import os
    import select
    import shutil
    import subprocess
    import sys
    import tarfile
    import tempfile
    import time

    began = time.time()
    import ray

    ctx = ray.get_runtime_context()
    workdir = os.getcwd()  # Ray's copy of the controller's rootdir (runtime_env working_dir)
    base = tempfile.mkdtemp(prefix="training-job-")
    out_dir = os.path.join(base, "out")
    os.makedirs(out_dir)
    log_path = os.path.join(base, "train.log")
    mapping = [(controller["output_dir"], out_dir), (controller["cwd"], workdir)]
    # The controller's Python is the node's own (nodes share the environment), also when it
    # lives inside the project (a .venv in the checkout, which never travels).
    python = bool(argv) and argv[0] == controller["python"]
    argv = [_localize(str(a), mapping) for a in argv]
    if python:
        argv[0] = sys.executable
    env = dict(os.environ)
    env.update({k: _localize(str(v), mapping) for k, v in env_add.items()})
    env["TRAINING_OUTPUT_DIR"] = out_dir
    # The project's own packages come from Ray's copy, as they come from the checkout locally
    # (an editable install points at the controller's paths).
    roots = [os.path.normpath(os.path.join(workdir, root))
             for root in controller.get("package_roots", ())]
    if roots:
        env["PYTHONPATH"] = os.pathsep.join(roots + [p for p in [env.get("PYTHONPATH")] if p])

    me = os.getpid()
    # The supervisor is a grandchild of this worker, not a child: Ray SIGKILLs a dying
    # worker's children, which would leave the job's tree orphaned.  It watches the worker
    # through a pidfd instead (a guard), and kills every tree as soon as the worker is gone.
    reaper = subprocess.Popen(
        [sys.executable, "-I", "-S", "-c", _LAUNCHER, reaper_source, str(me)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, start_new_session=True, close_fds=True,
    )
    reaper.wait()
    buf = b""

    def send(**request) -> None:
        reaper.stdin.write((json.dumps(request) + "\n").encode())
        reaper.stdin.flush()

    def reply(wait: float | None) -> dict | None:
        nonlocal buf
        deadline = None if wait is None else time.monotonic() + wait
        while b"\n" not in buf:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            ready, _, _ = select.select([reaper.stdout], [], [], left)
            if not ready:
                return None
            chunk = os.read(reaper.stdout.fileno(), 65536)
            if not chunk:
                raise RuntimeError("the job's supervisor ended unexpectedly")
            buf += chunk
        line, buf = buf.split(b"\n", 1)
        return json.loads(line)

    position = 0

    def new_log() -> list:
        nonlocal position
        pieces = []
        try:
            with open(log_path, "rb") as fh:
                fh.seek(position)
                while True:
                    data = fh.read(LOG_CHUNK)
                    if not data:
                        break
                    position += len(data)
                    pieces.append(data)
        except OSError:
            pass
        return pieces

    try:
        send(op="spawn", id=1, argv=argv, cwd=workdir, env=env, log=log_path)
        message = reply(None)
        if message["event"] == "error":
            yield "exit", {"error": message["message"]}
            return
        started = time.monotonic()
        yield "start", {"node_id": ctx.get_node_id(), "ip": ray.util.get_node_ip_address(),
                        "pid": message["pid"], "workdir": workdir, "began": began,
                        "spawned": time.time()}
        timed_out = False
        while True:
            wait = POLL_S
            if timeout:
                wait = max(0.0, min(wait, started + timeout - time.monotonic()))
            message = reply(wait)
            for piece in new_log():
                yield "log", piece
            if message is not None:
                break
            if timeout and time.monotonic() >= started + timeout:
                timed_out = True
                send(op="kill", id=1)
                message = reply(None)
                break
        leftovers = int(message.get("leftovers", 0))
        if leftovers:
            with open(log_path, "a", encoding="utf-8") as fh:
                fh.write(MSG_LEFTOVERS.format(n=leftovers))
        for piece in new_log():
            yield "log", piece
        tar_path = os.path.join(base, "out.tar")
        with tarfile.open(tar_path, "w") as tar:
            for name in sorted(os.listdir(out_dir)):
                if name != "train.log":  # the log travels as it is written
                    tar.add(os.path.join(out_dir, name), arcname=name)
        with open(tar_path, "rb") as fh:
            while True:
                data = fh.read(OUT_CHUNK)
                if not data:
                    break
                yield "out", data
        yield "exit", {"returncode": int(message["returncode"]), "timed_out": timed_out,
                       "leftovers": leftovers, "runtime_s": float(message.get("runtime_s", 0.0)),
                       "killed": timed_out or bool(message.get("killed")),
                       "cpu_s": message.get("cpu_s"),
                       "peak_bytes": message.get("peak_bytes") or None,
                       "gpus": _gpus_given(ray)}
    finally:
        try:
            reaper.stdin.close()  # EOF: the supervisor kills whatever still runs, then exits
        except OSError:
            pass
        deadline = time.monotonic() + 40  # its stdout closes when it has killed and exited
        try:
            while time.monotonic() < deadline:
                ready, _, _ = select.select([reaper.stdout], [], [], 1.0)
                if ready and not os.read(reaper.stdout.fileno(), 65536):
                    break
        except OSError:
            pass
        reaper.stdout.close()
        shutil.rmtree(base, ignore_errors=True)


class Relay:
    """An actor for Ray Client sessions: the pairs each job's task sends, kept until the
    controller pulls them (in order, per job)."""

    def __init__(self) -> None:
        self.pending: dict = {}

    def push(self, job_id: str, kind: str, payload) -> None:
        self.pending.setdefault(job_id, []).append((kind, payload))

    def pull(self, job_id: str) -> list:
        return self.pending.pop(job_id, [])


def run_job_relayed(relay, job_id: str, argv: list, env_add: dict, controller: dict,
                    timeout: float | None, reaper_source: str) -> None:
    """``run_job``, each pair sent to ``relay`` (a ``Relay`` actor) as it comes; every pair
    has reached the relay when the task returns."""
    import ray

    for kind, payload in run_job(job_id, argv, env_add, controller, timeout, reaper_source):
        ray.get(relay.push.remote(job_id, kind, payload))
