"""Failures that heal, and what every job cost (docs/failures.md): a job's own failures are
"failed" and never retried; infrastructure failures (a signal the plugin did not send, the OOM
killer) are pytest "error" and retried under --retries; each attempt gets TRAINING_ATTEMPT, from
attempt 2 TRAINING_RESUME=1 and the script's resume flag; every job's CPU time, peak memory and
GPU-seconds reach the summary, summary.json, JUnit and the history.  Checked with the process
table and the files."""

from __future__ import annotations

import json
import os
import signal
import sys
import textwrap
import threading
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from fakejobs import busy_job, fake, wait_gone, write_files
from proctable import MARKER_VAR
from training_plugin.collect.argv import MSG_RESUME_NOTE
from training_plugin.collect.attempts import ATTEMPT_LOG, MSG_PASSED_ON
from training_plugin.executors import local
# imported before pytester snapshots sys.modules: each in-process session closes its reaper
from training_plugin.executors import reaper as _reaper  # noqa: F401
from training_plugin.executors.base import (MSG_INFRASTRUCTURE, MSG_OOM, MSG_OUTSIDE_SIGNAL,
                                            PEAK_CGROUP_V1, PEAK_CGROUP_V2, PEAK_SAMPLED,
                                            JobCost, JobRun, format_bytes, format_duration)
from training_plugin.executors.local import MSG_RLIMIT_OOM, LocalExecutor
from training_plugin.results import SUMMARY_FILE
from training_plugin.store import HISTORY_FILE
from training_plugin.summary import MSG_SUGGEST_MEMORY, suggested_memory

pytest_plugins = ["pytester"]

OUT = "training-results"
#: A job that waits to be killed from outside on its first attempt (its pid in pid.<attempt>),
#: and trains on later ones; it records every attempt's argv and TRAINING_* environment.
KILLED_ONCE = """
attempt = os.environ["TRAINING_ATTEMPT"]
with open(os.path.join(out, "attempts.jsonl"), "a") as f:
    f.write(json.dumps({"argv": sys.argv[1:], "env": env}) + "\\n")
with open(os.path.join(out, f"pid.{attempt}"), "w") as f:
    f.write(str(os.getpid()))
if attempt == "1":
    import time
    print("attempt 1 waits to be killed", flush=True)
    time.sleep(120)
"""
#: A job of known cost: about 1 s of CPU time, a 200 MiB buffer.
KNOWN_COST = busy_job(1.0, 200)


@pytest.fixture
def marked(monkeypatch: pytest.MonkeyPatch, marker: str) -> str:
    """Every process of the session's jobs (and its reaper) carries the marker."""
    monkeypatch.setenv(MARKER_VAR, marker)
    return marker


def make(pytester: pytest.Pytester, files: dict[str, str], table: str = "") -> None:
    pytester.makeini("[pytest]\ntestpaths = tests\n")
    if table:
        pytester.makepyprojecttoml(textwrap.dedent(table))
    write_files(pytester.path, files)


def run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    return pytester.runpytest("-p", "training_plugin", "-p", "no:randomly",
                              "--junitxml=junit.xml", *args)


def summary_job(pytester: pytest.Pytester, job: str) -> dict:
    data = json.loads((pytester.path / OUT / SUMMARY_FILE).read_text())
    return next(j for j in data["jobs"] if j["id"] == job)


def history(pytester: pytest.Pytester) -> list[dict]:
    lines = (pytester.path / OUT / HISTORY_FILE).read_text().splitlines()
    return [json.loads(line) for line in lines]


def junit_case(pytester: pytest.Pytester) -> ET.Element:
    return ET.parse(pytester.path / "junit.xml").getroot().find(".//testcase")


def properties(case: ET.Element) -> dict[str, str]:
    return {p.get("name"): p.get("value") for p in case.iter("property")}


class KillFirstAttempt(threading.Thread):
    """From outside the job's tree: SIGKILL (or ``sig``) attempt 1 once it has said its pid."""

    def __init__(self, out_dir: Path, sig: int = signal.SIGKILL) -> None:
        super().__init__(daemon=True)
        self.pid_file = out_dir / "pid.1"
        self.sig = sig
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                pid = int(self.pid_file.read_text())
            except (OSError, ValueError):
                time.sleep(0.05)
                continue
            os.kill(pid, self.sig)
            return

    def __enter__(self) -> KillFirstAttempt:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.join(5)


def attempts_seen(pytester: pytest.Pytester, job: str) -> list[dict]:
    path = pytester.path / OUT / job / "attempts.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()]


# -- retries ----------------------------------------------------------------------------------

