"""The process-safety, budget and ordering guarantees through the real plugin
(``pytest -p training_plugin``), job table included; the process table is the judge."""

from __future__ import annotations

import json
import os
import signal

import pytest

try:
    import test_parallel_process_safety as ps
except ImportError:  # pragma: no cover
    from tests import test_parallel_process_safety as ps  # type: ignore[no-redef]

marker = ps.marker
PLUGIN = ("-p", "training_plugin", "--output-dir", "out")


@pytest.fixture
def project(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.makeini("[pytest]\n")
    return pytester


def session(project, marker, *args, env=None) -> ps.Session:
    return ps.Session(project, marker, *PLUGIN, *args, env=env)


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


@pytest.mark.parametrize("how", ["SIGINT", "SIGTERM", "SIGKILL"])
def test_interrupting_pytest_leaves_nothing(project, marker, how):
    project.makepyfile(train_a_slow=ps.tree_job(300))
    run = session(project, marker, "-n", "2")
    run.wait_ready("a_slow")
    if how == "SIGINT":
        os.killpg(run.proc.pid, signal.SIGINT)
    else:
        run.proc.send_signal(getattr(signal, how))
    rc, out = run.finish()
    if how == "SIGINT":
        assert rc == 2 and "KeyboardInterrupt" in out, out
    assert ps.wait_gone(marker, 12) == []


def test_job_that_kills_its_worker(project, marker):
    project.makepyfile(
        train_a_killer=ps.tree_job(300, ps.KILL_MY_WORKER, after="kill_worker()"),
        train_b_one=ps.QUICK_JOB, train_c_two=ps.QUICK_JOB,
    )
    rc, out = session(project, marker, "-n", "2").finish()
    assert rc == 1, out
    assert "crashed while running 'train_a_killer.py::a_killer'" in out
    assert "1 failed, 2 passed" in out
    assert ps.wait_gone(marker, 5) == []


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


def test_longest_first_with_the_plugin(project):
    project.makepyfile(train_a="import time; time.sleep(0.05)\n",
                       train_b="import time; time.sleep(0.5)\n",
                       train_c="import time; time.sleep(0.25)\n")
    first = project.runpytest_subprocess(*PLUGIN, "-p", "no:randomly")
    first.assert_outcomes(passed=3)
    listed = project.runpytest_subprocess(*PLUGIN, "-p", "no:randomly", "--collect-only", "-q")
    ids = [line for line in listed.outlines if line.startswith("train_")]
    assert ids == ["train_b.py::b", "train_c.py::c", "train_a.py::a"]


def test_func_only_timeout_path(project, marker):
    """pytest-timeout's func_only path sets the timer in pytest_runtest_call; same outcome."""
    project.makeini("[pytest]\ntimeout = 1\ntimeout_func_only = true\n")
    project.makepyfile(train_a_slow=ps.tree_job(300))
    rc, out = session(project, marker, "--timeout-method", "thread").finish()
    assert rc == 1, out
    assert "timed out after 1 s (process tree killed)" in out
    assert ps.wait_gone(marker, 3) == []
