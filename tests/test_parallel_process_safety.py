"""Process safety through pytest: timeouts (every source, both pytest-timeout methods), Ctrl-C,
SIGTERM and SIGKILL of pytest, SIGKILL of an xdist worker -- proved with the process table.

The sessions run ``pytest -p training_plugin`` in subprocesses (they may die).
Every process of a session carries a unique marker in its environment (pytest, xdist workers,
reapers, jobs and their grandchildren inherit it); "nothing left" = no live process carries it.
"""

from __future__ import annotations

import json
import os
import signal
import textwrap
import time
import xml.etree.ElementTree as ET

import pytest

from fakejobs import (QUICK_JOB, TREE_PROCESSES, Session, tree_job, until_ready_before_timeout,
                      wait_gone)
from proctable import marked_pids
from training_plugin.executors.base import MSG_KILLED, MSG_OOM_HINT, MSG_TIMED_OUT
from training_plugin.results import SUMMARY_FILE
from training_plugin.run.signals import MSG_TERMINATED


# -- timeouts ----------------------------------------------------------------------------------

def timed_out(seconds: int) -> str:
    return MSG_TIMED_OUT.format(timeout=seconds)


@pytest.mark.parametrize("method", ["signal", "thread"])
@pytest.mark.parametrize("source", ["cli", "ini", "job table"])
def test_timeout_kills_tree_and_session_goes_on(project, marker, method, source):
    project.makepyfile(train_a_slow=tree_job(300), train_b_quick=QUICK_JOB)

    def run(timeout: int) -> tuple[int, str]:
        args = ["--timeout-method", method, "--junitxml", "junit.xml"]
        if source == "cli":
            args += ["--timeout", str(timeout)]
        elif source == "ini":
            project.makeini(f"[pytest]\ntimeout = {timeout}\n")
        else:  # a pytest.mark.timeout on the item
            project.makefile(".toml", pyproject="[tool.training_plugin.jobs.a_slow]\n"
                                                f"timeout = {timeout}\n")
        rc, out = Session(project, marker, *args).finish()
        assert wait_gone(marker) == []
        return rc, out

    timeout, (rc, out) = until_ready_before_timeout(
        run, lambda: project.path / "out" / "a_slow" / "train.log")
    assert rc == 1, out
    assert timed_out(timeout) in out
    assert "ready" in out  # the log tail is in the failure report
    assert "main done" not in out
    assert "PASSED train_b_quick.py::b_quick" in out
    assert "1 failed, 1 passed" in out
    junit = (project.path / "junit.xml").read_text()
    assert 'tests="2"' in junit and timed_out(timeout) in junit


def test_timeout_under_xdist(project, marker):
    project.makepyfile(train_a_slow=tree_job(300), train_b_quick=QUICK_JOB)

    def run(timeout: int) -> tuple[int, str]:
        rc, out = Session(project, marker, "-n", "2", "--timeout", str(timeout)).finish()
        assert wait_gone(marker) == []
        return rc, out

    timeout, (rc, out) = until_ready_before_timeout(
        run, lambda: project.path / "out" / "a_slow" / "train.log")
    assert rc == 1, out
    assert timed_out(timeout) in out
    assert "1 failed, 1 passed" in out


# -- pytest interrupted or killed ----------------------------------------------------------------

def interrupted_session(project, marker, workers: str) -> Session:
    """A session whose quick job has passed (its report reached the controller) and whose
    slow job's tree is up."""
    project.makepyfile(train_a_quick=QUICK_JOB, train_b_slow=tree_job(300))
    session = Session(project, marker, "-n", workers, "-v", "--junitxml", "junit.xml")
    session.wait_output(r"PASSED.*train_a_quick\.py::a_quick|train_a_quick\.py::a_quick PASSED")
    session.wait_ready("b_slow")
    assert len(marked_pids(marker)) >= TREE_PROCESSES + 1  # the tree and pytest at least
    return session


def assert_results_written(project, out: str) -> None:
    """What the README promises after an interruption: the summary table, summary.json and
    the JUnit XML, each with the job that had passed."""
    assert "= training summary =" in out, out
    assert [line for line in out.splitlines() if line.startswith("a_quick ")
            and " passed " in line], out
    summary = json.loads((project.path / "out" / SUMMARY_FILE).read_text())
    assert {job["id"]: job["outcome"] for job in summary["jobs"]}.get("a_quick") == "passed"
    cases = [case.get("name") for case in ET.parse(project.path / "junit.xml").iter("testcase")]
    assert "a_quick" in cases


