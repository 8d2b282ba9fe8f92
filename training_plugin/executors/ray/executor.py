"""``RayExecutor``: every job one Ray task, released to the cluster by the release queue
(``queue.py``), its messages received on a thread of its own (``stream.py``), its outputs
unpacked here (``shipping.py``)."""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from training_plugin.executors.base import BaseExecutor, InFlight, JobRun, RunResult
from training_plugin.executors.ray.cluster import ClusterView
from training_plugin.executors.ray.connect import is_client, take_connection
from training_plugin.executors.ray.queue import QUEUE_MODES, ReleaseQueue, keeps_away
from training_plugin.executors.ray.resources import (
    describe_request,
    fitting,
    infeasible_message,
    ray_request,
)
from training_plugin.executors.ray.shipping import (
    MSG_OUTPUT_IN_JOB_COPY,
    in_ray_job_copy,
    inside,
)
from training_plugin.executors.ray.stream import (
    MSG_TASK_ERROR,
    Flight,
    failure,
    first_line,
    messages,
    receive,
    record_timeline,
    run_result,
)

if TYPE_CHECKING:  # pragma: no cover
    from training_plugin.options import Settings

MSG_BAD_QUEUE = ("training_ray_queue = {value!r}: expected executor (the executor releases jobs "
                 "longest first as the cluster has room) or ray (every job to Ray at once, "
                 "for autoscaling clusters)")
#: Seconds past a job's timeout after which the controller cancels a task whose node is silent.
TIMEOUT_GRACE_S = 30.0
#: Seconds ``cancel_all`` waits for the cancellations to land.
CANCEL_WAIT_S = 10.0
#: Ray's label of every node's id (a label selector keeps a retry away from a lost node).
NODE_ID_LABEL = "ray.io/node-id"


def queue_mode(config: pytest.Config) -> str:
    """ini ``training_ray_queue``: ``executor`` (default) or ``ray``."""
    try:
        raw = str(config.getini("training_ray_queue") or "").strip()
    except ValueError:
        raw = ""
    value = raw.lower() or "executor"
    if value not in QUEUE_MODES:
        raise pytest.UsageError(MSG_BAD_QUEUE.format(value=raw))
    return value


