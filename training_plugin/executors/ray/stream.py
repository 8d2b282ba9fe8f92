"""What comes back from a job's task while it runs: its ``(kind, payload)`` messages (see
``node.py``), written to the controller's ``train.log`` and a temporary tar of its outputs as
they come, the story of a task that failed, and what each attempt cost (measured on its
node).

A job's task is a streaming generator; under Ray Client (``ray://``), which runs no streaming
tasks, the task sends the same messages to a relay actor of the session, which the receiving
thread polls every ``RELAY_POLL_S``.  Each job's timeline (wall-clock times of its steps) is
appended to the file named by ``TIMELINE_VAR`` when it ends.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from training_plugin import safefs
from training_plugin.executors.base import PEAK_SAMPLED, JobCost, JobRun, RunResult
from training_plugin.executors.ray.resources import Node
from training_plugin.executors.ray.shipping import explain_missing_files, unpack, write_note
from training_plugin.executors.reaper import outside_signal

MSG_NODE_LOST = "node {node} lost while the job ran"
MSG_WORKER_DIED = "the Ray worker running the job died ({why})"
MSG_TASK_ERROR = "the Ray task failed: {why}"
MSG_RAY_OOM = "Ray's memory monitor killed the job's worker (node {node} ran low on memory)"
#: A job (a retry, or one waiting in Ray's queue) that no live node can hold after a node loss.
MSG_NO_NODE_LEFT = "node {node} was lost and no live node can run the job: {why}"
#: How a job's peak memory under Ray was measured: by its supervisor on its node.
PEAK_ON_NODE = PEAK_SAMPLED + " on node {node}"
#: Env var: a file to which each job's timeline is appended as one JSON line when it ends
#: (bench/bench_ray.py and the tests read it): wall-clock seconds ``submitted`` (handed to the
#: executor), ``released`` (to Ray), ``seen`` (its start reached the controller), ``began``
#: (the task's first line on its node), ``spawned`` (the job's process started), ``ended``;
#: ``release`` (1 for the executor's first release, 2 for the next ...), ``alongside`` (the
#: jobs released and unfinished when it was released), ``job`` and ``node``.
TIMELINE_VAR = "TRAINING_RAY_TIMELINE"
#: Seconds between two pulls of a job's messages from the relay (Ray Client sessions).
RELAY_POLL_S = 0.2
#: Seconds a worker's failure may take to show as its node's loss (the head declares a silent
#: node dead after its health checks fail).
NODE_LOSS_WAIT_S = 60.0


@dataclass
class Flight:
    """One submitted job: its task, what came back so far, and how it ended."""

    job: JobRun
    request: dict = field(default_factory=dict)
    released: bool = False
    task: Any = None  #: the Ray task: a streaming generator, or (Ray Client) its ObjectRef
    thread: threading.Thread | None = None
    done: threading.Event = field(default_factory=threading.Event)
    submitted: float = field(default_factory=time.monotonic)
    times: dict = field(default_factory=lambda: {"submitted": time.time()})
    started: float | None = None
    node: Node | None = None
    node_id: str | None = None
    workdir: str | None = None  #: Ray's copy of the rootdir on the job's node
    tar_path: str | None = None
    exit: dict | None = None
    error: str | None = None
    cancelled: bool = False
    #: the task failed for a cause not the job's own (``TaskFailure.infrastructure``)
    infrastructure: bool = False
    #: nodes lost under earlier attempts of the job: its task never goes there
    avoid: frozenset[str] = frozenset()
    #: live nodes where an earlier attempt failed for a cause not its own (its worker died,
    #: Ray's memory monitor or a signal from outside killed it): its task goes to another node
    #: while one could hold it
    shun: frozenset[str] = frozenset()
    #: the node where this attempt failed so, its node alive (``shun`` of the next attempt)
    failed_on: str | None = None
    #: why the executor cancelled the task: no live node can hold it any more
    nowhere: str | None = None
    lost_node: str | None = None  #: the id of the node lost under this attempt
    taken: bool = False  #: ``run`` returned its result (a later run is the next attempt)


def messages(ray: Any, flight: Flight, relay: Any = None) -> Iterator[tuple[str, Any]]:
    """The job's ``(kind, payload)`` pairs as they come: from its streaming generator, or
    (``relay``: Ray Client) pulled from the relay while the task runs; a failed task raises its
    error here."""
    if relay is None:
        for ref in flight.task:
            yield ray.get(ref)
        return
    while True:
        # the task pushes every pair before it returns: once it is done, this pull is the last
        done, _ = ray.wait([flight.task], timeout=RELAY_POLL_S)
        yield from ray.get(relay.pull.remote(flight.job.id))
        if done:
            ray.get(flight.task)  # its error, if it failed
            return


def _open_log(path: Path) -> Any:
    """The job's log on the controller, truncated, opened without following a link."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = safefs.open_no_follow(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    return os.fdopen(fd, "wb")


