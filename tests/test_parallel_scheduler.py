"""Longest first: the order from remembered durations, the xdist scheduler (driven by a
discrete-event model of xdist workers), and durations written to / read from pytest's cache."""

from __future__ import annotations

import json

import pytest

from training_plugin import scheduler, xdist_scheduler
from training_plugin.scheduler import longest_first, simulate_makespan
from training_plugin.xdist_scheduler import LongestFirstScheduling

from fakejobs import PLUGIN_ARGS, plugin_project

#: The issue's set: eight jobs, named so that the longest sort last.
ISSUE_SET = {"a1": 2, "a2": 2, "b1": 4, "b2": 4, "c1": 6, "c2": 6, "d": 8, "e": 12}


def test_longest_first_unknown_first_ties_by_nodeid():
    durations = {"x::a": 1.0, "x::b": 5.0, "x::c": 5.0}
    assert longest_first(["x::a", "x::c", "x::new2", "x::b", "x::new1"], durations) == [
        "x::new1", "x::new2", "x::b", "x::c", "x::a"]


# -- the scheduler against a model of xdist workers -------------------------------------------

class FakeConfig:
    def __init__(self, workers: int, durations: dict[str, float]) -> None:
        self.workers = workers
        self.cache = FakeCache({scheduler.DURATIONS_KEY: durations})

    def getvalue(self, name):
        return ["popen"] * self.workers if name == "tx" else None

    getoption = getvalue


class FakeCache:
    def __init__(self, data):
        self.data = data

    def get(self, key, default):
        return self.data.get(key, default)


