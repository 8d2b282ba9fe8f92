"""Thread budget and GPU assignment: pure rules, option handling, and the environment each job
actually receives under xdist (the real plugin, fakejobs.ENV_JOB)."""

from __future__ import annotations

import json
import os

import pytest

from training_plugin.run import budget
from training_plugin.run.budget import detect_gpus, gpus_for_worker

from fakejobs import ENV_JOB, PLUGIN_ARGS, plugin_project

# -- pure rules --------------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("gpus", "workers", "expected"),
    [
        (["0", "1"], 2, [["0"], ["1"]]),
        (["0", "1", "2", "3"], 2, [["0", "1"], ["2", "3"]]),
        (["0", "1", "2"], 2, [["0", "1"], ["2"]]),
        (["4", "7"], 4, [["4"], ["7"], ["4"], ["7"]]),  # shared round-robin
        ([], 2, [[], []]),
    ],
)
def test_gpus_for_worker(gpus, workers, expected):
    assert [gpus_for_worker(gpus, i, workers) for i in range(workers)] == expected


def test_each_device_goes_to_one_worker_when_enough():
    gpus = [str(i) for i in range(8)]
    for workers in range(1, 9):
        given = [d for i in range(workers) for d in gpus_for_worker(gpus, i, workers)]
        assert sorted(given, key=int) == gpus  # all used, none twice


def test_detect_gpus_sources(monkeypatch):
    assert detect_gpus({"TRAINING_PLUGIN_GPUS": "0, 2", "CUDA_VISIBLE_DEVICES": "5"}) == ["0", "2"]
    assert detect_gpus({"TRAINING_PLUGIN_GPUS": ""}) == []
    assert detect_gpus({"CUDA_VISIBLE_DEVICES": "3,1"}) == ["3", "1"]
    assert detect_gpus({"CUDA_VISIBLE_DEVICES": "-1"}) == []
    monkeypatch.setattr(budget.shutil, "which", lambda name: None)
    assert detect_gpus({}) == []  # no nvidia-smi: no GPUs, nothing changes
    # the ini key is the project's default: below the environment, above detection
    assert detect_gpus({}, "4, 5") == ["4", "5"]
    assert detect_gpus({}, "none") == []
    assert detect_gpus({"CUDA_VISIBLE_DEVICES": "1"}, "4,5") == ["1"]
    assert detect_gpus({"TRAINING_PLUGIN_GPUS": "2"}, "4,5") == ["2"]


@pytest.mark.parametrize(
    ("args", "workers"),
    [([], 0), (["-n", "0"], 0), (["-n", "2"], 2), (["-n", "3", "--maxprocesses", "2"], 2),
     (["-n", "auto"], 4), (["-n", "logical"], 4)],
)
def test_threads_per_job_on_the_controller(pytester, monkeypatch, args, workers):
    monkeypatch.setattr(budget, "usable_cpus", lambda: 16)
    monkeypatch.setenv("PYTEST_XDIST_AUTO_NUM_WORKERS", "4")  # what xdist's "auto" counts
    config = pytester.parseconfigure(*args)
    if workers == 0:
        assert budget.threads_per_job(config) is None
        assert budget.job_environment(config, "x") == {}
    else:
        threads = 16 // workers
        assert budget.threads_per_job(config) == threads
        env = budget.job_environment(config, "x")
        assert env["OMP_NUM_THREADS"] == env["TRAINING_THREADS"] == str(threads)
        assert "CUDA_VISIBLE_DEVICES" not in env  # the controller runs no job


def test_threads_per_job_on_a_worker(pytester, monkeypatch):
    monkeypatch.setattr(budget, "usable_cpus", lambda: 16)
    config = pytester.parseconfigure()
    config.workerinput = {"workerid": "gw1", "workercount": 3}  # type: ignore[attr-defined]
    assert budget.threads_per_job(config) == 5


# -- what jobs actually receive ----------------------------------------------------------------

def run_env_jobs(pytester, *args, env=None):
    plugin_project(pytester)
    pytester.makepyfile(**{f"train_job{i}": ENV_JOB for i in range(4)})
    for name, value in (env or {}).items():
        if value is None:
            pytester._monkeypatch.delenv(name, raising=False)
        else:
            pytester._monkeypatch.setenv(name, value)
    result = pytester.runpytest_subprocess(*PLUGIN_ARGS, *args)
    result.assert_outcomes(passed=4)
    seen = {}
    for i in range(4):
        path = pytester.path / "out" / f"job{i}" / "env.json"
        seen[f"job{i}"] = json.loads(path.read_text())
    return result, seen


