"""Timeout precedence, the job table's timeout and env, GPUs and the thread budget together
under xdist (the rest of the process-safety suite is test_parallel_process_safety.py, which
runs the same real plugin); the process table is the judge."""

from __future__ import annotations

import json
import os

import pytest

from fakejobs import (ENV_JOB, QUICK_JOB, Session, tree_job, until_ready_before_timeout,
                      wait_gone)
from training_plugin.executors.base import MSG_TIMED_OUT
from training_plugin.results import SUMMARY_FILE


def slow_log(project):
    return lambda: project.path / "out" / "a_slow" / "train.log"


@pytest.mark.parametrize("method", ["signal", "thread"])
def test_job_table_timeout_kills_tree(project, marker, method):
    project.makepyfile(train_a_slow=tree_job(300), train_b_quick=QUICK_JOB)

    def run(timeout: int) -> tuple[int, str]:
        project.makefile(".toml", pyproject=f"[tool.training_plugin.jobs.a_slow]\n"
                                            f"timeout = {timeout}\n")
        rc, out = Session(project, marker, "--timeout-method", method, "--junitxml", "j.xml",
                          "-n", "2" if method == "thread" else "0").finish()
        assert wait_gone(marker) == []
        return rc, out

    timeout, (rc, out) = until_ready_before_timeout(run, slow_log(project))
    message = MSG_TIMED_OUT.format(timeout=timeout)
    assert rc == 1, out
    assert message in out
    assert "1 failed, 1 passed" in out
    assert message in (project.path / "j.xml").read_text()
    # the session went on to its end: both jobs in summary.json, the story says why
    summary = json.loads((project.path / "out" / SUMMARY_FILE).read_text())
    by_id = {job["id"]: job for job in summary["jobs"]}
    assert by_id["b_quick"]["outcome"] == "passed"
    assert by_id["a_slow"]["outcome"] == "failed" and message in by_id["a_slow"]["story"]


def test_cli_timeout_beats_nothing_and_marker_beats_cli(project, marker):
    project.makefile(".toml", pyproject="[tool.training_plugin.jobs.c_marked]\ntimeout = 300\n")

    def run(timeout: int) -> tuple[int, str]:
        # c_marked sleeps past --timeout: only its table timeout (300 s) lets it finish
        project.makepyfile(train_a_slow=tree_job(300), train_c_marked=tree_job(timeout + 1))
        rc, out = Session(project, marker, "--timeout", str(timeout)).finish()
        assert wait_gone(marker) == []
        return rc, out

    timeout, (rc, out) = until_ready_before_timeout(run, slow_log(project))
    assert rc == 1, out
    assert f"a_slow' failed: {MSG_TIMED_OUT.format(timeout=timeout)}" in out  # --timeout
    assert "1 failed, 1 passed" in out  # c_marked: its table timeout won over --timeout
    assert "main done" in (project.path / "out" / "c_marked" / "train.log").read_text()


def test_budget_gpus_and_table_override_reach_jobs(project, marker):
    project.makepyfile(**{f"train_j{i}": ENV_JOB for i in range(4)})
    project.makefile(".toml", pyproject='[tool.training_plugin.jobs.j3]\n'
                                        'env = { OMP_NUM_THREADS = "7" }\n')
    rc, out = Session(project, marker, "-n", "2",
                      env={"TRAINING_PLUGIN_GPUS": "2,6"}).finish()
    assert rc == 0, out
    threads = str(max(1, len(os.sched_getaffinity(0)) // 2))
    seen = {f"j{i}": json.loads((project.path / "out" / f"j{i}" / "env.json").read_text())
            for i in range(4)}
    for job, env in seen.items():
        assert env["OMP_NUM_THREADS"] == ("7" if job == "j3" else threads)  # the table wins
        assert env["OPENBLAS_NUM_THREADS"] == env["TRAINING_THREADS"] == threads
        assert env["CUDA_VISIBLE_DEVICES"] == {"gw0": "2", "gw1": "6"}[env["PYTEST_XDIST_WORKER"]]


def test_func_only_timeout_path(project, marker):
    """pytest-timeout's func_only path sets the timer in pytest_runtest_call; same outcome."""
    project.makepyfile(train_a_slow=tree_job(300))

    def run(timeout: int) -> tuple[int, str]:
        project.makeini(f"[pytest]\ntimeout = {timeout}\ntimeout_func_only = true\n")
        rc, out = Session(project, marker, "--timeout-method", "thread").finish()
        assert wait_gone(marker) == []
        return rc, out

    timeout, (rc, out) = until_ready_before_timeout(run, slow_log(project))
    assert rc == 1, out
    assert MSG_TIMED_OUT.format(timeout=timeout) in out