def test_sigkill_from_outside_is_retried_and_passes_on_attempt_2(pytester, marked):
    make(pytester, {"train_flaky.py": fake(pre="", post=KILLED_ONCE)})
    with KillFirstAttempt(pytester.path / OUT / "flaky"):
        result = run(pytester, "--retries", "1")
    result.assert_outcomes(passed=1)
    cause = MSG_OUTSIDE_SIGNAL.format(signal="SIGKILL", hint="")
    job = summary_job(pytester, "flaky")
    assert job["outcome"] == "passed" and job["attempt"] == 2
    assert [a["attempt"] for a in job["attempts"]] == [1, 2]
    assert job["attempts"][0]["result"].startswith(cause.split(",")[0])
    assert job["attempts"][0]["infrastructure"] is True
    # TRAINING_ATTEMPT reaches the script; TRAINING_RESUME from attempt 2
    seen = attempts_seen(pytester, "flaky")
    assert [s["env"]["TRAINING_ATTEMPT"] for s in seen] == ["1", "2"]
    assert "TRAINING_RESUME" not in seen[0]["env"] and seen[1]["env"]["TRAINING_RESUME"] == "1"
    # each attempt's log is kept
    out = pytester.path / OUT / "flaky"
    assert "attempt 1 waits to be killed" in (out / ATTEMPT_LOG.format(n=1)).read_text()
    assert "attempt 1 waits" not in (out / "train.log").read_text()
    # summary, JUnit, history: every attempt
    result.stdout.fnmatch_lines(
        [f"flaky *passed*{MSG_PASSED_ON.format(n=2, earlier='attempt 1: killed by SIGKILL*')}*"])
    props = properties(junit_case(pytester))
    assert props["attempts"] == "2" and "passed on attempt 2" in props["attempts.story"]
    lines = [h for h in history(pytester) if h["job"] == "flaky"]
    assert [(h["attempt"], h["outcome"]) for h in lines] == [(1, "error"), (2, "passed")]
    assert wait_gone(marked) == []


def test_under_xdist_a_retry_stays_on_the_worker_that_owns_the_item(pytester, marked):
    make(pytester, {"train_flaky.py": fake(post=KILLED_ONCE), "train_good.py": fake()})
    with KillFirstAttempt(pytester.path / OUT / "flaky"):
        result = pytester.runpytest_subprocess("-p", "training_plugin", "-p", "no:randomly",
                                               "-n", "2", "--retries", "1")
    result.assert_outcomes(passed=2)
    job = summary_job(pytester, "flaky")
    nodes = [a["node"] for a in job["attempts"]]
    assert len(nodes) == 2 and nodes[0] == nodes[1] == job["node"]
    assert nodes[0].startswith("local:gw")
    assert wait_gone(marked) == []


@pytest.mark.parametrize("workers", ["0", "2"])
def test_infrastructure_failure_without_retries_is_an_error(pytester, marked, workers):
    make(pytester, {"train_flaky.py": fake(post=KILLED_ONCE), "train_good.py": fake()})
    with KillFirstAttempt(pytester.path / OUT / "flaky", signal.SIGTERM):
        if workers == "0":
            result = run(pytester)
        else:  # the report is made on the worker and travels to the controller
            result = pytester.runpytest_subprocess(
                "-p", "training_plugin", "-p", "no:randomly", "--junitxml=junit.xml",
                "-n", workers)
    result.assert_outcomes(passed=1, errors=1)
    assert result.ret == 1
    cause = MSG_OUTSIDE_SIGNAL.format(signal="SIGTERM", hint="")
    result.stdout.fnmatch_lines([f"*training job 'flaky': {MSG_INFRASTRUCTURE.format(cause=cause)}*"])
    job = summary_job(pytester, "flaky")
    assert job["outcome"] == "error" and job["infrastructure"] == cause
    assert job["attempt"] == 1 and len(attempts_seen(pytester, "flaky")) == 1
    counts = json.loads((pytester.path / OUT / SUMMARY_FILE).read_text())["counts"]
    assert counts == {"passed": 1, "error": 1}
    case = next(c for c in ET.parse(pytester.path / "junit.xml").getroot().iter("testcase")
                if c.get("name") == "flaky")
    assert case.find("error") is not None and case.find("failure") is None
    assert "infrastructure" in case.find("error").text
    assert wait_gone(marked) == []


