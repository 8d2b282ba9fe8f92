"""Benchmark: the wall time ``--mlflow`` adds to a session of N fake jobs.

    .venv/bin/python bench/bench_tracking.py [--jobs 10] [--repeat 2] [-n 0]

Each fake job fits a tiny scikit-learn pipeline and writes what the AIMedRes jobs write
(model.joblib as a bundle dict, manifest.json, metrics.json with candidate models), so that
tracking logs a real MLflow model per job.  Times (best of ``--repeat`` interleaved rounds, after a
warm-up round):

- ``pytest -p training_plugin`` without tracking;
- with ``--mlflow`` into a fresh SQLite database (first use: MLflow creates its tables);
- with ``--mlflow`` into the existing database (the usual case).

Prints the times and what tracking adds, in seconds and per job.  Never asserts.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

from _bench import bench_env, timed_run

JOB = """\
import json, os
import joblib, numpy as np, pandas as pd
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
out = os.environ["TRAINING_OUTPUT_DIR"]
rng = np.random.default_rng(0)
X = pd.DataFrame(rng.normal(size=(60, 4)), columns=["a", "b", "c", "d"])
y = (X["a"] > 0).astype(int)
model = make_pipeline(StandardScaler(), LogisticRegression()).fit(X, y)
joblib.dump({"model": model, "features": list(X.columns)}, os.path.join(out, "model.joblib"))
data = {"source": "bench", "synthetic": True, "sha256": "0" * 64}
json.dump({"git": {"commit": None}, "data": data}, open(os.path.join(out, "manifest.json"), "w"))
json.dump({"primary_metric": "accuracy", "metrics": {"accuracy": 0.9},
           "models": {"logreg": {"accuracy": 0.9}}, "data": data},
          open(os.path.join(out, "metrics.json"), "w"))
"""


def make_tree(root: Path, count: int) -> None:
    """``count`` fake jobs under ``root/jobs`` plus a pytest.ini and a pyproject name."""
    (root / "jobs").mkdir(parents=True, exist_ok=True)
    (root / "pytest.ini").write_text("[pytest]\n")
    (root / "pyproject.toml").write_text('[project]\nname = "bench-tracking"\n')
    for i in range(count):
        (root / "jobs" / f"train_job{i:02d}.py").write_text(JOB)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("-n", dest="workers", type=int, default=0, help="xdist workers (0: none)")
    args = parser.parse_args()
    env = bench_env(MLFLOW_DISABLE_TELEMETRY="true", DO_NOT_TRACK="1")
    for name in ("MLFLOW_TRACKING_URI", "MLFLOW_EXPERIMENT_NAME"):
        env.pop(name, None)
    with tempfile.TemporaryDirectory(prefix="bench-tracking-") as tmp:
        root = Path(tmp)
        make_tree(root, args.jobs)
        base = [sys.executable, "-m", "pytest", "-p", "training_plugin", "-q",
                "-p", "no:randomly", "-p", "no:cacheprovider"]
        if args.workers:
            base += ["-n", str(args.workers)]
        times: dict[str, list[float]] = {"off": [], "fresh db": [], "existing db": []}
        for round_no in range(args.repeat + 1):
            for name in times:
                out = root / f"out-{name.replace(' ', '-')}"
                if name == "fresh db":
                    shutil.rmtree(out, ignore_errors=True)
                cmd = base + ["--output-dir", str(out)]
                if name != "off":
                    cmd.append("--mlflow")
                wall, _, text = timed_run(cmd, root, env=env)
                if name != "off" and f"mlflow: {args.jobs} job run(s) logged" not in text:
                    sys.exit(f"{name}: the runs were not logged:\n{text[-3000:]}")
                if round_no:
                    times[name].append(wall)
        best = {name: min(values) for name, values in times.items()}
    print(f"{args.jobs} fake jobs (each fits and saves a scikit-learn pipeline), "
          f"{'-n ' + str(args.workers) if args.workers else 'no -n'}, "
          f"best of {args.repeat}:")
    for name, wall in best.items():
        extra = best[name] - best["off"]
        note = "" if name == "off" else (f"  (+{extra:.1f} s, +{extra / args.jobs:.2f} s/job, "
                                         f"{best[name] / best['off']:.2f}x)")
        print(f"  {'--mlflow, ' + name if name != 'off' else 'tracking off':24s} "
              f"{wall:6.1f} s{note}")


if __name__ == "__main__":
    main()
