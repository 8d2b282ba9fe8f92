"""Shared helpers of the plugin, parallel and runner tests: fake training scripts, sessions of
``pytest -p training_plugin`` in a subprocess, the process table, and the job contract's keys.

A plain module (not a conftest): tests import it as ``from fakejobs import ...`` (tests/ is on
``sys.path`` under pytest's default import mode).  The fixtures built on it (``marker``,
``project``) are in tests/conftest.py.
"""

from __future__ import annotations

import os
import pty
import re
import select
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from proctable import MARKER_VAR, marked_pids

# -- the job contract (docs/getting-started.md, "The job contract") ---------------------------

#: The keys every metrics.json carries.
CONTRACT_KEYS = frozenset({"job", "task", "primary_metric", "metrics", "models", "best_model",
                           "data", "folds", "epochs", "seed", "duration_s"})
#: The keys of its ``data`` block.
DATA_KEYS = frozenset({"source", "synthetic", "rows", "features", "sha256"})

# -- sessions --------------------------------------------------------------------------------

#: How the parallel/process-safety sessions run pytest: the real plugin, each job's output
#: (train.log) under ``out/<id>/``.  ``--output-dir=out`` (the '=' spelling) can never be taken
#: for a positional path by pytest's rootdir detection.
PLUGIN_ARGS = ("-p", "training_plugin", "--output-dir=out", "-p", "no:randomly")

def run_in_pty(cwd: Path, *args: str, within_s: float = 300, release_on: str | None = None,
               env: dict[str, str] | None = None) -> str:
    """Run pytest with a pseudo-terminal as stdout (a TTY), return everything it wrote.  With
    ``release_on``: once the output shows that text, create ``release`` in ``cwd`` (the file
    a gated job waits for).  ``env``: the environment (default: this process's)."""
    main, child = pty.openpty()
    env = dict(os.environ if env is None else env, COLUMNS="120")
    proc = subprocess.Popen([sys.executable, "-m", "pytest", *PLUGIN_ARGS,
                             "-p", "no:cacheprovider", *args],
                            cwd=cwd, stdout=child, stderr=child, stdin=subprocess.DEVNULL,
                            env=env)
    os.close(child)
    chunks: list[bytes] = []
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        ready, _, _ = select.select([main], [], [], 0.5)
        if ready:
            try:
                data = os.read(main, 65536)
            except OSError:
                break
            if not data:
                break
            chunks.append(data)
            if release_on and release_on in b"".join(chunks).decode(errors="replace"):
                (cwd / "release").touch()
        elif proc.poll() is not None:
            break
    (cwd / "release").touch()  # never leave the job waiting
    proc.wait(60)
    os.close(main)
    return b"".join(chunks).decode(errors="replace")



#: How long a test waits for processes to disappear.  A poll that returns as soon as they are
#: gone: generous, so that a loaded machine never fails a test, and free when all goes well.
GONE_WITHIN_S = 30.0


def plugin_project(pytester: pytest.Pytester) -> pytest.Pytester:
    """A temp project for ``pytest -p training_plugin`` (its own ini: rootdir is the temp dir)."""
    pytester.makeini("[pytest]\n")
    return pytester


class Session:
    """A pytest run in a subprocess, in its own process group (a terminal's foreground job);
    every process it starts carries ``MARKER_VAR=marker`` in its environment.  Its output is
    read as it comes (``wait_output``).  pytest's cache is off unless ``cache``."""

    def __init__(self, pytester: pytest.Pytester, marker: str, *args: str,
                 env: dict[str, str] | None = None, cache: bool = False) -> None:
        self.root = pytester.path
        full_env = dict(os.environ, **(env or {}))
        full_env[MARKER_VAR] = marker
        full_env.pop("PYTEST_XDIST_WORKER", None)
        full_env.pop("PYTEST_ADDOPTS", None)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "pytest", *PLUGIN_ARGS,
             *(() if cache else ("-p", "no:cacheprovider")), "-rA", *args],
            cwd=self.root, env=full_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            process_group=0,
        )
        self.chunks: list[bytes] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        fd = self.proc.stdout.fileno()  # type: ignore[union-attr]
        while chunk := os.read(fd, 65536):  # as it comes: pytest leaves lines open
            self.chunks.append(chunk)

    def output(self) -> str:
        return b"".join(self.chunks).decode(errors="replace")

    def wait_output(self, pattern: str, within_s: float = 120) -> None:
        """Block until the output so far matches the regular expression ``pattern``."""
        deadline = time.monotonic() + within_s
        regex = re.compile(pattern)
        while not regex.search(self.output()):
            assert self.proc.poll() is None or self._reader.is_alive(), self.output()
            assert time.monotonic() < deadline, f"no line matched {pattern!r}:\n{self.output()}"
            time.sleep(0.05)

    def wait_ready(self, job_id: str, within_s: float = 120) -> None:
        """Block until job ``job_id`` printed "ready" (its whole tree runs)."""
        log = self.root / "out" / job_id / "train.log"
        deadline = time.monotonic() + within_s
        while not job_was_ready(log):
            assert self.proc.poll() is None, self.output()
            assert time.monotonic() < deadline, f"{job_id} never got ready"
            time.sleep(0.05)

    def finish(self, within_s: float = 300) -> tuple[int, str]:
        """Wait for the session to end; (exit code, everything it printed)."""
        self.proc.wait(timeout=within_s)
        self._reader.join(within_s)
        return self.proc.returncode, self.output()


# -- fake training scripts -------------------------------------------------------------------

