"""Longest job first: remembered durations, the collection order, and an xdist scheduler.

Durations of earlier runs live in pytest's cache (``training_plugin/durations``: node id ->
seconds of the job's call phase), written by the controller at the end of a session.  Training
items are ordered by remembered duration, longest first; jobs never seen before come first
(treated as long); ties keep node-id order.  The order is a pure function of the cache and the
node ids, so every xdist worker collects the same list.

xdist's LoadScheduling hands each worker chunks of items in advance, which defeats longest-first.
``LongestFirstScheduling`` (in ``run/xdist_scheduler.py``, imported only under xdist) keeps at most
two items on a worker: the one it runs and the next one (an xdist worker starts an item only
once it knows the next, for fixture teardown).  Because the next item must be chosen one job
early, it is the item a longest-first list schedule, simulated on the remembered durations from
the current state, would give that worker.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import pytest

#: pytest cache key of the remembered durations.
DURATIONS_KEY = "training_plugin/durations"
#: Estimate for a job never seen before when nothing at all is known.
DEFAULT_ESTIMATE_S = 1.0


def known_durations(config: pytest.Config,
                    cells: dict[str, str] | None = None) -> dict[str, float]:
    """Remembered durations, and for the jobs without one, the expected ones that plugins
    give through ``pytest_training_expected_durations`` (the order of a first run on a fresh
    clone comes from the committed baseline).  ``cells`` maps a sweep cell's node id to its
    job's: a cell never run is expected to take as long as its job (cells and jobs go longest
    first)."""
    expected: dict[str, float] = {}
    for answer in config.hook.pytest_training_expected_durations(config=config):
        if isinstance(answer, dict):
            expected.update({str(k): float(v) for k, v in answer.items()
                             if isinstance(v, (int, float)) and not isinstance(v, bool)})
    known = {**expected, **load_durations(config)}
    for cell, job in (cells or {}).items():
        if cell not in known and job in known:
            known[cell] = known[job]
    return known


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
    """Node ids ordered longest first; unknown ones first of all; ties in the order given
    (the collection's: a sweep's cells stay in their declared order, seed_2 before seed_10)."""
    return sorted(nodeids, key=lambda nodeid: -durations.get(nodeid, math.inf))


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
