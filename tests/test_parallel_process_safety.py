"""Process safety through pytest: timeouts (every source, both pytest-timeout methods), Ctrl-C,
SIGTERM and SIGKILL of pytest, SIGKILL of an xdist worker -- proved with the process table.

The sessions run ``pytest -p training_plugin`` in subprocesses (they may die).
Every process of a session carries a unique marker in its environment (pytest, xdist workers,
reapers, jobs and their grandchildren inherit it); "nothing left" = no live process carries it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid

import pytest

from proctable import MARKER_VAR, marked_pids

#: How every session of the parallel/process-safety tests runs pytest: the real plugin, each
#: job's output (train.log) under ``out/<id>/``.
PLUGIN_ARGS = ("-p", "training_plugin", "--output-dir", "out", "-p", "no:randomly")


def plugin_project(pytester: pytest.Pytester) -> pytest.Pytester:
    """A temp project for ``pytest -p training_plugin`` (its own ini: rootdir is the temp dir)."""
    pytester.makeini("[pytest]\n")
    return pytester


#: A job whose tree has a plain child, a setsid child and a SIGTERM-ignoring child; it prints
#: "ready" once they all run, then sleeps SLEEP seconds.
TREE_JOB = textwrap.dedent(
    '''
    import os, subprocess, sys, time
    SLEEP = {sleep}
    out = os.environ["TRAINING_OUTPUT_DIR"]
    os.makedirs(out, exist_ok=True)
    ign = ("import signal,sys,time,pathlib; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
           "pathlib.Path(sys.argv[1]).touch(); time.sleep(300)")
    subprocess.Popen(["sleep", "300"])
    subprocess.Popen(["sleep", "301"], start_new_session=True)
    flag = os.path.join(out, "ign.ready")
    subprocess.Popen([sys.executable, "-c", ign, flag])
    while not os.path.exists(flag):
        time.sleep(0.01)
    print("ready", flush=True)
    {after}
    time.sleep(SLEEP)
    print("main done", flush=True)
    '''
)
QUICK_JOB = "print('quick job ran')\n"


def tree_job(sleep: float, extra: str = "", after: str = "pass") -> str:
    """The tree job; ``extra`` runs first, ``after`` (one line) once the tree is up."""
    return extra + TREE_JOB.format(sleep=sleep, after=after)



def describe(pids: list[int]) -> list[str]:
    out = []
    for pid in pids:
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as fh:
                cmdline = fh.read().replace(b"\0", b" ").decode(errors="replace")
            out.append(f"{pid}: {cmdline[:120]}")
        except OSError:
            pass
    return out


def wait_gone(marker: str, within_s: float) -> list[str]:
    """Poll until no marked process is left; describe the survivors after ``within_s``."""
    deadline = time.monotonic() + within_s
    while True:
        pids = marked_pids(marker)
        if not pids:
            return []
        if time.monotonic() > deadline:
            return describe(pids)
        time.sleep(0.1)


class Session:
    """A pytest run in a subprocess, in its own process group (a terminal's foreground job)."""

    def __init__(self, pytester: pytest.Pytester, marker: str, *args: str,
                 env: dict[str, str] | None = None) -> None:
        self.root = pytester.path
        full_env = dict(os.environ, **(env or {}))
        full_env[MARKER_VAR] = marker
        full_env.pop("PYTEST_XDIST_WORKER", None)
        full_env.pop("PYTEST_ADDOPTS", None)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "pytest", *PLUGIN_ARGS, "-p", "no:cacheprovider", "-rA",
             *args],
            cwd=self.root, env=full_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            text=True, process_group=0,
        )

    def wait_ready(self, job_id: str, within_s: float = 30) -> None:
        log = self.root / "out" / job_id / "train.log"
        deadline = time.monotonic() + within_s
        while "ready" not in (log.read_text() if log.exists() else ""):
            assert self.proc.poll() is None, self.proc.stdout.read()  # type: ignore[union-attr]
            assert time.monotonic() < deadline, f"{job_id} never got ready"
            time.sleep(0.05)

    def finish(self, within_s: float = 60) -> tuple[int, str]:
        out, _ = self.proc.communicate(timeout=within_s)
        return self.proc.returncode, out


@pytest.fixture
def marker():
    value = uuid.uuid4().hex
    yield value
    for pid in marked_pids(value):  # hygiene even when an assertion failed
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass


@pytest.fixture
def project(pytester: pytest.Pytester) -> pytest.Pytester:
    return plugin_project(pytester)


# -- timeouts ----------------------------------------------------------------------------------