#: A job whose tree has a plain child, a setsid child and a SIGTERM-ignoring child; it prints
#: "ready" once they all run, then sleeps SLEEP seconds and prints "main done".
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
#: The processes of a ready tree job: the job and its three children.
TREE_PROCESSES = 4
QUICK_JOB = "print('quick job ran')\n"


def busy_job(cpu_s: float, mib: int) -> str:
    """A job of known cost: about ``cpu_s`` seconds of CPU time and a ``mib`` MiB buffer."""
    return textwrap.dedent(f"""
        import time
        buf = bytearray({mib} * 2**20)
        for i in range(0, len(buf), 4096):
            buf[i] = 1
        start = time.process_time()
        while time.process_time() - start < {cpu_s}:
            pass
        print("busy for", time.process_time() - start, "s")
    """)


def tree_job(sleep: float, extra: str = "", after: str = "pass") -> str:
    """The tree job; ``extra`` runs first, ``after`` (one line) once the tree is up."""
    return extra + TREE_JOB.format(sleep=sleep, after=after)


def job_was_ready(log: Path) -> bool:
    """Whether the tree job that wrote ``log`` had its whole tree up."""
    return log.is_file() and "ready" in log.read_text(errors="replace").split()


#: Timeouts tried, shortest first, by tests that need a tree job killed by a timeout once its
#: tree is up: a loaded machine may start the tree later than the shortest one.
TIMEOUTS_S = (1, 3, 9, 27)


def until_ready_before_timeout(run, log_of):  # type: ignore[no-untyped-def]
    """``run(timeout)`` with the timeouts of TIMEOUTS_S in turn, until the tree job (whose log
    ``log_of()`` names) got ready before its timeout killed it; returns (timeout, run's result).

    A timeout that fired before the tree was up proves nothing about killing the tree, so the
    next, longer one is tried.  No outcome depends on how fast the machine is."""
    for timeout in TIMEOUTS_S:
        got = run(timeout)
        if job_was_ready(log_of()):
            return timeout, got
    raise AssertionError(f"the tree job never got ready within {TIMEOUTS_S[-1]} s")


#: A job that records the environment it received (``env.json`` in its output directory).
ENV_JOB = (
    "import json, os\n"
    "out = os.environ['TRAINING_OUTPUT_DIR']\n"
    "os.makedirs(out, exist_ok=True)\n"
    "json.dump(dict(os.environ), open(os.path.join(out, 'env.json'), 'w'))\n"
)

#: A fake training script: declares ``{args}``, records what it received (``received.json``),
#: writes metrics.json.
FAKE = """\
import argparse, json, os, sys
{pre}
p = argparse.ArgumentParser()
{args}
ns = p.parse_args()
out = os.environ["TRAINING_OUTPUT_DIR"]
os.makedirs(out, exist_ok=True)
env = {{k: v for k, v in os.environ.items() if k.startswith(("TRAINING_", "OMP_", "MY_"))}}
with open(os.path.join(out, "received.json"), "w") as f:
    json.dump({{"argv": sys.argv[1:], "cwd": os.getcwd(), "env": env}}, f)
print("training", os.environ["TRAINING_JOB_ID"])
{post}
"""
METRICS = """\
json.dump({{"job": os.environ["TRAINING_JOB_ID"], "task": "binary", "primary_metric": "roc_auc",
           "metrics": {{"roc_auc": {auc}, "accuracy": 0.75}}, "data": {{"synthetic": {syn}}}}},
          open(os.path.join(out, "metrics.json"), "w"))
"""


def fake(args: str = "", post: str = "", pre: str = "", auc: float = 0.875,
         synthetic: bool = False, metrics: bool = True) -> str:
    """Source of a fake training script (see FAKE)."""
    written = METRICS.format(auc=auc, syn=synthetic) if metrics else ""
    return FAKE.format(args=textwrap.dedent(args), post=written + textwrap.dedent(post), pre=pre)


#: A fake training script whose only trace is a file ``ran`` in its output directory.
TRACE_JOB = """\
import argparse, os, pathlib
p = argparse.ArgumentParser()
p.add_argument("--epochs", type=int)
p.parse_args()
pathlib.Path(os.environ["TRAINING_OUTPUT_DIR"]).mkdir(parents=True, exist_ok=True)
(pathlib.Path(os.environ["TRAINING_OUTPUT_DIR"]) / "ran").write_text("yes")
"""


def write_files(root: Path, files: dict[str, str]) -> None:
    """Write ``files`` (path relative to ``root`` -> text, dedented) under ``root``."""
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))


# -- the process table -------------------------------------------------------------------------

def describe(pids: list[int]) -> list[str]:
    """``pid: command line`` of each process still alive."""
    out = []
    for pid in pids:
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as fh:
                cmdline = fh.read().replace(b"\0", b" ").decode(errors="replace")
            out.append(f"{pid}: {cmdline[:120]}")
        except OSError:
            pass
    return out


def wait_gone(marker: str, within_s: float = GONE_WITHIN_S) -> list[str]:
    """Poll until no process carrying ``marker`` is left (returns []); after ``within_s``,
    describe the survivors."""
    deadline = time.monotonic() + within_s
    while True:
        pids = marked_pids(marker)
        if not pids:
            return []
        if time.monotonic() > deadline:
            return describe(pids)
        time.sleep(0.1)


def kill_marked(marker: str) -> None:
    """Test hygiene: SIGKILL every process carrying ``marker`` (even when a test failed)."""
    for pid in marked_pids(marker):
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
