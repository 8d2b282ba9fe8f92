"""The release queue of the Ray executor (ini ``training_ray_queue``): which waiting job goes
to the cluster next.  Pure logic (no ``ray``, no threads, no clock), driven by the executor
under its lock and tested against fake nodes.

``executor`` (default): the jobs wait in the order given (longest first).  On each
:meth:`ReleaseQueue.release` the resources of the released, unfinished jobs are laid on the
nodes (a started job on its own node, the others first fit), then each waiting job in order
goes to the first node that still has room for it; a job that fits nowhere now waits (a later
one that fits may go ahead of it), and one that no node could hold even empty is given up as
infeasible.  Ray itself would not keep that order: its raylets queue lease requests per
resource shape and serve the shapes in no particular order.  A job may shun nodes (a retry:
the nodes where an earlier attempt failed for a cause not its own); it is counted only on the
others while one of them could hold it, as the executor's label selector sends it there.

``ray``: every waiting job is released at once and Ray queues them (what an autoscaler needs
to see the demand).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

QUEUE_MODES = ("executor", "ray")
#: Slack when laying requests on what is left of a node (float sums of fractional amounts).
_SLACK = 1e-9

#: A node's resources in Ray's names (``CPU``, ``GPU``, ``memory``, custom), by node id.
Capacities = Mapping[str, Mapping[str, float]]


@dataclass(frozen=True)
class Release:
    """What one :meth:`ReleaseQueue.release` decided."""

    #: (job id, node id the queue counted it on) in release order; the node is None in the
    #: ``ray`` mode (Ray places it).
    placed: list[tuple[str, str | None]] = field(default_factory=list)
    #: Jobs that no live node can hold: given up, in the order they waited.
    infeasible: list[str] = field(default_factory=list)

    @property
    def released(self) -> list[str]:
        """The released job ids, in order."""
        return [job for job, _ in self.placed]


class ReleaseQueue:
    """Jobs waiting for room on the cluster, and those released and not yet finished."""

    def __init__(self, mode: str = "executor") -> None:
        if mode not in QUEUE_MODES:
            raise ValueError(f"queue mode {mode!r} is not one of {QUEUE_MODES}")
        self.mode = mode
        #: job id -> request, in the order given (dicts keep insertion order).
        self._waiting: dict[str, dict[str, float]] = {}
        #: released, unfinished: job id -> (request, node it started on or None).
        self._running: dict[str, tuple[dict[str, float], str | None]] = {}
        #: job id -> the nodes it goes to only when no other node could hold it
        self._shun: dict[str, frozenset[str]] = {}

    @property
    def waiting(self) -> list[str]:
        """The waiting job ids, in order."""
        return list(self._waiting)

    @property
    def running(self) -> list[str]:
        """The released, unfinished job ids, in release order."""
        return list(self._running)

    def add(self, job_id: str, request: Mapping[str, float],
            shun: frozenset[str] = frozenset()) -> None:
        """Put ``job_id`` at the end of the queue (once: a second add is ignored); it goes to a
        node in ``shun`` only when no other node could hold it."""
        if job_id not in self._waiting and job_id not in self._running:
            self._waiting[job_id] = dict(request)
            self._shun[job_id] = shun

    def started(self, job_id: str, node_id: str) -> None:
        """A released job began on ``node_id``: its resources count there from now on."""
        if job_id in self._running:
            self._running[job_id] = (self._running[job_id][0], node_id)

    def finished(self, job_id: str) -> None:
        """A released job ended (or its release failed): its resources are free."""
        self._running.pop(job_id, None)
        self._shun.pop(job_id, None)

    def drain(self) -> list[str]:
        """Give up every waiting job (the session stops); the ids, in order."""
        dropped, self._waiting, self._shun = list(self._waiting), {}, {}
        return dropped

    def release(self, nodes: Capacities) -> Release:
        """Decide which waiting jobs go now, given the live nodes' whole resources."""
        if self.mode == "ray":
            placed, infeasible = [(job, None) for job in self._waiting], []
        else:
            placed, infeasible = self._first_fit(nodes)
        for job in infeasible:
            del self._waiting[job]
        for job, _ in placed:
            self._running[job] = (self._waiting.pop(job), None)
        for job in infeasible:
            self._shun.pop(job, None)
        return Release(placed=placed, infeasible=infeasible)

    def _first_fit(self, nodes: Capacities) -> tuple[list[tuple[str, str | None]], list[str]]:
        free = {node: dict(resources) for node, resources in nodes.items()}
        for job, (request, node) in self._running.items():
            _place(free, request, prefer=node, among=None if node else self._among(job, nodes))
        placed: list[tuple[str, str | None]] = []
        infeasible = []
        for job, request in self._waiting.items():
            node = _place(free, request, among=self._among(job, nodes))
            if node is not None:
                placed.append((job, node))
            elif not any(_holds(whole, request, 0.0) for whole in nodes.values()):
                infeasible.append(job)
        return placed, infeasible

    def _among(self, job: str, nodes: Capacities) -> list[str] | None:
        """The nodes ``job`` may be counted on (None: any), as Ray will place it: away from the
        nodes it shuns while another could hold it."""
        shun = self._shun.get(job, frozenset())
        request = self._waiting.get(job) or self._running[job][0]
        if not keeps_away(nodes, request, shun):
            return None
        return [node for node in nodes if node not in shun]


def keeps_away(nodes: Capacities, request: Mapping[str, float], shun: frozenset[str]) -> bool:
    """Whether a job that shuns the nodes ``shun`` keeps away from them: a node outside them
    could hold ``request``."""
    return bool(shun) and any(_holds(whole, request, 0.0)
                              for node, whole in nodes.items() if node not in shun)


def _holds(room: Mapping[str, float], request: Mapping[str, float], slack: float) -> bool:
    return all(room.get(k, 0.0) >= v - slack for k, v in request.items())


def _place(free: dict[str, dict[str, float]], request: Mapping[str, float],
           prefer: str | None = None, among: list[str] | None = None) -> str | None:
    """Take ``request`` from the first node with room (``prefer`` first; only nodes ``among``
    when given); that node's id, or None when none has room."""
    for node in sorted(free if among is None else among, key=lambda n: n != prefer):
        room = free[node]
        if _holds(room, request, _SLACK):
            for k, v in request.items():
                room[k] = room.get(k, 0.0) - v
            return node
    return None
