"""Run history: <output-dir>/history.jsonl (training_plugin.features.history)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from test_features_gates import job, make, run

pytest_plugins = ["pytester"]


def history(pytester: pytest.Pytester, out: str = "training-results") -> list[dict]:
    """The history's lines; a line that is not JSON (cut by a crash) is left out."""
    path = pytester.path / out / "history.jsonl"
    lines = []
    for line in path.read_text().splitlines():
        try:
            lines.append(json.loads(line))
        except ValueError:
            continue
    return lines


def test_each_session_appends_one_line_per_job(pytester: pytest.Pytester) -> None:
    make(pytester, {
        "train_good.py": job('{"roc_auc": 0.9}'),
        "train_bad.py": "raise SystemExit(2)\n",
    })
    run(pytester).assert_outcomes(passed=1, failed=1)
    first = (pytester.path / "training-results" / "history.jsonl").read_bytes()
    run(pytester, "--output-dir=training-results").assert_outcomes(passed=1, failed=1)
    text = (pytester.path / "training-results" / "history.jsonl").read_bytes()
    assert text.startswith(first)  # appended, never rewritten
    lines = history(pytester)
    # two lines per session (the order within a session follows remembered durations)
    for session in (lines[:2], lines[2:]):
        assert sorted((e["job"], e["outcome"]) for e in session) == [
            ("bad", "failed"), ("good", "passed")]
    good = next(e for e in lines[:2] if e["job"] == "good")
    bad = next(e for e in lines[:2] if e["job"] == "bad")
    assert good["metrics"] == {"roc_auc": 0.9} and good["primary_metric"] == "roc_auc"
    assert good["nodeid"] == "train_good.py::good" and good["node"] == "local"
    assert len(good["fingerprint"]) == 64 and good["argv"][1:] == ["train_good.py"]
    assert good["time"].endswith("+00:00") and good["duration_s"] >= 0
    assert "exit code 2" in bad["story"]
    assert lines[0]["session"] != lines[2]["session"]


def test_a_line_cut_by_a_crash_costs_only_that_line(pytester: pytest.Pytester) -> None:
    make(pytester, {"helper.py": "AUC = 0.9\n",
                    "train_a.py": job('{"roc_auc": helper.AUC}', imports="import helper")})
    run(pytester).assert_outcomes(passed=1)
    path = pytester.path / "training-results" / "history.jsonl"
    with open(path, "ab") as f:  # what a crash mid-write would leave
        f.write(b'{"time":"2026-01-01T00:00:00+00:00","job":"a","outcome":"pass')
    (pytester.path / "helper.py").write_text("AUC = 0.7\n")
    result = run(pytester, "--compare=last")  # reads the intact line before the cut
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*job 'a': roc_auc 0.7 is 0.2 below the last run 0.9*"])
    assert [e["outcome"] for e in history(pytester)] == ["passed", "failed"]
    assert len(path.read_text().splitlines()) == 3  # the cut line stays; the new one is whole


def test_summary_shows_change_against_last_run_without_failing(
        pytester: pytest.Pytester) -> None:
    make(pytester, {"helper.py": "AUC = 0.9\n",
                    "train_a.py": job('{"roc_auc": helper.AUC}', imports="import helper")})
    run(pytester).assert_outcomes(passed=1)
    (pytester.path / "helper.py").write_text("AUC = 0.85\n")
    result = run(pytester)
    result.assert_outcomes(passed=1)  # informative only: no --compare
    result.stdout.fnmatch_lines(["a * passed * roc_auc -0.05 vs last run: beyond tolerance 0*"])


#: A job that touches ``slow.started`` in rootdir, then sleeps.
SLOW = """\
import os, pathlib, time
pathlib.Path("slow.started").touch()
time.sleep(120)
"""


@pytest.mark.parametrize("workers", ["0", "2"])
def test_ctrl_c_leaves_an_interrupted_line(pytester: pytest.Pytester, workers: str) -> None:
    make(pytester, {"train_a_quick.py": job('{"roc_auc": 0.9}'), "train_b_slow.py": SLOW})
    env = {k: v for k, v in os.environ.items() if k not in ("PYTEST_XDIST_WORKER",
                                                            "PYTEST_ADDOPTS")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "pytest", "-p", "training_plugin", "-p", "no:randomly",
         "-p", "no:cacheprovider", "-n", workers],
        cwd=pytester.path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True, process_group=0,
    )
    try:
        deadline = time.monotonic() + 60
        while not (pytester.path / "slow.started").exists():
            assert proc.poll() is None, proc.communicate()[0]
            assert time.monotonic() < deadline, "the slow job never started"
            time.sleep(0.05)
        hist = pytester.path / "training-results" / "history.jsonl"
        while not (hist.exists() and "a_quick" in hist.read_text()):  # quick one is done
            assert time.monotonic() < deadline, "the quick job never finished"
            time.sleep(0.05)
        os.killpg(proc.pid, signal.SIGINT)
        out, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 2, out
    outcomes = {e["job"]: e for e in history(pytester)}
    assert outcomes["b_slow"]["outcome"] == "interrupted", out
    assert outcomes["b_slow"]["story"] == "interrupted before the job finished"
    assert outcomes["b_slow"]["argv"][1:] == ["train_b_slow.py"]
    assert outcomes["a_quick"]["outcome"] == "passed"
