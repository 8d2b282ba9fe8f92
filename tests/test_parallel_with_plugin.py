"""Timeout precedence, the job table's timeout and env, GPUs and the thread budget together
under xdist (the rest of the process-safety suite is test_parallel_process_safety.py, which
runs the same real plugin); the process table is the judge."""

from __future__ import annotations

import json
import os

import pytest

import test_parallel_process_safety as ps

marker = ps.marker
@pytest.fixture
def project(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.makeini("[pytest]\n")
    return pytester


def session(project, marker, *args, env=None) -> ps.Session:
    return ps.Session(project, marker, *args, env=env)


@pytest.mark.parametrize("method", ["signal", "thread"])
def test_job_table_timeout_kills_tree(project, marker, method):
    project.makepyfile(train_a_slow=ps.tree_job(300), train_b_quick=ps.QUICK_JOB)
    project.makefile(".toml", pyproject="[tool.training_plugin.jobs.a_slow]\ntimeout = 1\n")
    rc, out = session(project, marker, "--timeout-method", method, "--junitxml", "j.xml",
                      "-n", "2" if method == "thread" else "0").finish()
    assert rc == 1, out
    assert "timed out after 1 s (process tree killed)" in out
    assert "1 failed, 1 passed" in out
    assert "timed out after 1 s" in (project.path / "j.xml").read_text()
    summary = json.loads((project.path / "out" / "summary.json").read_text())
    assert summary  # the session went on to its end
    assert ps.wait_gone(marker, 3) == []


def test_cli_timeout_beats_nothing_and_marker_beats_cli(project, marker):
    project.makepyfile(train_a_slow=ps.tree_job(300), train_c_marked=ps.tree_job(2))
    project.makefile(".toml", pyproject="[tool.training_plugin.jobs.c_marked]\ntimeout = 30\n")
    rc, out = session(project, marker, "--timeout", "1").finish()
    assert rc == 1, out
    assert "a_slow' failed: timed out after 1 s" in out  # --timeout
    assert "1 failed, 1 passed" in out  # c_marked: its table timeout (30 s) wins over --timeout
    assert ps.wait_gone(marker, 3) == []


ENV_JOB = (
    "import json, os, time\n"
    "time.sleep(0.4)\n"
    "out = os.environ['TRAINING_OUTPUT_DIR']\n"
    "os.makedirs(out, exist_ok=True)\n"
    "json.dump(dict(os.environ), open(os.path.join(out, 'env.json'), 'w'))\n"
)


def test_budget_gpus_and_table_override_reach_jobs(project, marker):
    project.makepyfile(**{f"train_j{i}": ENV_JOB for i in range(4)})
    project.makefile(".toml", pyproject='[tool.training_plugin.jobs.j3]\n'
                                        'env = { OMP_NUM_THREADS = "7" }\n')
    rc, out = session(project, marker, "-n", "2",
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
    project.makeini("[pytest]\ntimeout = 1\ntimeout_func_only = true\n")
    project.makepyfile(train_a_slow=ps.tree_job(300))
    rc, out = session(project, marker, "--timeout-method", "thread").finish()
    assert rc == 1, out
    assert "timed out after 1 s (process tree killed)" in out
    assert ps.wait_gone(marker, 3) == []