@pytest.mark.parametrize("kind", ["exit 1", "gate"])
def test_a_jobs_own_failure_is_failed_and_never_retried(pytester, marked, kind):
    post = "import sys; sys.exit(1)" if kind == "exit 1" else ""
    counting = 'open(os.path.join(out, "count"), "a").write("x")\n'
    table = ('[tool.training_plugin.jobs.own]\nmin = { roc_auc = 0.99 }\n' if kind == "gate"
             else "")
    make(pytester, {"train_own.py": fake(post=counting + post)}, table)
    result = run(pytester, "--retries", "3")
    result.assert_outcomes(failed=1)
    assert (pytester.path / OUT / "own" / "count").read_text() == "x"  # one attempt
    assert not (pytester.path / OUT / "own" / ATTEMPT_LOG.format(n=1)).exists()
    job = summary_job(pytester, "own")
    assert job["outcome"] == "failed" and job["attempt"] == 1 and not job["infrastructure"]
    assert junit_case(pytester).find("failure") is not None
    assert wait_gone(marked) == []


def test_job_table_retries_wins_and_resume_flag_reaches_the_script(pytester, marked):
    make(pytester, {"train_resumable.py": fake(
        args="p.add_argument('--resume-from', default=None)", post=KILLED_ONCE)},
        "[tool.training_plugin.jobs.resumable]\nretries = 1\n")
    listing = pytester.runpytest("-p", "training_plugin", "--collect-only")
    out_dir = pytester.path / OUT / "resumable"
    listing.stdout.fnmatch_lines(
        [f"*{MSG_RESUME_NOTE.format(args=f'--resume-from {out_dir}')}*"])
    with KillFirstAttempt(out_dir):
        result = run(pytester, "--retries", "0")
    result.assert_outcomes(passed=1)
    seen = attempts_seen(pytester, "resumable")
    assert "--resume-from" not in seen[0]["argv"]
    assert seen[1]["argv"][-2:] == ["--resume-from", str(out_dir)]
    assert wait_gone(marked) == []


def test_retries_is_a_whole_number(pytester):
    make(pytester, {"train_x.py": fake()})
    result = run(pytester, "--retries", "-1")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--retries must be at least 0*"])


# -- memory -----------------------------------------------------------------------------------

def test_memory_limit_exceeded_is_an_oom_error_with_its_peak(pytester, marked):
    grab = "buf = bytearray(400 * 2**20)\nfor i in range(0, len(buf), 4096):\n    buf[i] = 1\n"
    make(pytester, {"train_hungry.py": fake(pre=grab)},
         '[tool.training_plugin.jobs.hungry]\nmemory = "150MiB"\n')
    result = run(pytester)
    result.assert_outcomes(errors=1)
    job = summary_job(pytester, "hungry")
    cost = job["cost"]
    assert cost["memory_limit"] == 150 * 2**20
    if cost["limit_method"].startswith("cgroup"):
        head, tail = MSG_OOM.format(peak="\0", limit="150 MiB").split("\0")
        assert job["infrastructure"].startswith(head) and job["infrastructure"].endswith(tail)
        assert job["infrastructure"][len(head):-len(tail)].endswith("MiB")
        assert cost["peak_bytes"] >= 140 * 2**20
    else:
        assert job["infrastructure"].startswith(MSG_RLIMIT_OOM.split("{")[0])
    result.stdout.fnmatch_lines(["*infrastructure: *150 MiB*"])
    assert job["suggested_memory"] is None  # it has a memory value
    assert wait_gone(marked) == []


# -- cost ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("limited", [True, False], ids=["memory-value", "no-memory-value"])
def test_cost_of_a_job_of_known_cost(pytester, marked, limited):
    """With a memory value the job's cgroup measures it (where one can be made), without one
    the reaper samples its tree."""
    table = '[tool.training_plugin.jobs.costly]\nmemory = "2GiB"\n' if limited else ""
    make(pytester, {"train_costly.py": fake(pre=KNOWN_COST)}, table)
    result = run(pytester)
    result.assert_outcomes(passed=1)
    cost = summary_job(pytester, "costly")["cost"]
    assert 0.9 <= cost["cpu_s"] <= 3.0, cost
    assert 190 * 2**20 <= cost["peak_bytes"] <= 450 * 2**20, cost
    assert cost["wall_s"] >= 0.9 and cost["gpus"] == 0 and cost["gpu_s"] == 0
    methods = (PEAK_CGROUP_V2, PEAK_CGROUP_V1, PEAK_SAMPLED) if limited else (PEAK_SAMPLED,)
    assert cost["peak_method"] in methods
    result.stdout.fnmatch_lines(["costly *passed *cpu 1.*s, peak * MiB * s  roc_auc=*"])
    suggestion = MSG_SUGGEST_MEMORY.format(value='costly = "512MiB"')  # 211 MiB + 25%
    assert (suggestion in result.stdout.str()) is not limited  # only without a memory value
    props = properties(junit_case(pytester))
    assert 0.9 <= float(props["cost.cpu_s"]) <= 3.0
    assert props["cost.peak_memory_method"] == cost["peak_method"]
    line = history(pytester)[-1]
    assert line["cost"] == cost and line["attempt"] == 1
    assert wait_gone(marked) == []