def test_budget_reaches_jobs_under_xdist(pytester):
    _, seen = run_env_jobs(pytester, "-n", "2",
                           env={"OMP_NUM_THREADS": None, "TRAINING_PLUGIN_GPUS": ""})
    threads = str(max(1, len(os.sched_getaffinity(0)) // 2))
    for env in seen.values():
        for var in budget.THREAD_VARS + ("TRAINING_THREADS",):
            assert env[var] == threads, var
        assert "CUDA_VISIBLE_DEVICES" not in env  # no GPUs: untouched
    assert {env["PYTEST_XDIST_WORKER"] for env in seen.values()} == {"gw0", "gw1"}


def test_no_budget_without_xdist(pytester):
    """The thread budget that one xdist worker already sets is not set without xdist."""
    unset = {"OMP_NUM_THREADS": None, "TRAINING_THREADS": None}
    _, one_worker = run_env_jobs(pytester, "-n", "1", env=unset)
    threads = str(budget.usable_cpus())  # one worker: all of them
    for env in one_worker.values():
        assert env.get("OMP_NUM_THREADS") == env.get("TRAINING_THREADS") == threads
    _, seen = run_env_jobs(pytester, env=unset)
    for env in seen.values():
        assert "OMP_NUM_THREADS" not in env and "TRAINING_THREADS" not in env


def test_each_worker_gets_its_own_gpu(pytester):
    _, seen = run_env_jobs(pytester, "-n", "2",
                           env={"TRAINING_PLUGIN_GPUS": "3,5", "CUDA_VISIBLE_DEVICES": None})
    by_worker = {env["PYTEST_XDIST_WORKER"]: env["CUDA_VISIBLE_DEVICES"] for env in seen.values()}
    assert by_worker == {"gw0": "3", "gw1": "5"}


def test_cuda_visible_devices_is_split_between_workers(pytester):
    _, seen = run_env_jobs(pytester, "-n", "2",
                           env={"TRAINING_PLUGIN_GPUS": None, "CUDA_VISIBLE_DEVICES": "0,1,2,3"})
    by_worker = {env["PYTEST_XDIST_WORKER"]: env["CUDA_VISIBLE_DEVICES"] for env in seen.values()}
    assert by_worker == {"gw0": "0,1", "gw1": "2,3"}


def test_workers_sharing_one_gpu_are_warned_about(pytester):
    result, seen = run_env_jobs(pytester, "-n", "2",
                                env={"TRAINING_PLUGIN_GPUS": "7", "CUDA_VISIBLE_DEVICES": None})
    assert {env["CUDA_VISIBLE_DEVICES"] for env in seen.values()} == {"7"}
    result.stdout.fnmatch_lines(["*2 xdist workers share 1 GPU(s) round-robin*use -n 1*"])


def test_ini_training_gpus_are_shared_out_between_workers(pytester):
    pytester.makeini("[pytest]\ntraining_gpus = 4,5\n")
    pytester.makepyfile(**{f"train_job{i}": ENV_JOB for i in range(4)})
    pytester._monkeypatch.delenv("TRAINING_PLUGIN_GPUS", raising=False)
    pytester._monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    result = pytester.runpytest_subprocess(*PLUGIN_ARGS, "-n", "2")
    result.assert_outcomes(passed=4)
    seen = [json.loads((pytester.path / "out" / f"job{i}" / "env.json").read_text())
            for i in range(4)]
    by_worker = {env["PYTEST_XDIST_WORKER"]: env["CUDA_VISIBLE_DEVICES"] for env in seen}
    assert by_worker == {"gw0": "4", "gw1": "5"}


def test_no_gpus_leaves_cuda_visible_devices_alone_without_xdist(pytester):
    _, seen = run_env_jobs(pytester, env={"TRAINING_PLUGIN_GPUS": "0,1",
                                          "CUDA_VISIBLE_DEVICES": "0,1"})
    assert {env["CUDA_VISIBLE_DEVICES"] for env in seen.values()} == {"0,1"}  # -n0: all of them
