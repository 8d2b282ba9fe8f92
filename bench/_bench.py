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

#: A reference plugin in the usual shape: as pytest walks the tree, one File and one Item per
#: ``train_*.py``; the item's run is ``body`` (e.g. ``pass``).
REFERENCE_PLUGIN = """\
import subprocess, sys
import pytest

class F(pytest.File):
    def collect(self):
        yield I.from_parent(self, name=self.path.stem[6:])

class I(pytest.Item):
    def runtest(self):
        {body}

def pytest_collect_file(file_path, parent):
    if file_path.name.startswith("train_") and file_path.suffix == ".py":
        return F.from_parent(parent, path=file_path)
"""


def reference_plugin(where: Path, name: str, body: str) -> dict[str, str]:
    """Write ``REFERENCE_PLUGIN`` with ``body`` as ``where/name.py``; return the environment
    that makes ``-p name`` importable."""
    where.mkdir(parents=True, exist_ok=True)
    (where / f"{name}.py").write_text(REFERENCE_PLUGIN.format(body=body))
    return bench_env(PYTHONPATH=str(where))


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


#: One variant of a bench: command, folder, expected exit code, environment (None: bench_env()).
Variant = tuple[list[str], Path, int, "dict[str, str] | None"]


def best_times(
    variants: dict[str, Variant], repeat: int
) -> tuple[dict[str, float], dict[str, float]]:
    """Best wall and best CPU time per variant; the variants are interleaved in every round
    (a busy machine then slows all of them alike), after one warm-up round."""
    wall: dict[str, list[float]] = {name: [] for name in variants}
    cpu: dict[str, list[float]] = {name: [] for name in variants}
    for round_no in range(repeat + 1):
        for name, (cmd, cwd, rc, env) in variants.items():
            w, c, _ = timed_run(cmd, cwd, expect_rc=rc, env=env)
            if round_no:
                wall[name].append(w)
                cpu[name].append(c)
    return ({n: min(v) for n, v in wall.items()}, {n: min(v) for n, v in cpu.items()})


def round_times(
    variants: dict[str, Variant], repeat: int, warmup: dict[str, Variant] | None = None
) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """Every round's wall and CPU times per variant, interleaved as in ``best_times``, for a
    bench that prints the median beside the best.  The warm-up round runs ``warmup`` (e.g. the
    same commands on a smaller input, when a full round is long), else the variants themselves."""
    for cmd, cwd, rc, env in (variants if warmup is None else warmup).values():
        timed_run(cmd, cwd, expect_rc=rc, env=env)
    wall: dict[str, list[float]] = {name: [] for name in variants}
    cpu: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(repeat):
        for name, (cmd, cwd, rc, env) in variants.items():
            w, c, _ = timed_run(cmd, cwd, expect_rc=rc, env=env)
            wall[name].append(w)
            cpu[name].append(c)
    return wall, cpu
