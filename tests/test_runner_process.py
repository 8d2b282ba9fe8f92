"""reaper.run_job with real processes, real signals and the process table.

Every fake job carries a unique marker in its environment; "no process left" means that no
process in /proc carries it: checked at once where run_job has returned (it returns once the
tree is gone), polled (fakejobs.wait_gone) where a signal is in flight.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from training_plugin.executors import reaper as runner
from training_plugin.executors.base import MSG_EXIT_CODE, MSG_KILLED, MSG_OOM_HINT, MSG_TIMED_OUT
from training_plugin.executors.base import RunResult
from training_plugin.executors.reaper import MSG_LEFTOVERS, run_job
from training_plugin.run.logs import log_tail

from fakejobs import (TREE_PROCESSES, job_was_ready, tree_job, until_ready_before_timeout,
                      wait_gone)
from proctable import MARKER_VAR, marked_pids


@pytest.fixture
def job_env(marker, tmp_path):
    env = dict(os.environ)
    env[MARKER_VAR] = marker
    env["TRAINING_OUTPUT_DIR"] = str(tmp_path / "out")
    return env


def write_job(tmp_path: Path, sleep: float) -> Path:
    """The tree job (fakejobs.tree_job), sleeping ``sleep`` s once its tree is up."""
    script = tmp_path / "train_tree.py"
    script.write_text(tree_job(sleep))
    return script


def test_normal_end_kills_leftover_grandchildren(tmp_path, job_env, marker):
    script = write_job(tmp_path, 0)
    log = tmp_path / "out" / "tree" / "train.log"
    result = run_job([sys.executable, str(script)], cwd=tmp_path, env=job_env, log_path=log)
    assert result.ok, log_tail(log)
    assert result.describe() == MSG_EXIT_CODE.format(code=0)
    assert result.leftovers == TREE_PROCESSES - 1
    assert marked_pids(marker) == []  # run_job returns once the tree is gone
    text = log.read_text()
    assert "main done" in text
    assert MSG_LEFTOVERS.format(n=TREE_PROCESSES - 1) in text


def test_timeout_kills_whole_tree(tmp_path, job_env, marker):
    script = write_job(tmp_path, 300)
    log = tmp_path / "train.log"

    def run(timeout: float) -> RunResult:
        result = run_job([sys.executable, str(script)], cwd=tmp_path, env=job_env,
                         log_path=log, timeout=timeout)
        assert marked_pids(marker) == []  # run_job returns once the tree is gone
        return result

    timeout, result = until_ready_before_timeout(run, lambda: log)
    assert result.timed_out and not result.ok
    assert result.describe() == MSG_TIMED_OUT.format(timeout=timeout)
    assert result.timeout_s == timeout
    assert result.duration_s >= timeout
    assert "main done" not in log.read_text()


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        ("raise SystemExit(2)", MSG_EXIT_CODE.format(code=2)),
        ("import os, signal; os.kill(os.getpid(), signal.SIGKILL)",
         MSG_KILLED.format(signal="SIGKILL") + MSG_OOM_HINT),
        ("import os, signal; os.kill(os.getpid(), signal.SIGSEGV)",
         MSG_KILLED.format(signal="SIGSEGV")),
    ],
)
def test_failure_is_named(tmp_path, code, expected):
    result = run_job([sys.executable, "-c", code], cwd=tmp_path, env=dict(os.environ),
                     log_path=tmp_path / "train.log")
    assert not result.ok
    assert result.describe() == expected


def test_signal_name():
    result = RunResult(-9, 1.0, False, None, Path("x"))
    assert result.signal_name == "SIGKILL"
    assert RunResult(1, 1.0, False, None, Path("x")).signal_name is None


def test_cannot_start_is_reported_in_result_and_log(tmp_path):
    log = tmp_path / "train.log"
    result = run_job([str(tmp_path / "missing-exe")], cwd=tmp_path, env=dict(os.environ),
                     log_path=log)
    assert not result.ok and result.returncode is None
    assert "cannot start" in result.describe() and "No such file" in result.describe()
    assert "cannot start" in log.read_text()


def test_exact_env_cwd_devnull_stdin_own_group(tmp_path):
    code = ("import json, os, sys; json.dump({'env': dict(os.environ), 'cwd': os.getcwd(), "
            "'stdin': sys.stdin.read(), 'pgid': os.getpgid(0), 'pid': os.getpid(), "
            "'sid': os.getsid(0)}, open('seen.json', 'w'))")

    env = {"PATH": os.environ["PATH"], "ONLY_THIS": "1"}
    result = run_job([sys.executable, "-c", code], cwd=tmp_path, env=env,
                     log_path=tmp_path / "logs" / "train.log")
    assert result.ok, log_tail(result.log_path)
    seen = json.loads((tmp_path / "seen.json").read_text())
    # Python may add LC_CTYPE itself (PEP 538 locale coercion); `env` shows the exact environment.
    assert seen["env"]["ONLY_THIS"] == "1" and len(seen["env"]) <= 3
    exact = run_job(["env"], cwd=tmp_path, env=env, log_path=tmp_path / "env.log")
    assert exact.ok
    assert sorted(exact.log_path.read_text().splitlines()) == sorted(
        f"{k}={v}" for k, v in env.items())
    assert seen["cwd"] == str(tmp_path)
    assert seen["stdin"] == ""
    assert seen["pgid"] == seen["pid"] == seen["sid"]  # own session and group: no terminal SIGINT
    assert seen["pgid"] != os.getpgid(0)


def test_log_is_truncated_and_tail(tmp_path):
    log = tmp_path / "train.log"
    log.write_text("old content\n" * 100)
    run_job([sys.executable, "-c", "print('\\n'.join(map(str, range(50))))"], cwd=tmp_path,
            env=dict(os.environ), log_path=log)
    assert "old content" not in log.read_text()
    assert log_tail(log, 3) == "47\n48\n49"
    assert log_tail(tmp_path / "nope.log") == ""


def test_reaper_death_is_reported_and_restarted(tmp_path, job_env, marker):
    """The reaper SIGKILLed mid-job: the job fails with a clear message, the next job runs."""
    code = ("import os, signal, time; "
            f"os.kill({os.getpid()}, 0); time.sleep(0.3); "
            "os.kill(int(os.environ['REAPER_PID']), signal.SIGKILL); time.sleep(300)")
    runner._ReaperHolder.get()
    env = dict(job_env, REAPER_PID=str(runner._ReaperHolder.get().proc.pid))
    result = run_job([sys.executable, "-c", code], cwd=tmp_path, env=env,
                     log_path=tmp_path / "train.log", timeout=60)
    assert not result.ok
    assert result.describe() == runner.MSG_REAPER_DIED
    assert wait_gone(marker) == []
    again = run_job([sys.executable, "-c", "pass"], cwd=tmp_path, env=dict(os.environ),
                    log_path=tmp_path / "train2.log")
    assert again.ok


# -- the process that runs jobs is interrupted or killed ---------------------------------------

DRIVER = textwrap.dedent(
    """
    import os, sys
    from pathlib import Path
    from training_plugin.executors.reaper import run_job
    script, workdir = sys.argv[1], sys.argv[2]
    try:
        run_job([sys.executable, script], cwd=Path(workdir),
                env=dict(os.environ), log_path=Path(workdir) / "train.log", timeout=120)
    except KeyboardInterrupt as exc:
        print("interrupted:", type(exc).__name__, flush=True)
        sys.exit(42)
    """
)


def start_driver(tmp_path: Path, job_env: dict[str, str]) -> subprocess.Popen:
    """A Python process running one tree job through run_job, in its own process group (like a
    foreground job of a terminal); returns once the job's tree is up."""
    script = write_job(tmp_path, 300)
    driver = tmp_path / "driver.py"
    driver.write_text(DRIVER)
    proc = subprocess.Popen([sys.executable, str(driver), str(script), str(tmp_path)],
                            env=job_env, stdout=subprocess.PIPE, text=True,
                            process_group=0)
    log = tmp_path / "train.log"
    deadline = time.monotonic() + 120
    while not job_was_ready(log):
        assert time.monotonic() < deadline, "job did not start"
        assert proc.poll() is None, proc.stdout.read()
        time.sleep(0.05)
    return proc


@pytest.mark.parametrize(
    ("how", "expect_rc"),
    [("SIGINT", 42), ("SIGTERM", 42), ("SIGKILL", -9)],
)
def test_driver_interrupted_or_killed_leaves_nothing(tmp_path, job_env, marker, how, expect_rc):
    proc = start_driver(tmp_path, job_env)
    # The job's tree, the driver and the reaper: all carry the marker.
    assert len(marked_pids(marker)) >= TREE_PROCESSES + 2
    if how == "SIGINT":  # a terminal's Ctrl-C goes to the whole foreground process group
        os.killpg(proc.pid, signal.SIGINT)
    else:
        os.kill(proc.pid, getattr(signal, how))
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == expect_rc
    if how == "SIGTERM":
        assert "interrupted: TerminatedBySignal" in out
    elif how == "SIGINT":
        assert "interrupted: KeyboardInterrupt" in out
    assert wait_gone(marker) == []
