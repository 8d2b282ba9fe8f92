"""What every bench shares: the environment of a timed run and the timed run itself.

"Warm" includes Python's bytecode cache, so the runs drop PYTHONDONTWRITEBYTECODE (a calling
shell may set it); PYTEST_ADDOPTS is dropped so the figures do not depend on the caller.
"""

from __future__ import annotations

import os
import resource
import shlex
import subprocess
import sys
import time
from collections.abc import Iterable
from pathlib import Path

DROPPED = ("PYTHONDONTWRITEBYTECODE", "PYTEST_ADDOPTS")


def bench_env(drop: Iterable[str] = (), **extra: str) -> dict[str, str]:
    """os.environ without ``DROPPED`` and ``drop``, plus ``extra``."""
    gone = set(DROPPED) | set(drop)
    env = {k: v for k, v in os.environ.items() if k not in gone}
    env.update(extra)
    return env


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def timed_run(
    cmd: list[str], cwd: Path, *, expect_rc: int = 0, env: dict[str, str] | None = None
) -> tuple[float, float, str]:
    """Run ``cmd``; return (wall s, CPU s of it and all its children, output).  Exits with the
    output's tail when the exit code is not ``expect_rc``."""
    cpu0 = _children_cpu()
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          env=bench_env() if env is None else env)
    wall = time.perf_counter() - start
    out = proc.stdout.decode(errors="replace")
    if proc.returncode != expect_rc:
        sys.exit(f"{shlex.join(cmd)} exited {proc.returncode}:\n{out[-3000:]}")
    return wall, _children_cpu() - cpu0, out