def receive(flight: Flight, pairs: Iterable[tuple[str, Any]],
            on_start: Callable[[dict], None]) -> None:
    """Consume one job's messages: ``on_start`` with the start payload, the log to the
    controller's train.log, the output tar to a temporary file, then how it ended."""
    job = flight.job
    log = None
    tar = None
    try:
        for kind, payload in pairs:
            if kind == "start":
                flight.started = time.monotonic()
                flight.times.update(seen=time.time(), began=payload.get("began"),
                                    spawned=payload.get("spawned"))
                flight.node_id = payload["node_id"]
                flight.workdir = payload.get("workdir")
                on_start(payload)
                log = _open_log(job.log_path)
            elif kind == "log":
                if log is None:
                    log = _open_log(job.log_path)
                log.write(payload)
                log.flush()
            elif kind == "out":
                if tar is None:
                    fd, flight.tar_path = tempfile.mkstemp(prefix="training-out-",
                                                           suffix=".tar")
                    tar = os.fdopen(fd, "wb")
                tar.write(payload)
            elif kind == "exit":
                if "error" in payload:
                    flight.error = payload["error"]
                    write_note(job.log_path, payload["error"])
                else:
                    flight.exit = payload
    finally:
        if log is not None:
            log.close()
        if tar is not None:
            tar.close()


@dataclass(frozen=True)
class TaskFailure:
    """Why a job's task failed: the story, whether the cause is not the job's own (a lost
    node, a dead worker, Ray's memory monitor: an infrastructure failure, retried under
    ``--retries``), and the id of the node that was lost under it, if one was."""

    story: str
    infrastructure: bool = False
    lost_node: str | None = None


#: Ray's node id in its own messages ("... node ID: 5f2c...").
_NODE_ID = re.compile(r"node ID: ([0-9a-f]{40,64})")


def failure(ray: Any, flight: Flight, exc: BaseException,
            live_nodes: Callable[[], Mapping[str, Node]]) -> TaskFailure:
    """Why the job's task failed: cancelled, its node lost, Ray's memory monitor killed it, its
    worker died (these three are infrastructure failures), or Ray's own first line."""
    if flight.nowhere is not None:  # cancelled by the executor: no live node can hold it
        return TaskFailure(flight.nowhere, infrastructure=True)
    if flight.cancelled or isinstance(exc, ray.exceptions.TaskCancelledError):
        flight.cancelled = True
        return TaskFailure("cancelled")
    errors = ray.exceptions
    system = (errors.WorkerCrashedError, errors.NodeDiedError, errors.ObjectLostError,
              errors.RaySystemError, errors.LocalRayletDiedError, errors.OutOfMemoryError)
    if not isinstance(exc, system):
        return TaskFailure(MSG_TASK_ERROR.format(why=first_line(exc)))
    node = flight.node
    if node is None:  # it failed before it began: Ray's message may name the node
        found = _NODE_ID.search(str(exc))
        if found:
            node = live_nodes().get(found.group(1)) or Node(found.group(1), _ip_in(exc), "", {})
    if isinstance(exc, errors.OutOfMemoryError):
        where = node.label if node is not None else "?"
        return TaskFailure(MSG_RAY_OOM.format(node=where), infrastructure=True)
    if node is None:
        if isinstance(exc, errors.NodeDiedError):
            return TaskFailure(MSG_NODE_LOST.format(node="?"), infrastructure=True)
        return TaskFailure(MSG_WORKER_DIED.format(why=first_line(exc)), infrastructure=True)
    text = str(exc).lower()
    lost = TaskFailure(MSG_NODE_LOST.format(node=node.label), infrastructure=True,
                       lost_node=node.node_id)
    if isinstance(exc, errors.NodeDiedError) or (
            "node" in text and ("dead" in text or "died" in text)):
        return lost  # Ray says so itself
    deadline = time.monotonic() + NODE_LOSS_WAIT_S
    while time.monotonic() < deadline:  # the head declares a node dead after a while
        if node.node_id not in live_nodes():
            return lost
        time.sleep(1.0)
    return TaskFailure(MSG_WORKER_DIED.format(why=first_line(exc)), infrastructure=True)


