"""The plugin's own hooks (hookspecs.py): other plugins see jobs start and end, can fail or skip
them, and can pick the executor; the item never knows which executor it has."""

from __future__ import annotations

import json
import textwrap

import pytest

pytest_plugins = ["pytester"]

JOB = textwrap.dedent(
    """\
    import json, os
    out = os.environ["TRAINING_OUTPUT_DIR"]
    os.makedirs(out, exist_ok=True)
    print("ran", os.environ["TRAINING_JOB_ID"], flush=True)
    json.dump({"primary_metric": "roc_auc", "metrics": {"roc_auc": AUC}},
              open(os.path.join(out, "metrics.json"), "w"))
    """
)

#: A conftest plugin on every hook; it writes what it saw to hooks.jsonl (one line per call).
OBSERVER = textwrap.dedent(
    """\
    import json, os
    import pytest
    from training_plugin.results import JobSkip

    def _log(**kw):
        kw["pid"] = os.getpid()
        with open(os.path.join(os.path.dirname(__file__), "hooks.jsonl"), "a") as f:
            f.write(json.dumps(kw) + "\\n")

    def pytest_training_skip_job(item):
        if item.spec.id == "skipme":
            return JobSkip("nothing changed since yesterday")
        return None

    def pytest_training_job_started(item):
        _log(hook="started", job=item.spec.id)

    def pytest_training_job_finished(item, result):
        _log(hook="finished", job=item.spec.id, ok=result.run.ok,
             metrics=result.metrics.metrics if result.metrics else None)
        result.extra["seen_by"] = "observer"
        result.notes.append("observed")
        result.properties.append(("observer", "yes"))
        if result.metrics and result.metrics.metrics.get("roc_auc", 1) < 0.5:
            result.fail(f"{item.spec.id}: roc_auc {result.metrics.metrics['roc_auc']} < 0.5")

    def pytest_training_job_report(config, report, record):
        _log(hook="report", job=record.id, outcome=record.outcome,
             extra=record.extra, story=record.story, node=record.node,
             controller=not hasattr(config, "workerinput"))
    """
)


def _project(pytester: pytest.Pytester, conftest: str = OBSERVER) -> None:
    pytester.makeini("[pytest]\n")
    pytester.makeconftest(conftest)
    for job, auc in (("good", 0.9), ("bad", 0.3), ("skipme", 0.8)):
        pytester.path.joinpath(f"train_{job}.py").write_text(JOB.replace("AUC", str(auc)))


def _calls(pytester: pytest.Pytester) -> list[dict]:
    path = pytester.path / "hooks.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.mark.parametrize("workers", [[], ["-n", "2"]], ids=["serial", "xdist"])
def test_hooks_see_every_job_and_can_fail_or_skip_it(
    pytester: pytest.Pytester, workers: list[str]
) -> None:
    _project(pytester)
    result = pytester.runpytest_subprocess("-p", "training_plugin", *workers,
                                           "--junitxml=junit.xml")
    result.assert_outcomes(passed=1, failed=1, skipped=1)
    # a plugin failed the job through result.fail: its story is the failure, outputs kept
    result.stdout.fnmatch_lines(["*bad: roc_auc 0.3 < 0.5*", "*outputs kept in *bad*"])
    assert (pytester.path / "training-results" / "bad" / "metrics.json").is_file()
    # the skip reason reaches the user, and the job never ran
    result.stdout.fnmatch_lines(["*nothing changed since yesterday*"])
    assert not (pytester.path / "training-results" / "skipme").exists()
    calls = _calls(pytester)
    started = sorted(c["job"] for c in calls if c["hook"] == "started")
    finished = {c["job"]: c for c in calls if c["hook"] == "finished"}
    reports = {c["job"]: c for c in calls if c["hook"] == "report"}
    assert started == ["bad", "good"]
    assert finished["good"]["metrics"] == {"roc_auc": 0.9} and finished["good"]["ok"]
    # job_report: once per job, on the controller, with what job_finished added
    assert sorted(c["job"] for c in calls if c["hook"] == "report") == ["bad", "good", "skipme"]
    assert all(c["controller"] for c in reports.values())
    assert reports["good"]["outcome"] == "passed"
    assert reports["good"]["extra"]["seen_by"] == "observer"
    assert reports["bad"]["outcome"] == "failed" and "< 0.5" in reports["bad"]["story"]
    assert reports["skipme"]["outcome"] == "skipped"
    assert reports["skipme"]["story"] == "nothing changed since yesterday"
    if workers:
        assert reports["good"]["node"].startswith("local:gw")
    else:
        assert reports["good"]["node"] == "local"
    # under -n the jobs ran in the workers, not in the controller that got the reports
    if workers:
        report_pids = {c["pid"] for c in reports.values()}
        assert report_pids.isdisjoint(c["pid"] for c in finished.values())
    # notes reach the summary, properties the JUnit XML
    result.stdout.fnmatch_lines(["*good*passed*observed*"])
    assert 'name="observer" value="yes"' in (pytester.path / "junit.xml").read_text()


