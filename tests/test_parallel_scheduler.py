"""Longest first: the order from remembered durations, the xdist scheduler driven through real
xdist workers on a simulated clock, and durations written to / read from pytest's cache."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from training_plugin.run.order import longest_first

from fakejobs import PLUGIN_ARGS, Session, plugin_project

#: The issue's set: eight jobs, named so that the longest sort last.
ISSUE_SET = {"a1": 2, "a2": 2, "b1": 4, "b2": 4, "c1": 6, "c2": 6, "d": 8, "e": 12}


def simulate_makespan(durations, workers):
    """Makespan of a list schedule of ``durations`` (in order) on ``workers``."""
    free = [0.0] * workers
    for d in durations:
        i = free.index(min(free))
        free[i] += d
    return max(free)


def test_longest_first_unknown_first_ties_in_the_order_given():
    durations = {"x::a": 1.0, "x::b": 5.0, "x::c": 5.0}
    assert longest_first(["x::a", "x::c", "x::new2", "x::b", "x::new1"], durations) == [
        "x::new2", "x::new1", "x::c", "x::b", "x::a"]
    cells = [f"x::job[seed_{n}]" for n in range(12)]  # a sweep's cells, none run before
    assert longest_first(cells, {}) == cells


# -- the scheduler in real xdist workers, on a simulated clock ---------------------------------
#
# Every job appends "start <job> <worker>" to ``events`` and then waits for ``release/<job>``.
# The test is the clock: it ends the running job with the earliest simulated end, after setting
# the controller's clock (the scheduler's time.monotonic) to that end.  It does so only once
# every worker either runs a job or is down (xdist's pytest_testnodedown, logged by the
# project's conftest), i.e. once the scheduler has made every decision of that instant.
# Nothing depends on how fast the machine is.

CONDUCTED_CONFTEST = """\
import pathlib

HERE = pathlib.Path(__file__).parent


class SimulatedTime:
    @staticmethod
    def monotonic():
        return float((HERE / "clock").read_text())


def pytest_configure(config):
    if not hasattr(config, "workerinput"):
        from training_plugin.run import xdist_scheduler
        xdist_scheduler.time = SimulatedTime


def pytest_testnodedown(node, error):
    with open(HERE / "events", "a") as f:
        f.write(f"down {node.gateway.id}\\n")
"""

CONDUCTED_JOB = """\
import os, pathlib, time
job, worker = os.environ["TRAINING_JOB_ID"], os.environ["PYTEST_XDIST_WORKER"]
with open("events", "a") as f:
    f.write(f"start {job} {worker}\\n")
while not pathlib.Path("release", job).exists():
    time.sleep(0.02)