def _ip_in(exc: BaseException) -> str:
    """The node IP in Ray's message ("Node IP: 10.0.0.3"), else "?"."""
    found = re.search(r"Node IP: ([0-9a-fA-F.:]+[0-9a-fA-F])", str(exc))
    return found.group(1) if found else "?"


def run_result(flight: Flight, rootdir: Path) -> RunResult:
    """How the flight's job ended, with what it cost (``attempt_cost``), its outputs unpacked
    into its output folder; a failure not the job's own (``Flight.infrastructure``, or a
    signal the plugin did not send) is an infrastructure failure."""
    job = flight.job
    started = flight.started if flight.started is not None else flight.submitted
    where = flight.node.where if flight.node is not None else None
    if flight.tar_path is not None:
        unpack(flight.tar_path, job.output_dir)
        flight.tar_path = None
    if flight.exit is None:
        if flight.error and flight.node is None:
            write_note(job.log_path, flight.error)
        ran = flight.started is not None
        error = flight.error or "did not run"
        duration = time.monotonic() - started if ran else 0.0
        return RunResult(returncode=None, duration_s=duration,
                         timed_out=False, timeout_s=job.timeout, log_path=job.log_path,
                         interrupted=flight.cancelled, error=error, node=where,
                         cost=attempt_cost(flight, duration) if ran else None,
                         infrastructure=error if flight.infrastructure else None)
    if flight.exit.get("returncode") and not flight.exit.get("timed_out"):
        explain_missing_files(job.log_path, rootdir, flight.workdir)
    runtime = flight.exit.get("runtime_s")
    duration = float(runtime) if runtime else time.monotonic() - started
    code, killed = int(flight.exit["returncode"]), bool(flight.exit.get("killed"))
    return RunResult(
        returncode=code, duration_s=duration,
        timed_out=bool(flight.exit.get("timed_out")), timeout_s=job.timeout,
        log_path=job.log_path, leftovers=int(flight.exit.get("leftovers", 0)), node=where,
        cost=attempt_cost(flight, duration),
        killed_by_plugin=killed,  # a SIGKILL / SIGTERM from outside is not the job's own
        infrastructure=None if killed else outside_signal(code),
    )


def attempt_cost(flight: Flight, wall_s: float) -> JobCost:
    """What the flight's attempt cost, as its supervisor measured it on its node (CPU time of
    the whole tree, the sampled peak of its RSS; none when the task failed before the job
    ended, e.g. its node was lost), and GPU-seconds: the wall time x the GPUs Ray gave it
    (the job's ``gpus`` request where that is a share of one device, such as 0.5)."""
    end = flight.exit or {}
    cpu, peak = end.get("cpu_s"), end.get("peak_bytes")
    asked = float(flight.request.get("GPU", 0) or 0)
    given = end.get("gpus")
    gpus = asked if given is None else float(given)
    if asked and gpus:
        gpus = min(asked, gpus)
    node = flight.node.label if flight.node is not None else "?"
    return JobCost(wall_s=wall_s, cpu_s=float(cpu) if cpu is not None else None,
                   peak_bytes=int(peak) if peak else None,
                   peak_method=PEAK_ON_NODE.format(node=node) if peak else None, gpus=gpus)


def record_timeline(flight: Flight) -> None:
    """Append the job's timeline to the file named by ``TIMELINE_VAR`` (if set)."""
    path = os.environ.get(TIMELINE_VAR)
    if not path:
        return
    line = dict(flight.times, job=flight.job.id,
                node=flight.node.where if flight.node is not None else None)
    try:
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(line) + "\n")
    except OSError:
        pass


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (its type's name when it has none)."""
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
