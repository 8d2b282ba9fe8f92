"""Longest job first: remembered durations, the collection order, and an xdist scheduler.

Durations of earlier runs live in pytest's cache (``training_plugin/durations``: node id ->
seconds of the job's call phase), written by the controller at the end of a session.  Training
items are ordered by remembered duration, longest first; jobs never seen before come first
(treated as long); ties keep node-id order.  The order is a pure function of the cache and the
node ids, so every xdist worker collects the same list.

xdist's LoadScheduling hands each worker chunks of items in advance, which defeats longest-first.
``LongestFirstScheduling`` keeps at most two items on a worker: the one it runs and the next one
(an xdist worker starts an item only once it knows the next, for fixture teardown).  Because the
next item must be chosen one job early, it is the item a longest-first list schedule, simulated
on the remembered durations from the current state, would give that worker.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:  # pragma: no cover
    from xdist.workermanage import WorkerController

try:
    from xdist.scheduler import LoadScheduling
except ImportError:  # pragma: no cover - xdist not installed: no scheduler needed
    LoadScheduling = object  # type: ignore[assignment,misc]

#: pytest cache key of the remembered durations.
DURATIONS_KEY = "training_plugin/durations"
#: Estimate for a job never seen before when nothing at all is known.
DEFAULT_ESTIMATE_S = 1.0


def load_durations(config: pytest.Config) -> dict[str, float]:
    """Remembered durations (node id -> s); {} without a cache (``-p no:cacheprovider``)."""
    cache = getattr(config, "cache", None)
    if cache is None:
        return {}
    data = cache.get(DURATIONS_KEY, {})
    if not isinstance(data, dict):
        return {}
    return {str(k): float(v) for k, v in data.items() if isinstance(v, (int, float))}


def save_durations(config: pytest.Config, measured: dict[str, float]) -> None:
    """Merge this session's durations into the cache (controller only)."""
    cache = getattr(config, "cache", None)
    if cache is None or not measured:
        return
    data = load_durations(config)
    data.update({k: round(v, 3) for k, v in measured.items()})
    cache.set(DURATIONS_KEY, dict(sorted(data.items())))


def longest_first(nodeids: Iterable[str], durations: dict[str, float]) -> list[str]:
    """Node ids ordered longest first; unknown ones first of all; ties by node id."""
    def key(nodeid: str) -> tuple[float, str]:
        return (-durations.get(nodeid, math.inf), nodeid)

    return sorted(nodeids, key=key)


def order_items(items: list[pytest.Item], durations: dict[str, float],
                is_training: Any) -> None:
    """Reorder ``items`` in place: training items longest first, then the others as they were."""
    training = [item for item in items if is_training(item)]
    if len(training) < 2:
        return
    by_id = {item.nodeid: item for item in training}
    ordered = [by_id[nodeid] for nodeid in longest_first(by_id, durations)]
    others = [item for item in items if not is_training(item)]
    items[:] = ordered + others


def estimator(durations: dict[str, float]):  # type: ignore[no-untyped-def]
    """A function node id -> expected seconds; unknown jobs count as the longest known one."""
    unknown = max(durations.values(), default=DEFAULT_ESTIMATE_S) or DEFAULT_ESTIMATE_S

    def estimate(nodeid: str) -> float:
        return durations.get(nodeid, unknown)

    return estimate


class LongestFirstScheduling(LoadScheduling):  # type: ignore[misc,valid-type]
    """xdist load scheduling that keeps the collection's longest-first order (see module doc)."""

    def __init__(self, config: pytest.Config, log: Any = None) -> None:
        super().__init__(config, log)
        self._estimate = estimator(load_durations(config))  # the cache is written only at the end
        self._started: dict[Any, float] = {}  # node -> when its first pending item started

    # -- the one decision that differs: which item a node gets, and when ----------------------
    def check_schedule(self, node: "WorkerController", duration: float = 0) -> None:
        """Top the node up to two items (running + next); shut it down when nothing is left
        for it."""
        if node.shutting_down:
            return
        pending = self.node2pending[node]
        now = time.monotonic()
        if len(pending) == 1 and node not in self._started:
            self._started[node] = now
        while len(pending) < 2 and self.pending:
            index = self._pick_for(node, now)
            if index is None:
                break
            self.pending.remove(index)
            pending.append(index)
            node.send_runtest_some([index])
            if len(pending) == 1:
                self._started[node] = now
        if not self.pending or len(pending) < 2:
            node.shutdown()

    def mark_test_complete(self, node: "WorkerController", item_index: int,
                           duration: float = 0) -> None:
        """The node's running item is done: its next one starts now."""
        self._started.pop(node, None)
        super().mark_test_complete(node, item_index, duration)

    def remove_node(self, node: "WorkerController") -> str | None:
        """A node went down: forget it; its queued items go back in longest-first order."""
        self._started.pop(node, None)
        crashitem = super().remove_node(node)
        self.pending.sort()
        return crashitem

    def schedule(self) -> None:
        """Start every node on its first two items (collection checks as in LoadScheduling)."""
        assert self.collection_is_completed
        if self.collection is None:
            if not self._check_nodes_have_same_collection():
                self.log("**Different tests collected, aborting run**")
                return
            self.collection = next(iter(self.node2collection.values()))
            self.pending[:] = range(len(self.collection))
            if not self.collection:
                return
        for node in self.nodes:
            self.check_schedule(node)

    # -- the simulation ------------------------------------------------------------------------
    def _free_at(self, node: "WorkerController", now: float) -> float:
        """When ``node`` would finish what it already holds, by the estimates."""
        assert self.collection is not None
        pending = self.node2pending[node]
        if not pending:
            return now
        start = self._started.get(node, now)
        first = max(now, start + self._estimate(self.collection[pending[0]]))
        return first + sum(self._estimate(self.collection[i]) for i in pending[1:])

    def _pick_for(self, node: "WorkerController", now: float) -> int | None:
        """The first pending item a longest-first list schedule would hand to ``node``; None
        when every pending item would finish sooner on another node."""
        assert self.collection is not None
        nodes = [n for n in self.nodes if not n.shutting_down]
        free = {n: self._free_at(n, now) for n in nodes}
        order = {n: i for i, n in enumerate(nodes)}
        for index in sorted(self.pending):
            # Earliest free node takes the item; on a tie this node (it is asking now) first.
            winner = min(nodes, key=lambda n: (free[n], n is not node, order[n]))
            if winner is node:
                return index
            free[winner] += self._estimate(self.collection[index])
        return None


def simulate_makespan(durations: Sequence[float], workers: int) -> float:
    """Makespan of a list schedule of ``durations`` (in order) on ``workers`` (for benches)."""
    free = [0.0] * workers
    for d in durations:
        i = free.index(min(free))
        free[i] += d
    return max(free)