@pytest.mark.parametrize("workers", ["0", "2"])
def test_ctrl_c_kills_everything_and_still_writes_the_results(project, marker, workers):
    session = interrupted_session(project, marker, workers)
    os.killpg(session.proc.pid, signal.SIGINT)  # Ctrl-C: the whole foreground group
    rc, out = session.finish()
    assert rc == 2, out  # pytest's "interrupted"
    assert "KeyboardInterrupt" in out
    assert_results_written(project, out)
    assert wait_gone(marker) == []


@pytest.mark.parametrize("workers", ["0", "2"])
def test_sigterm_kills_everything_and_still_writes_the_results(project, marker, workers):
    session = interrupted_session(project, marker, workers)
    session.proc.send_signal(signal.SIGTERM)
    rc, out = session.finish()
    # handled like Ctrl-C (with -n: the xdist controller)
    assert rc == 2, out
    assert MSG_TERMINATED.format(signal="SIGTERM") in out
    assert_results_written(project, out)
    assert wait_gone(marker) == []


@pytest.mark.parametrize("workers", ["0", "2"])
def test_sigkill_of_pytest_kills_everything(project, marker, workers):
    project.makepyfile(train_a_slow=tree_job(300))
    session = Session(project, marker, "-n", workers)
    session.wait_ready("a_slow")
    session.proc.kill()
    session.finish()
    assert wait_gone(marker) == []


KILL_MY_WORKER = textwrap.dedent(
    '''
    import os, signal, time
    def ppid(pid):
        with open(f"/proc/{pid}/stat") as fh:
            return int(fh.read().rsplit(")", 1)[1].split()[1])
    def kill_worker():
        worker = ppid(os.getppid())  # job -> reaper -> xdist worker
        print("killing worker", worker, flush=True)
        os.kill(worker, signal.SIGKILL)
    '''
)


def test_job_that_kills_its_worker_is_that_jobs_failure(project, marker):
    project.makepyfile(
        train_a_killer=tree_job(300, KILL_MY_WORKER, after="kill_worker()"),
        train_b_one=QUICK_JOB, train_c_two=QUICK_JOB, train_d_three=QUICK_JOB,
    )
    rc, out = Session(project, marker, "-n", "2").finish()
    assert rc == 1, out
    assert "crashed while running 'train_a_killer.py::a_killer'" in out  # xdist's words
    assert "1 failed, 3 passed" in out
    assert wait_gone(marker) == []


def test_job_killed_by_sigkill_is_named(project, marker):
    project.makepyfile(train_oom="import os, signal\nos.kill(os.getpid(), signal.SIGKILL)\n")
    rc, out = Session(project, marker).finish()
    assert rc == 1
    assert MSG_KILLED.format(signal="SIGKILL") + MSG_OOM_HINT in out


def test_sigterm_between_jobs_ends_the_session_cleanly(project, marker):
    """-n0: SIGTERM while no job runs (here: an ordinary test sleeps) still interrupts the
    session like Ctrl-C: exit code 2, summary and JUnit XML written, nothing left running."""
    # two jobs: the session runs the training jobs first, then the ordinary test
    project.makepyfile(train_a_quick=QUICK_JOB, train_b_quick=QUICK_JOB, test_zz_slow=(
        "import pathlib, time\n"
        "def test_slow():\n"
        "    pathlib.Path('slow.started').touch()\n"
        "    time.sleep(300)\n"))
    session = Session(project, marker, "--junitxml", "junit.xml", ".")  # "." : the test too
    deadline = time.monotonic() + 120
    while not (project.path / "slow.started").exists():
        assert time.monotonic() < deadline and session.proc.poll() is None
        time.sleep(0.05)
    session.proc.send_signal(signal.SIGTERM)
    rc, out = session.finish()
    assert rc == 2, out
    assert MSG_TERMINATED.format(signal="SIGTERM") in out
    assert_results_written(project, out)
    assert wait_gone(marker) == []