"""


def conduct(session: Session, root: Path, durations: dict[str, float],
            workers: tuple[str, ...], within_s: float = 120,
            ) -> tuple[float, list[tuple[str, str, float]]]:
    """Run the session's jobs on the simulated clock; return (makespan, [(job, worker,
    simulated start)] in the order the jobs started)."""
    clock = 0.0
    started: list[tuple[str, str, float]] = []
    running: dict[str, tuple[float, str]] = {}  # job -> (simulated end, worker)
    released = 0
    while released < len(durations):
        deadline = time.monotonic() + within_s
        while True:
            events = (root / "events").read_text().splitlines() if (root / "events").exists() \
                else []
            down = {line.split()[1] for line in events if line.startswith("down ")}
            for line in events:
                if line.startswith("start "):
                    _, job, worker = line.split()
                    if job not in running and job not in {s[0] for s in started}:
                        started.append((job, worker, clock))
                        running[job] = (clock + durations[job], worker)
            busy = {worker for _, worker in running.values()}
            if running and all(w in busy or w in down for w in workers):
                break  # every decision of this instant is made
            assert session.proc.poll() is None, session.output()
            assert time.monotonic() < deadline, f"stalled at t={clock}: {events}\n" \
                                                f"{session.output()}"
            time.sleep(0.02)
        job = min(running, key=lambda j: (running[j], j))
        clock = running.pop(job)[0]
        (root / "clock").write_text(str(clock))
        (root / "release" / job).touch()
        released += 1
    return clock, started


@pytest.mark.parametrize("remembered", [True, False], ids=["remembered", "first-run"])
def test_real_workers_start_jobs_longest_first_on_a_simulated_clock(project, marker,
                                                                     remembered):
    project.makeconftest(CONDUCTED_CONFTEST)
    project.makepyfile(**{f"train_{k}": CONDUCTED_JOB for k in ISSUE_SET})
    (project.path / "clock").write_text("0")
    (project.path / "release").mkdir()
    if remembered:
        cache = project.path / ".pytest_cache" / "v" / "training_plugin"
        cache.mkdir(parents=True)
        (cache / "durations").write_text(json.dumps(
            {f"train_{k}.py::{k}": v for k, v in ISSUE_SET.items()}))
    session = Session(project, marker, "-n", "2", "-v", cache=True)
    makespan, started = conduct(session, project.path, ISSUE_SET, ("gw0", "gw1"))
    rc, out = session.finish()
    assert rc == 0, out
    assert "scheduling tests via LongestFirstScheduling" in out
    assert sorted(job for job, _, _ in started) == sorted(ISSUE_SET)  # each job once
    at = {job: t for job, _, t in started}
    if remembered:
        # the two longest start at once, one on each worker; then longest first (a job never
        # starts after a shorter one); the optimum: 12+6+4 | 8+6+4+2+2
        assert {job for job, _, t in started if t == 0} == {"e", "d"}
        assert len({worker for _, worker, t in started if t == 0}) == 2
        expected = longest_first(at, {k: float(v) for k, v in ISSUE_SET.items()})
        assert [at[k] for k in expected] == sorted(at.values()), started
        assert makespan == 22
    else:  # nothing known: node-id order (a job never starts after a later node id)
        assert [at[k] for k in sorted(at)] == sorted(at.values()), started
        assert makespan == simulate_makespan([ISSUE_SET[k] for k in sorted(ISSUE_SET)], 2) == 24


# -- through pytest ------------------------------------------------------------------------------

def jobs_with_sleeps(pytester, sleeps: dict[str, float]) -> None:
    plugin_project(pytester)
    pytester.makepyfile(**{f"train_{k}": f"import time\ntime.sleep({v})\n"
                           for k, v in sleeps.items()})


def test_durations_are_remembered_and_order_the_next_run(pytester):
    jobs_with_sleeps(pytester, {"a": 0.05, "b": 0.6, "c": 0.3})
    first = pytester.runpytest_subprocess(*PLUGIN_ARGS, "-v")
    first.assert_outcomes(passed=3)
    cache = pytester.path / ".pytest_cache" / "v" / "training_plugin" / "durations"
    remembered = json.loads(cache.read_text())
    assert set(remembered) == {"train_a.py::a", "train_b.py::b", "train_c.py::c"}
    assert remembered["train_b.py::b"] >= 0.6 and remembered["train_c.py::c"] >= 0.3
    # the next run lists the jobs by what was remembered, longest first
    second = pytester.runpytest_subprocess(*PLUGIN_ARGS, "--collect-only", "-q")
    expected = longest_first(remembered, remembered)
    assert [line for line in second.outlines if "::" in line] == expected
    pytester.makepyfile(train_new="if __name__ == '__main__':\n    pass\n")  # never seen: first
    third = pytester.runpytest_subprocess(*PLUGIN_ARGS, "--collect-only", "-q")
    assert [line for line in third.outlines if "::" in line] == ["train_new.py::new", *expected]


def test_a_fresh_clone_orders_its_first_run_by_the_baselines_durations(pytester):
    # Nothing remembered (no cache), but the --compare baseline says how long each job took
    # when it was saved: the first run is already longest first, with or without xdist.
    jobs_with_sleeps(pytester, {"a": 0.05, "b": 0.05, "c": 0.05})
    pytester.makefile(".json", base=json.dumps({"version": 1, "jobs": {
        job: {"nodeid": f"train_{job}.py::{job}", "duration_s": seconds, "argv": [],
              "metrics": {}} for job, seconds in (("a", 5.0), ("b", 60.0), ("c", 20.0))}}))
    args = (*PLUGIN_ARGS, "-p", "no:cacheprovider", "--compare=base.json")
    listed = pytester.runpytest_subprocess(*args, "--collect-only", "-q")
    assert [line for line in listed.outlines if "::" in line] == [
        "train_b.py::b", "train_c.py::c", "train_a.py::a"]
    plain = pytester.runpytest_subprocess(*PLUGIN_ARGS, "-p", "no:cacheprovider",
                                          "--collect-only", "-q")
    assert [line for line in plain.outlines if "::" in line] == [
        "train_a.py::a", "train_b.py::b", "train_c.py::c"]  # without it: collection order
    result = pytester.runpytest_subprocess(*args, "-n", "2", "-v")
    result.assert_outcomes(passed=3)
    started = [line.split()[-1] for line in result.outlines if line.startswith("train_")]
    assert set(started[:2]) == {"train_b.py::b", "train_c.py::c"}, result.outlines


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
    """``--dist load`` (what ``-n`` means) gets the longest-first scheduler; ``--dist
    loadfile`` keeps xdist's own."""
    jobs_with_sleeps(pytester, {"a": 0, "b": 0})
    for dist, scheduler in (("load", "LongestFirstScheduling"),
                            ("loadfile", "LoadFileScheduling")):
        result = pytester.runpytest_subprocess(*PLUGIN_ARGS, "-n", "2", "--dist", dist, "-v")
        result.assert_outcomes(passed=2)
        result.stdout.fnmatch_lines([f"*scheduling tests via {scheduler}*"])


