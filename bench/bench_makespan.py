"""Makespan of eight sleeping jobs under ``-n 2``: longest-first vs. file order.

Jobs sleep 2, 2, 4, 4, 6, 6, 8, 12 s and are named so that the longest sort last; the optimum on
two workers is 22 s.  Prints figures, asserts nothing.

    .venv/bin/python bench/bench_makespan.py            # through `-p training_plugin`
    .venv/bin/python bench/bench_makespan.py --stand-in # through the tests' stand-in harness
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SLEEPS = {"a1": 2, "a2": 2, "b1": 4, "b2": 4, "c1": 6, "c2": 6, "d": 8, "e": 12}
OPTIMUM_S = 22.0


def real_plugin_available() -> bool:
    """Whether P1's plugin (TrainingItem) is importable."""
    try:
        from training_plugin.jobs import TrainingItem  # noqa: F401
    except ImportError:
        return False
    return True


def make_project(where: Path, scale: float, stand_in: bool) -> None:
    """Eight fake jobs sleeping ``scale`` x their length, plus the pytest set-up."""
    where.mkdir(parents=True, exist_ok=True)
    for name, seconds in SLEEPS.items():
        (where / f"train_{name}.py").write_text(
            f"import time\ntime.sleep({seconds * scale})\nprint('slept {seconds * scale}')\n")
    (where / "pytest.ini").write_text("[pytest]\naddopts = -p no:randomly\n")
    if stand_in:
        sys.path.insert(0, str(ROOT / "tests"))
        from test_parallel_process_safety import HARNESS

        (where / "conftest.py").write_text(HARNESS)


def run(where: Path, stand_in: bool, *extra: str) -> float:
    """Wall-clock seconds of one pytest session over the project."""
    args = [sys.executable, "-m", "pytest", "-q", "-n", "2", *extra]
    if not stand_in:
        args[3:3] = ["-p", "training_plugin"]
    env = dict(os.environ)
    env.pop("PYTEST_ADDOPTS", None)
    started = time.perf_counter()
    proc = subprocess.run(args, cwd=where, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        print(proc.stdout[-3000:], proc.stderr[-3000:], file=sys.stderr)
        raise SystemExit(f"pytest failed with exit code {proc.returncode}")
    return wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stand-in", action="store_true",
                        help="use the tests' stand-in harness instead of -p training_plugin")
    opts = parser.parse_args()
    stand_in = opts.stand_in or not real_plugin_available()
    how = "stand-in harness (tests/)" if stand_in else "-p training_plugin"
    print(f"bench_makespan: 8 jobs {list(SLEEPS.values())} s, -n 2, via {how}; "
          f"optimum {OPTIMUM_S:g} s, {len(os.sched_getaffinity(0))} CPUs")
    with tempfile.TemporaryDirectory(prefix="bench_makespan_") as tmp:
        tmp_path = Path(tmp)
        tiny = tmp_path / "tiny"
        make_project(tiny, 0.005, stand_in)
        run(tiny, stand_in)  # warm the OS caches
        startup = min(run(tiny, stand_in, "-p", "no:cacheprovider") for _ in range(3))
        proj = tmp_path / "jobs"
        make_project(proj, 1.0, stand_in)
        first = run(proj, stand_in)  # nothing remembered: file order, one job at a time
        second = run(proj, stand_in)  # remembered durations: longest first
        xdist_own = run(proj, stand_in, "-p", "no:cacheprovider",
                        "-p", "no:training_plugin.parallel")  # xdist's LoadScheduling
    rows = [
        ("start-up cost (same jobs, 0.005x sleeps, best of 3)", startup, None),
        ("1st run: nothing remembered (file order, our scheduler)", first, first - startup),
        ("2nd run: remembered durations, longest first", second, second - startup),
        ("file order with xdist's own LoadScheduling (plugin's hooks blocked)", xdist_own,
         xdist_own - startup),
    ]
    for label, wall, net in rows:
        if net is None:
            print(f"  {label:70s} {wall:6.2f} s")
        else:
            print(f"  {label:70s} {wall:6.2f} s  minus start-up {net:6.2f} s "
                  f"= {net / OPTIMUM_S:5.3f} x optimum")


if __name__ == "__main__":
    main()