@pytest.mark.parametrize("method", ["signal", "thread"])
@pytest.mark.parametrize("source", ["cli", "ini", "job table"])
def test_timeout_kills_tree_and_session_goes_on(project, marker, method, source):
    project.makepyfile(train_a_slow=tree_job(300), train_b_quick=QUICK_JOB)
    args = ["--timeout-method", method, "--junitxml", "junit.xml"]
    if source == "cli":
        args += ["--timeout", "1"]
    elif source == "ini":
        project.makeini("[pytest]\ntimeout = 1\n")
    else:  # a pytest.mark.timeout on the item
        project.makefile(".toml", pyproject="[tool.training_plugin.jobs.a_slow]\ntimeout = 1\n")
    session = Session(project, marker, *args)
    rc, out = session.finish()
    assert rc == 1, out
    assert "timed out after 1 s (process tree killed)" in out
    assert "ready" in out  # the log tail is in the failure report
    assert "PASSED train_b_quick.py::b_quick" in out
    assert "1 failed, 1 passed" in out
    junit = (project.path / "junit.xml").read_text()
    assert 'tests="2"' in junit and "timed out after 1 s" in junit
    assert wait_gone(marker, 3) == []


def test_timeout_under_xdist(project, marker):
    project.makepyfile(train_a_slow=tree_job(300), train_b_quick=QUICK_JOB)
    rc, out = Session(project, marker, "-n", "2", "--timeout", "1").finish()
    assert rc == 1, out
    assert "timed out after 1 s (process tree killed)" in out
    assert "1 failed, 1 passed" in out
    assert wait_gone(marker, 3) == []


# -- pytest interrupted or killed ----------------------------------------------------------------

@pytest.mark.parametrize("workers", ["0", "2"])
def test_ctrl_c_kills_everything(project, marker, workers):
    project.makepyfile(train_a_slow=tree_job(300))
    session = Session(project, marker, "-n", workers)
    session.wait_ready("a_slow")
    os.killpg(session.proc.pid, signal.SIGINT)  # Ctrl-C: the whole foreground group
    rc, out = session.finish()
    assert rc == 2, out  # pytest's "interrupted"
    assert "KeyboardInterrupt" in out
    assert wait_gone(marker, 5) == []


@pytest.mark.parametrize("workers", ["0", "2"])
def test_sigterm_kills_everything(project, marker, workers):
    project.makepyfile(train_a_slow=tree_job(300))
    session = Session(project, marker, "-n", workers, "--junitxml", "junit.xml")
    session.wait_ready("a_slow")
    session.proc.send_signal(signal.SIGTERM)
    rc, out = session.finish()
    # handled like Ctrl-C (with -n: the xdist controller): reports and JUnit XML still written
    assert rc == 2, out
    assert "pytest received SIGTERM" in out
    assert (project.path / "junit.xml").exists()
    assert wait_gone(marker, 12) == []


@pytest.mark.parametrize("workers", ["0", "2"])
def test_sigkill_of_pytest_kills_everything(project, marker, workers):
    project.makepyfile(train_a_slow=tree_job(300))
    session = Session(project, marker, "-n", workers)
    session.wait_ready("a_slow")
    session.proc.kill()
    session.finish()
    assert wait_gone(marker, 12) == []


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
    assert "crashed while running 'train_a_killer.py::a_killer'" in out
    assert "1 failed, 3 passed" in out
    assert wait_gone(marker, 5) == []


def test_job_killed_by_sigkill_is_named(project, marker):
    project.makepyfile(train_oom="import os, signal\nos.kill(os.getpid(), signal.SIGKILL)\n")
    rc, out = Session(project, marker).finish()
    assert rc == 1
    assert "killed by SIGKILL (out of memory?)" in out


def test_sigterm_between_jobs_ends_the_session_cleanly(project, marker):
    """-n0: SIGTERM while no job runs (here: an ordinary test sleeps) still interrupts the
    session like Ctrl-C: exit code 2, JUnit XML written, nothing left running."""
    project.makepyfile(train_a_quick=QUICK_JOB, test_zz_slow=(
        "import pathlib, time\n"
        "def test_slow():\n"
        "    pathlib.Path('slow.started').touch()\n"
        "    time.sleep(300)\n"))
    session = Session(project, marker, "--junitxml", "junit.xml", ".")  # "." : the test too
    deadline = time.monotonic() + 30
    while not (project.path / "slow.started").exists():
        assert time.monotonic() < deadline and session.proc.poll() is None
        time.sleep(0.05)
    session.proc.send_signal(signal.SIGTERM)
    rc, out = session.finish()
    assert rc == 2, out
    assert "pytest received SIGTERM" in out
    assert (project.path / "junit.xml").exists()
    assert wait_gone(marker, 3) == []
