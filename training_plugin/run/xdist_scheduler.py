"""``LongestFirstScheduling``: the xdist scheduler of training runs (see ``run/order.py``).

A module of its own so that a session without ``-n`` never imports xdist's schedulers.  The
session registers a ``SchedulerPlugin`` (under ``NAME``) holding the durations it read once;
``-p no:training_plugin.xdist_scheduler`` gives xdist's own scheduler back.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pytest
from xdist.scheduler import LoadScheduling

from training_plugin.run.order import estimator

if TYPE_CHECKING:  # pragma: no cover
    from xdist.workermanage import WorkerController


#: The name the scheduler plugin is registered under.
NAME = "training_plugin.xdist_scheduler"


class SchedulerPlugin:
    """Makes the longest-first scheduler from the durations the session knows."""

    def __init__(self, durations: Callable[[], dict[str, float]]) -> None:
        self.durations = durations

    @pytest.hookimpl(optionalhook=True, tryfirst=True)
    def pytest_xdist_make_scheduler(self, config: pytest.Config, log: Any) -> Any:
        """Under ``--dist load`` (what ``-n`` means), hand out items one job at a time in the
        collection's longest-first order; other --dist modes keep xdist's scheduler."""
        if config.getvalue("dist") != "load":
            return None
        return LongestFirstScheduling(config, log, self.durations())


class LongestFirstScheduling(LoadScheduling):  # type: ignore[misc,valid-type]
    """xdist load scheduling that keeps the collection's longest-first order (see module doc)."""

    def __init__(self, config: pytest.Config, log: Any = None,
                 durations: dict[str, float] | None = None) -> None:
        super().__init__(config, log)
        self._estimate = estimator(durations or {})
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