def test_without_cgroups_a_memory_value_is_an_address_space_limit(tmp_path, marked,
                                                                      monkeypatch):
    monkeypatch.setattr(local, "CGROUP_ROOT", tmp_path / "no-cgroups")
    executor = LocalExecutor()
    grab = "buf = bytearray(400 * 2**20)"
    try:
        result = executor.run(JobRun(
            id="rl", argv=[sys.executable, "-c", grab], cwd=tmp_path, env={},
            output_dir=tmp_path, log_path=tmp_path / "train.log",
            resources={"memory": 150 * 2**20}))
    finally:
        executor.close()
    assert result.returncode == 1 and result.cost.limit_method == "RLIMIT_AS"
    assert result.cost.peak_method == PEAK_SAMPLED
    assert result.infrastructure == MSG_RLIMIT_OOM.format(
        limit="150 MiB", peak=format_bytes(result.cost.peak_bytes))
    assert wait_gone(marked) == []


def test_gpu_seconds_are_wall_time_times_the_gpus_given(tmp_path, marked):
    executor = LocalExecutor()
    try:
        result = executor.run(JobRun(
            id="g", argv=[sys.executable, "-c", "import time; time.sleep(0.3)"], cwd=tmp_path,
            env={"CUDA_VISIBLE_DEVICES": "0,1"}, output_dir=tmp_path,
            log_path=tmp_path / "train.log"))
    finally:
        executor.close()
    assert result.ok and result.cost.gpus == 2
    assert result.cost.gpu_s == pytest.approx(2 * result.cost.wall_s)
    assert "gpu " in result.cost.phrase()
    assert wait_gone(marked) == []


def test_formats_and_suggestion():
    assert format_duration(130) == "2m10s" and format_duration(0.84) == "0.8s"
    assert format_duration(3900) == "1h05m"
    assert format_bytes(1.2 * 2**30) == "1.2 GiB" and format_bytes(200 * 2**20) == "200 MiB"
    assert suggested_memory(200 * 2**20) == "256MiB"
    assert suggested_memory(1.3 * 2**30) == "1.75GiB"
    assert JobCost(wall_s=1, cpu_s=130, peak_bytes=int(1.2 * 2**30)).phrase() == \
        "cpu 2m10s, peak 1.2 GiB"


# -- resuming from a checkpoint (the brain MRI job) ----------------------------------------------

MRI = Path(__file__).resolve().parents[1] / "src" / "aimedres" / "training" / "train_brain_mri.py"
MRI_SMOKE = ("--epochs", "4", "--n-samples", "240", "--image-size", "32", "--seed", "3")


@pytest.mark.slow
def test_brain_mri_killed_mid_training_and_resumed_ends_as_an_uninterrupted_run(tmp_path,
                                                                                marked):
    import re
    import subprocess

    whole, parts = tmp_path / "whole", tmp_path / "parts"
    subprocess.run([sys.executable, str(MRI), *MRI_SMOKE, "--output-dir", str(whole)],
                   check=True, capture_output=True)
    proc = subprocess.Popen([sys.executable, str(MRI), *MRI_SMOKE, "--output-dir", str(parts)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not (parts / "checkpoint.pt").exists() and proc.poll() is None:
        assert time.monotonic() < deadline
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)  # mid-training: after the first complete epoch's checkpoint
    proc.wait()
    assert not (parts / "metrics.json").exists()
    resumed = subprocess.run([sys.executable, str(MRI), *MRI_SMOKE, "--output-dir", str(parts)],
                             env={**os.environ, "TRAINING_RESUME": "1"}, check=True,
                             capture_output=True, text=True)
    after = re.search(r"resumed from \S+ after epoch (\d+)", resumed.stdout + resumed.stderr)
    assert after is not None and 1 <= int(after.group(1)) < 4, resumed.stdout + resumed.stderr
    one, two = (json.loads((d / "metrics.json").read_text()) for d in (whole, parts))
    assert two["metrics"] == one["metrics"]
    assert two["best_epoch"] == one["best_epoch"] and two["epochs_run"] == one["epochs_run"] == 4
    assert wait_gone(marked) == []