def test_a_plugin_can_choose_the_executor(pytester: pytest.Pytester) -> None:
    """pytest_training_make_executor: a plugin's executor runs every job; the item only sees
    the JobRun and the RunResult."""
    _project(pytester, textwrap.dedent(
        """\
        import json, os
        from training_plugin.executors import BaseExecutor, RunResult

        class Recording(BaseExecutor):
            name = "recording"
            def __init__(self):
                self.jobs = []
            def run(self, job):
                self.jobs.append(job.id)
                job.output_dir.mkdir(parents=True, exist_ok=True)
                job.log_path.write_text("not really run\\n")
                (job.output_dir / "metrics.json").write_text(json.dumps(
                    {"primary_metric": "roc_auc", "metrics": {"roc_auc": 0.99}}))
                return RunResult(returncode=0, duration_s=0.0, timed_out=False,
                                 timeout_s=job.timeout, log_path=job.log_path, node="elsewhere")
            def placement(self, job):
                return "elsewhere"
            def close(self):
                with open("closed.txt", "w") as f:
                    f.write(",".join(sorted(self.jobs)))

        def pytest_training_make_executor(config, settings):
            return Recording()
        """
    ))
    result = pytester.runpytest_subprocess("-p", "training_plugin")
    result.assert_outcomes(passed=3)
    # no job script ran: the executor wrote every metrics.json; the summary says where
    result.stdout.fnmatch_lines(["*bad*passed*roc_auc=0.9900*elsewhere*"])
    assert (pytester.path / "closed.txt").read_text() == "bad,good,skipme"
    assert "ran" not in (pytester.path / "training-results" / "good" / "train.log").read_text()


def test_each_feature_is_a_plugin_that_can_be_switched_off(pytester: pytest.Pytester) -> None:
    """Gates, history and fingerprints are pytest plugin modules: -p no:<module> removes one,
    and only that one."""
    pytester.makeini("[pytest]\n")
    pytester.makepyprojecttoml("[tool.training_plugin.jobs.good]\nmin = { roc_auc = 0.95 }\n")
    pytester.path.joinpath("train_good.py").write_text(JOB.replace("AUC", "0.9"))
    gated = pytester.runpytest_subprocess("-p", "training_plugin")
    gated.assert_outcomes(failed=1)
    gated.stdout.fnmatch_lines(["*roc_auc 0.9 is below the minimum 0.95*"])
    assert (pytester.path / "training-results" / "history.jsonl").is_file()
    (pytester.path / "training-results" / "history.jsonl").unlink()
    ungated = pytester.runpytest_subprocess(
        "-p", "training_plugin", "-p", "no:training_plugin.features.gates",
        "-p", "no:training_plugin.features.history")
    ungated.assert_outcomes(passed=1)
    assert not (pytester.path / "training-results" / "history.jsonl").exists()
    # the fingerprint feature is still on: it wrote the passing job's fingerprint
    assert (pytester.path / "training-results" / "good" / "fingerprint.json").is_file()


def test_expected_durations_and_interrupted_jobs_reach_plugins(pytester: pytest.Pytester) -> None:
    """pytest_training_expected_durations orders a session with nothing remembered;
    pytest_training_job_interrupted tells a plugin of the job that Ctrl-C cut short."""
    pytester.makeini("[pytest]\n")
    pytester.makeconftest(textwrap.dedent(
        """\
        import json, os, signal

        def pytest_training_expected_durations(config):
            return {"train_a.py::a": 1.0, "train_b.py::b": 50.0}

        def pytest_training_job_started(item):
            with open("started.txt", "a") as f:
                f.write(item.spec.id + "\\n")
            if item.spec.id == "a":
                os.kill(os.getpid(), signal.SIGINT)

        def pytest_training_job_interrupted(config, record):
            with open("interrupted.json", "w") as f:
                json.dump({"id": record.id, "outcome": record.outcome,
                           "log": record.log}, f)
        """
    ))
    for job in ("a", "b"):
        pytester.path.joinpath(f"train_{job}.py").write_text(
            "import time\ntime.sleep(1)\n" if job == "a" else JOB.replace("AUC", "0.9"))
    result = pytester.runpytest_subprocess("-p", "training_plugin", "-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.INTERRUPTED
    # b is expected to take longer, so it ran first; a was interrupted
    assert (pytester.path / "started.txt").read_text().split() == ["b", "a"]
    interrupted = json.loads((pytester.path / "interrupted.json").read_text())
    assert interrupted["id"] == "a" and interrupted["outcome"] == "interrupted"
    assert interrupted["log"].endswith("a/train.log")
