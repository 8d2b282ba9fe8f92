"""Oversubscription: two OpenMP-heavy scikit-learn fits as two jobs under ``-n 2``, with and
without the plugin's thread budget, against one fit alone with one thread.

Each job fits a HistGradientBoostingClassifier on 200k x 50 random rows and prints its fit time.
"Without the budget" = the job drops the thread variables before numpy/sklearn load (what a job
sees when nobody caps it).  Prints figures, asserts nothing.

    .venv/bin/python bench/bench_threads.py [--max-iter 100]
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import tempfile
from pathlib import Path

from _bench import bench_env, timed_run

THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS",
               "NUMEXPR_NUM_THREADS", "VECLIB_MAXIMUM_THREADS", "TRAINING_THREADS")

JOB = '''\
import os, sys, time
if os.environ.get("BENCH_UNCAPPED") == "1":
    for name in {thread_vars!r}:
        os.environ.pop(name, None)
import numpy as np
from sklearn.ensemble import HistGradientBoostingClassifier
rng = np.random.default_rng({seed})
X = rng.normal(size=(200_000, 50)).astype(np.float32)
y = (X[:, :5].sum(axis=1) + rng.normal(size=200_000) > 0).astype(int)
started = time.perf_counter()
HistGradientBoostingClassifier(max_iter={max_iter}, early_stopping=False, random_state=0).fit(X, y)
print(f"FIT {{time.perf_counter() - started:.3f}} threads={{os.environ.get('OMP_NUM_THREADS')}}")
out = os.environ.get("TRAINING_OUTPUT_DIR")
if out:
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "fit.txt"), "w") as fh:
        fh.write(f"{{time.perf_counter() - started:.3f}}")
'''


def make_project(where: Path, max_iter: int) -> None:
    for seed, name in ((1, "hgb_one"), (2, "hgb_two")):
        (where / f"train_{name}.py").write_text(
            JOB.format(thread_vars=THREAD_VARS, seed=seed, max_iter=max_iter))
    (where / "pytest.ini").write_text("[pytest]\naddopts = -p no:randomly -p no:cacheprovider\n")


def single_fit(where: Path) -> float:
    """One fit alone, one thread, plain python."""
    _, _, out = timed_run([sys.executable, str(where / "train_hgb_one.py")], where,
                          env=bench_env(drop=THREAD_VARS, OMP_NUM_THREADS="1"))
    return float(re.search(r"FIT (\S+)", out).group(1))  # type: ignore[union-attr]


def two_jobs(where: Path, uncapped: bool) -> tuple[float, list[float]]:
    """Both jobs under -n 2; returns (pytest wall seconds, the two fit times)."""
    wall, _, _ = timed_run(
        [sys.executable, "-m", "pytest", "-p", "training_plugin", "-q", "-n", "2"], where,
        env=bench_env(drop=THREAD_VARS, BENCH_UNCAPPED="1" if uncapped else "0"),
    )
    fits = sorted(float(p.read_text()) for p in where.rglob("fit.txt"))
    for p in where.rglob("fit.txt"):
        p.unlink()
    return wall, fits


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-iter", type=int, default=100, help="boosting iterations per fit")
    opts = parser.parse_args()
    print(f"bench_threads: 2 x HistGradientBoosting(200k x 50, max_iter={opts.max_iter}), "
          f"-p training_plugin -n 2, {len(os.sched_getaffinity(0))} CPUs")
    with tempfile.TemporaryDirectory(prefix="bench_threads_") as tmp:
        where = Path(tmp)
        make_project(where, opts.max_iter)
        alone = single_fit(where)
        capped_wall, capped = two_jobs(where, uncapped=False)
        free_wall, free = two_jobs(where, uncapped=True)
    print(f"  one fit alone, 1 thread                       fit {alone:7.2f} s")
    print(f"  2 jobs, -n 2, with the budget    wall {capped_wall:6.2f} s  fits "
          f"{capped[0]:6.2f} / {capped[-1]:6.2f} s  slowest/alone = {capped[-1] / alone:5.2f} x")
    print(f"  2 jobs, -n 2, without budget     wall {free_wall:6.2f} s  fits "
          f"{free[0]:6.2f} / {free[-1]:6.2f} s  slowest/alone = {free[-1] / alone:5.2f} x")


if __name__ == "__main__":
    main()