class FakeNode:
    """An xdist worker as the scheduler sees it.  Like xdist's, it starts an item only once it
    holds the next one (or was told to shut down)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.queue: list[int] = []
        self.shutting_down = False
        self.running: tuple[int, float] | None = None
        self.gateway = type("Gateway", (), {"id": name})()

    def send_runtest_some(self, indices):
        self.queue.extend(indices)

    def shutdown(self):
        self.shutting_down = True

    def __repr__(self):
        return self.name


def run_model(sched_cls, true: dict[str, float], remembered: dict[str, float], workers: int,
              monkeypatch) -> tuple[float, dict[str, list[str]]]:
    """Drive a scheduler through a whole session; return (makespan, items per node)."""
    clock = [0.0]
    monkeypatch.setattr(xdist_scheduler.time, "monotonic", lambda: clock[0])
    collection = longest_first([f"t.py::{k}" for k in true], remembered)
    sched = sched_cls(FakeConfig(workers, remembered))
    nodes = [FakeNode(f"gw{i}") for i in range(workers)]
    for node in nodes:
        sched.add_node(node)
        sched.add_node_collection(node, collection)
    sched.schedule()
    ran: dict[str, list[str]] = {n.name: [] for n in nodes}
    while True:
        for node in nodes:
            if node.running is None and node.queue and (len(node.queue) >= 2
                                                        or node.shutting_down):
                index = node.queue[0]
                nodeid = collection[index]
                node.running = (index, clock[0] + true[nodeid.split("::")[1]])
                ran[node.name].append(nodeid.split("::")[1])
        busy = [n for n in nodes if n.running is not None]
        if not busy:
            break
        node = min(busy, key=lambda n: n.running[1])  # type: ignore[index]
        index, clock[0] = node.running  # type: ignore[misc]
        node.running = None
        node.queue.pop(0)
        sched.mark_test_complete(node, index, 0.0)
    assert sched.tests_finished
    assert sorted(j for js in ran.values() for j in js) == sorted(true)  # each job once
    return clock[0], ran


def test_remembered_durations_give_the_optimal_makespan(monkeypatch):
    makespan, ran = run_model(LongestFirstScheduling, ISSUE_SET,
                              {f"t.py::{k}": v for k, v in ISSUE_SET.items()}, 2, monkeypatch)
    assert makespan == 22  # the optimum: 12+6+4 | 8+6+4+2+2
    assert ran["gw0"][0] == "e" and ran["gw1"][0] == "d"


def test_first_run_is_file_order_and_still_one_item_at_a_time(monkeypatch):
    makespan, _ = run_model(LongestFirstScheduling, ISSUE_SET, {}, 2, monkeypatch)
    assert makespan == simulate_makespan(sorted(ISSUE_SET.values()), 2) == 24


def test_wrong_estimates_do_not_lose_jobs(monkeypatch):
    remembered = {f"t.py::{k}": 1.0 for k in ISSUE_SET}  # all wrong
    makespan, _ = run_model(LongestFirstScheduling, ISSUE_SET, remembered, 3, monkeypatch)
    assert makespan <= sum(ISSUE_SET.values())


# -- through pytest ------------------------------------------------------------------------------

def jobs_with_sleeps(pytester, sleeps: dict[str, float]) -> None:
    plugin_project(pytester)
    pytester.makepyfile(**{f"train_{k}": f"import time\ntime.sleep({v})\n"
                           for k, v in sleeps.items()})


def test_durations_are_remembered_and_order_the_next_run(pytester):
    jobs_with_sleeps(pytester, {"a": 0.05, "b": 0.6, "c": 0.3})
    first = pytester.runpytest_subprocess(*PLUGIN_ARGS, "-v")
    first.assert_outcomes(passed=3)
    first.stdout.fnmatch_lines(["*train_a.py::a PASSED*", "*train_b.py::b PASSED*",
                                "*train_c.py::c PASSED*"])
    cache = pytester.path / ".pytest_cache" / "v" / "training_plugin" / "durations"
    remembered = json.loads(cache.read_text())
    assert set(remembered) == {"train_a.py::a", "train_b.py::b", "train_c.py::c"}
    assert remembered["train_b.py::b"] >= 0.6 > remembered["train_a.py::a"]
    second = pytester.runpytest_subprocess(*PLUGIN_ARGS, "--collect-only", "-q")
    second.stdout.fnmatch_lines(["train_b.py::b", "train_c.py::c", "train_a.py::a"])
    pytester.makepyfile(train_new="pass\n")  # never seen: treated as long, goes first
    third = pytester.runpytest_subprocess(*PLUGIN_ARGS, "--collect-only", "-q")
    third.stdout.fnmatch_lines(["train_new.py::new", "train_b.py::b", "train_c.py::c",
                                "train_a.py::a"])


def test_xdist_uses_the_longest_first_scheduler_and_records_durations(pytester):
    jobs_with_sleeps(pytester, {"a": 0.05, "b": 0.4, "c": 0.2, "d": 0.1})
    cache = pytester.path / ".pytest_cache" / "v" / "training_plugin"
    cache.mkdir(parents=True)
    (cache / "durations").write_text(json.dumps(
        {"train_a.py::a": 0.05, "train_b.py::b": 0.4, "train_c.py::c": 0.2,
         "train_d.py::d": 0.1}))
    result = pytester.runpytest_subprocess(*PLUGIN_ARGS, "-n", "2", "-v")
    result.assert_outcomes(passed=4)
    result.stdout.fnmatch_lines(["*scheduling tests via LongestFirstScheduling*"])
    started = [line.split()[-1] for line in result.outlines if line.startswith("train_")]
    assert set(started[:2]) == {"train_b.py::b", "train_c.py::c"}  # the two longest first
    assert json.loads((cache / "durations").read_text())["train_b.py::b"] >= 0.4


def test_other_dist_modes_keep_xdists_scheduler(pytester):
    jobs_with_sleeps(pytester, {"a": 0, "b": 0})
    result = pytester.runpytest_subprocess(*PLUGIN_ARGS, "-n", "2", "--dist",
                                           "loadfile", "-v")
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(["*scheduling tests via LoadFileScheduling*"])


@pytest.mark.parametrize("workers", [1, 2, 3])
def test_simulate_makespan(workers):
    assert simulate_makespan([5, 3, 3], workers) == {1: 11, 2: 6, 3: 5}[workers]


def test_workers_sort_by_the_controllers_snapshot(pytester):
    """The cache changing while workers start (another session finishing) must not make the
    workers' collections differ (xdist would abort): workers sort by the controller's copy."""
    jobs_with_sleeps(pytester, {"a": 0, "b": 0, "c": 0})
    pytester.makeconftest('''

def pytest_collection_modifyitems(config, items):
    workerinput = getattr(config, "workerinput", None)
    if workerinput and workerinput["workerid"] == "gw1":  # rewrite the cache under gw1's feet
        config.cache.set("training_plugin/durations",
                         {"train_a.py::a": 9.0, "train_b.py::b": 1.0, "train_c.py::c": 5.0})
''')
    cache = pytester.path / ".pytest_cache" / "v" / "training_plugin"
    cache.mkdir(parents=True)
    (cache / "durations").write_text(json.dumps(
        {"train_a.py::a": 1.0, "train_b.py::b": 9.0, "train_c.py::c": 5.0}))
    result = pytester.runpytest_subprocess(*PLUGIN_ARGS, "-n", "2")
    result.assert_outcomes(passed=3)