class RayExecutor(BaseExecutor):
    """Runs every job as a Ray task (see the package docstring)."""

    name = "ray"

    def __init__(self, config: pytest.Config, settings: Settings) -> None:
        import ray

        import training_plugin.executors.ray.node as node_code
        from training_plugin.executors.reaper import REAPER_SCRIPT

        self.address = str(settings.ray_address)
        self.rootdir = Path(settings.rootdir)
        self.output_dir = Path(settings.output_dir)
        self.flights: dict[str, Flight] = {}
        self.lock = threading.Lock()
        self.closed = False
        self.stopping = False  # cancel_all ran: release nothing more
        self.queue = ReleaseQueue(queue_mode(config))
        self._releases = 0
        connection = take_connection(config, settings)  # this executor disconnects it
        self.package_roots = connection.package_roots.get()
        ray.cloudpickle.register_pickle_by_value(node_code)
        self._ray = ray
        self._reaper_source = Path(REAPER_SCRIPT).read_text()
        self.cluster = ClusterView(ray)
        #: Ray Client (``ray://``) runs no streaming tasks: each job's task sends what it
        #: streams to a relay actor instead, and the controller pulls it from there.
        self._relay = None
        if is_client(self.address):
            self._relay = ray.remote(node_code.Relay).options(
                num_cpus=0, max_restarts=0, **self.cluster.on_head()).remote()
            self._task = ray.remote(node_code.run_job_relayed)
        else:
            self._task = ray.remote(node_code.run_job)

    # -- the cluster ----------------------------------------------------------------------------
    def infeasible(self, job: JobRun) -> str | None:
        """Why no node can ever run ``job`` (asked vs offered), or None when one can."""
        return self.cluster.nowhere(ray_request(job.resources))[0]

    def describe(self) -> str:
        """Header line: where, how big, what travels (and, in a Ray Job's copy of the project,
        that outputs left inside it are lost)."""
        nodes = self.cluster.nodes.values()
        cpus = sum(n.resources.get("CPU", 0) for n in nodes)
        gpus = sum(n.resources.get("GPU", 0) for n in nodes)
        where = "a private Ray instance" if self.address == "local" else f"Ray at {self.address}"
        line = (f"{where}: {len(nodes)} node(s), {cpus:g} CPUs, {gpus:g} GPUs; "
                f"code ships from {self.rootdir} (runtime_env working_dir"
                + (f"; imports from {', '.join(self.package_roots)}" if self.package_roots
                   else "") + ")")
        if in_ray_job_copy(self.rootdir) and inside(self.output_dir, self.rootdir):
            line += "; " + MSG_OUTPUT_IN_JOB_COPY.format(out=self.output_dir)
        return line

    def placement(self, job: JobRun) -> str:
        """Where ``job`` could run: the nodes that can hold its request, or why none can."""
        why = self.infeasible(job)
        if why is not None:
            return f"nowhere: {why}"
        request = ray_request(job.resources)
        nodes = ", ".join(n.where for n in fitting(self.cluster.nodes.values(), request))
        return f"Ray places it on one of: {nodes} ({describe_request(request)})"

    # -- submitting -----------------------------------------------------------------------------
    def submit_all(self, jobs: list[JobRun]) -> None:
        """Hand every job to the executor now, in this order; infeasible ones fail at once.
        Released to Ray as the cluster has room (``executor``) or all at once (``ray``)."""
        for job in jobs:
            self._enqueue(job)
        self._pump()

    def _enqueue(self, job: JobRun) -> Flight:
        """The job's flight: the one ``submit_all`` made, or a new one (its first attempt, or
        the next after ``run`` returned the last one's result: never on a node lost under an
        earlier attempt)."""
        with self.lock:
            flight = self.flights.get(job.id)
            if flight is not None and not flight.taken:
                if not flight.released:
                    flight.job = job  # the attempt as the item runs it
                return flight
            avoid = shun = frozenset()
            if flight is not None:
                avoid, shun = flight.avoid, flight.shun
                avoid |= {flight.lost_node} if flight.lost_node is not None else set()
                shun |= {flight.failed_on} if flight.failed_on is not None else set()
            flight = self.flights[job.id] = Flight(job=job, avoid=avoid, shun=shun - avoid)
        flight.request = ray_request(job.resources)
        why, lost = self.cluster.nowhere(flight.request)
        if why is not None:
            flight.error = why
            flight.infrastructure = lost
            flight.done.set()
            return flight
        with self.lock:
            if self.stopping:
                flight.cancelled = True
                flight.error = "cancelled"
                flight.done.set()
            else:
                self.queue.add(job.id, flight.request, shun=flight.shun)
        return flight

    def _pump(self) -> None:
        """Release what the queue lets go now; a waiting job that no live node can hold any
        more (its node left) fails."""
        with self.lock:
            if self.stopping or not self.queue.waiting:
                return
            if self.queue.mode == "executor":
                self.cluster.try_refresh()
            nodes = self.cluster.nodes
            decision = self.queue.release(self.cluster.capacities)
            for job_id in decision.infeasible:  # the view was just listed: no more asking
                flight = self.flights[job_id]
                flight.error, flight.infrastructure = self.cluster.nowhere(
                    flight.request, refresh=self.queue.mode != "executor")
                flight.error = flight.error or infeasible_message(flight.request, nodes.values())
                flight.done.set()
            released = set(decision.released)
            alongside = [job for job in self.queue.running if job not in released]
            for job_id in decision.released:
                flight = self.flights[job_id]
                self._release(flight, alongside)
                if not flight.done.is_set():
                    alongside = [*alongside, job_id]

    def _release(self, flight: Flight, alongside: list[str]) -> None:
        """Submit the flight's Ray task and start its receiving thread (the lock is held;
        ``alongside``: the jobs released and unfinished before it, for its timeline)."""
        job = flight.job
        request = flight.request
        flight.released = True
        self._releases += 1
        flight.times.update(released=time.time(), release=self._releases, alongside=alongside)
        custom = {k: v for k, v in request.items() if k not in ("CPU", "GPU", "memory")}
        options: dict[str, Any] = dict(max_retries=0,
                                       num_cpus=request.get("CPU", 0),
                                       num_gpus=request.get("GPU", 0), name=f"training:{job.id}")
        if "memory" in request:
            options["memory"] = int(request["memory"])
        if custom:
            options["resources"] = custom
        # a retry never goes back to a node lost under an earlier attempt, nor to one where an
        # earlier attempt failed for a cause not its own while another node could hold it
        away = set(flight.avoid)
        if keeps_away(self.cluster.capacities, request, flight.shun):
            away |= flight.shun
        if away:
            options["label_selector"] = {NODE_ID_LABEL: f"!in({','.join(sorted(away))})"}
        relay = () if self._relay is None else (self._relay,)
        if not relay:
            options["num_returns"] = "streaming"
        controller = {"output_dir": str(job.output_dir), "cwd": str(job.cwd),
                      "python": sys.executable, "package_roots": self.package_roots}
        try:
            flight.task = self._task.options(**options).remote(
                *relay, job.id, [str(a) for a in job.argv], dict(job.env), controller, job.timeout,
                self._reaper_source)
        except Exception as exc:  # noqa: BLE001 - the cluster went away, a Ray error ...
            flight.error = MSG_TASK_ERROR.format(why=first_line(exc))
            self.queue.finished(job.id)
            flight.done.set()
            return
        flight.thread = threading.Thread(target=self._receive, args=(flight,),
                                         name=f"ray-job-{job.id}", daemon=True)
        flight.thread.start()

    def _receive(self, flight: Flight) -> None:
        """The receiving thread of one job: its messages, then its end, which frees its
        resources for the queue."""
        try:
            receive(flight, messages(self._ray, flight, self._relay),
                    lambda payload: self._started(flight, payload))
        except BaseException as exc:  # noqa: BLE001 - every Ray failure becomes the job's story
            failed = failure(self._ray, flight, exc, self.cluster.refresh)
            flight.error, flight.infrastructure = failed.story, failed.infrastructure
            flight.lost_node = failed.lost_node
            if failed.lost_node is not None:
                self._node_lost(flight)
        finally:
            flight.times["ended"] = time.time()
            record_timeline(flight)
            with self.lock:
                self.queue.finished(flight.job.id)
            flight.done.set()
            self._pump()  # its resources are free: release what fits now

    def _node_lost(self, flight: Flight) -> None:
        """The node under ``flight`` was lost: it is never counted again, and a job released
        to Ray that no live node can hold any more (it waits in Ray's queue for what only
        that node had, and would wait forever) is cancelled with the reason."""
        assert flight.lost_node is not None
        with self.lock:
            self.cluster.lose(flight.lost_node)
            waiting = [f for f in self.flights.values()
                       if f.released and f.started is None and not f.done.is_set()
                       and f.nowhere is None]
        if waiting:
            self.cluster.try_refresh()  # once for all of them (nodes may have joined since)
        for other in waiting:
            why, by_loss = self.cluster.nowhere(other.request, refresh=False)
            if why is not None and by_loss and other.task is not None:
                other.nowhere = why
                try:
                    self._ray.cancel(other.task, force=True)
                except Exception:  # noqa: BLE001 - it ended meanwhile, or the cluster is gone
                    pass

    def _started(self, flight: Flight, payload: dict) -> None:
        node_id = payload["node_id"]
        flight.node = self.cluster.node(node_id, payload["ip"])
        with self.lock:
            self.queue.started(flight.job.id, node_id)

    def in_flight(self) -> InFlight:
        """For the progress line: the jobs running on the cluster now (id, log path here,
        when it started on its node, monotonic), and how many wait for room."""
        with self.lock:
            running = [(f.job.id, f.job.log_path, f.started) for f in self.flights.values()
                       if f.started is not None and not f.done.is_set()]
            queued = len(self.queue.waiting) + sum(
                1 for f in self.flights.values()
                if f.released and f.started is None and not f.done.is_set())
        return running, queued

    # -- waiting --------------------------------------------------------------------------------
    def run(self, job: JobRun) -> RunResult:
        """Wait for ``job`` (handed over now unless ``submit_all`` did); unpack its outputs."""
        flight = self._enqueue(job)
        self._pump()
        try:
            while not flight.done.wait(0.5):
                if (job.timeout and flight.started is not None
                        and time.monotonic() > flight.started + job.timeout + TIMEOUT_GRACE_S):
                    self._cancel(flight)  # the node stopped answering; end it from here
                    flight.done.wait(TIMEOUT_GRACE_S)
                    flight.exit = {"returncode": -signal.SIGKILL, "timed_out": True}
                    break
        except BaseException:
            self.cancel_all()
            raise
        flight.taken = True
        result = run_result(flight, self.rootdir)
        if result.infrastructure and flight.node is not None and flight.lost_node is None:
            flight.failed_on = flight.node.node_id  # the next attempt shuns it
        return result

    # -- stopping -------------------------------------------------------------------------------
    def _cancel(self, flight: Flight) -> None:
        if flight.task is None or flight.done.is_set():
            return
        flight.cancelled = True
        try:
            self._ray.cancel(flight.task, force=True)
        except Exception:  # noqa: BLE001 - already finished, or the cluster is gone
            pass

    def cancel_all(self) -> None:
        """Cancel every job still in flight (Ctrl-C, SIGTERM, session end) and wait a little
        for the cancellations to land (each kills its job's tree on its node)."""
        with self.lock:
            self.stopping = True
            for job_id in self.queue.drain():  # never released: nothing runs
                flight = self.flights[job_id]
                flight.cancelled = True
                flight.error = "cancelled"
                flight.done.set()
            flights = list(self.flights.values())
        for flight in flights:
            self._cancel(flight)
        deadline = time.monotonic() + CANCEL_WAIT_S
        for flight in flights:
            flight.done.wait(max(0.0, deadline - time.monotonic()))

    def close(self) -> None:
        """Cancel what still runs and disconnect (``--ray local``: stop the private instance)."""
        if self.closed:
            return
        self.closed = True
        self.cancel_all()
        for flight in self.flights.values():
            if flight.tar_path is not None:
                try:
                    os.unlink(flight.tar_path)
                except OSError:
                    pass
        try:
            self._ray.shutdown()
        except Exception:  # noqa: BLE001
            pass
