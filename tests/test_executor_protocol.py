"""A third executor, written from the hookspecs and the executor Protocol alone: a conftest
returns a ``BaseExecutor`` subclass from ``pytest_training_make_executor(config, settings)``
that runs each job as a plain subprocess.  The session must drive it like its own executors:
``submit_all`` before the first job, ``run`` per job, ``close`` at the end; its results,
the jobs' metrics and its node name reach the summary and the JUnit XML."""

from __future__ import annotations

import json
import textwrap
import xml.etree.ElementTree as ET

import pytest

CONFTEST = textwrap.dedent(
    '''
    import json, os, subprocess, time

    from training_plugin.executors.base import BaseExecutor, RunResult

    NODE = "sub:box1"


    class SubprocessExecutor(BaseExecutor):
        """Each job a child process of this pytest; no tree kill, no reaper."""

        name = "subprocess"

        def __init__(self, settings):
            self.calls = settings.rootdir / "calls.jsonl"
            self.note(call="init", output_dir=str(settings.output_dir))

        def note(self, **entry):
            with open(self.calls, "a") as fh:
                fh.write(json.dumps(entry) + "\\n")

        def placement(self, job):
            return NODE

        def describe(self):
            return f"every job a subprocess on {NODE}"

        def submit_all(self, jobs):
            self.note(call="submit_all", jobs=[job.id for job in jobs])

        def run(self, job):
            self.note(call="run", job=job.id, argv=[str(a) for a in job.argv])
            job.log_path.parent.mkdir(parents=True, exist_ok=True)
            began = time.monotonic()
            with open(job.log_path, "wb") as log:
                done = subprocess.run(list(job.argv), cwd=job.cwd, env={**os.environ, **job.env},
                                      stdout=log, stderr=subprocess.STDOUT)
            return RunResult(returncode=done.returncode, duration_s=time.monotonic() - began,
                             timed_out=False, timeout_s=job.timeout, log_path=job.log_path,
                             node=NODE)

        def close(self):
            self.note(call="close")


    def pytest_training_make_executor(config, settings):
        return SubprocessExecutor(settings)
    '''
)

GOOD_JOB = textwrap.dedent(
    '''
    import json, os
    out = os.environ["TRAINING_OUTPUT_DIR"]
    print("trained", os.environ["TRAINING_JOB_ID"], flush=True)
    with open(os.path.join(out, "metrics.json"), "w") as fh:
        json.dump({"job": "good", "task": "binary", "primary_metric": "roc_auc",
                   "metrics": {"roc_auc": 0.8125}}, fh)
    '''
)


@pytest.fixture
def session(pytester: pytest.Pytester) -> pytest.RunResult:
    pytester.makeini("[pytest]\n")
    pytester.makeconftest(CONFTEST)
    (pytester.path / "train_good.py").write_text(GOOD_JOB)
    (pytester.path / "train_bad.py").write_text("import sys\nprint('no data')\nsys.exit(3)\n")
    return pytester.runpytest_subprocess("-p", "training_plugin", "--output-dir=out",
                                         "--junitxml=junit.xml", "-p", "no:randomly",
                                         "-p", "no:cacheprovider")


def test_the_session_drives_a_third_executor_through_the_protocol(pytester, session):
    calls = [json.loads(line) for line in
             (pytester.path / "calls.jsonl").read_text().splitlines()]
    order = [c["call"] for c in calls]
    assert order[:2] == ["init", "submit_all"], calls  # every job handed over first
    assert order[-1] == "close" and order.count("close") == 1, calls
    assert sorted(c["job"] for c in calls if c["call"] == "run") == ["bad", "good"], calls
    assert sorted(calls[1]["jobs"]) == ["bad", "good"], calls
    assert calls[0]["output_dir"] == str(pytester.path / "out"), calls
    runs = {c["job"]: c for c in calls if c["call"] == "run"}
    assert runs["good"]["argv"][-1].endswith("train_good.py"), runs


def test_its_results_metrics_and_node_reach_the_reports(pytester, session):
    session.assert_outcomes(passed=1, failed=1)
    session.stdout.fnmatch_lines(["training: every job a subprocess on sub:box1"])  # header
    session.stdout.fnmatch_lines(["*good*passed*roc_auc=0.8125*sub:box1*"])
    session.stdout.fnmatch_lines(["*bad*exit code 3*"])
    assert "trained good" in (pytester.path / "out" / "good" / "train.log").read_text()
    jobs = {job["id"]: job for job in
            json.loads((pytester.path / "out" / "summary.json").read_text())["jobs"]}
    assert jobs["good"]["node"] == jobs["bad"]["node"] == "sub:box1", jobs
    assert jobs["good"]["metrics"]["roc_auc"] == 0.8125, jobs
    assert jobs["bad"]["outcome"] == "failed", jobs
    props = {(case.get("name"), p.get("name")): p.get("value")
             for case in ET.parse(pytester.path / "junit.xml").iter("testcase")
             for p in case.iter("property")}
    assert props[("good", "node")] == "sub:box1", props
    assert props[("good", "roc_auc")] == "0.8125", props