@pytest.mark.parametrize("workers", [1, 2, 3])
def test_simulate_makespan(workers):
    assert simulate_makespan([5, 3, 3], workers) == {1: 11, 2: 6, 3: 5}[workers]


#: A conftest under which each xdist worker reads its own, different durations from pytest's
#: cache (as if another session rewrote the cache while the workers started).
WORKER_CACHES = """\
import os

DIFFERENT = {
    "gw0": {"train_a.py::a": 9.0, "train_b.py::b": 1.0, "train_c.py::c": 5.0},
    "gw1": {"train_a.py::a": 1.0, "train_b.py::b": 5.0, "train_c.py::c": 9.0},
}


def pytest_configure(config):
    worker = getattr(config, "workerinput", {}).get("workerid")
    if worker is None:
        return
    real_get = config.cache.get
    config.cache.get = lambda key, default: (
        DIFFERENT[worker] if key == "training_plugin/durations" else real_get(key, default))
"""


def test_workers_sort_by_the_controllers_snapshot(pytester):
    """Workers whose caches disagree still collect one order (xdist would abort on two): they
    sort by the controller's snapshot (b, c, a)."""
    jobs_with_sleeps(pytester, {"a": 0, "b": 0, "c": 0})
    pytester.makeconftest(WORKER_CACHES)
    cache = pytester.path / ".pytest_cache" / "v" / "training_plugin"
    cache.mkdir(parents=True)
    (cache / "durations").write_text(json.dumps(
        {"train_a.py::a": 1.0, "train_b.py::b": 9.0, "train_c.py::c": 5.0}))
    result = pytester.runpytest_subprocess(*PLUGIN_ARGS, "-n", "2", "-v")
    result.assert_outcomes(passed=3)
    assert "Different tests" not in result.stdout.str()
    # xdist -v names each item as it starts: the two longest by the snapshot start first
    started = [line.split()[-1] for line in result.outlines if line.startswith("train_")]
    assert set(started[:2]) == {"train_b.py::b", "train_c.py::c"}
