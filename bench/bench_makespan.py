"""Makespan of eight sleeping jobs under ``-n 2``: longest-first vs. file order.

Jobs sleep 2, 2, 4, 4, 6, 6, 8, 12 s and are named so that the longest sort last; the optimum on
two workers is 22 s.  Prints figures, asserts nothing.

    .venv/bin/python bench/bench_makespan.py
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

from _bench import timed_run

SLEEPS = {"a1": 2, "a2": 2, "b1": 4, "b2": 4, "c1": 6, "c2": 6, "d": 8, "e": 12}
OPTIMUM_S = 22.0


def make_project(where: Path, scale: float) -> None:
    """Eight fake jobs sleeping ``scale`` x their length, plus the pytest set-up."""
    where.mkdir(parents=True, exist_ok=True)
    for name, seconds in SLEEPS.items():
        (where / f"train_{name}.py").write_text(
            f"import time\ntime.sleep({seconds * scale})\nprint('slept {seconds * scale}')\n")
    (where / "pytest.ini").write_text("[pytest]\naddopts = -p no:randomly\n")


def run(where: Path, *extra: str) -> float:
    """Wall-clock seconds of one ``pytest -p training_plugin -n 2`` session over the project."""
    return timed_run([sys.executable, "-m", "pytest", "-p", "training_plugin", "-q", "-n", "2",
                      *extra], where)[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.parse_args()
    print(f"bench_makespan: 8 jobs {list(SLEEPS.values())} s, -p training_plugin -n 2; "
          f"optimum {OPTIMUM_S:g} s, {len(os.sched_getaffinity(0))} CPUs")
    with tempfile.TemporaryDirectory(prefix="bench_makespan_") as tmp:
        tmp_path = Path(tmp)
        tiny = tmp_path / "tiny"
        make_project(tiny, 0.005)
        run(tiny)  # warm the OS caches
        startup = min(run(tiny, "-p", "no:cacheprovider") for _ in range(3))
        proj = tmp_path / "jobs"
        make_project(proj, 1.0)
        first = run(proj)  # nothing remembered: file order, one job at a time
        second = run(proj)  # remembered durations: longest first
        xdist_own = run(proj, "-p", "no:cacheprovider",
                        "-p", "no:training_plugin.xdist_scheduler")  # xdist's LoadScheduling
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
