"""Evaluation: the metric definitions and nested cross-validation on scikit-learn's machinery.

The protocol of every tabular job (:func:`nested_cv`):

* the candidates (model families, each a Pipeline with its preprocessing, and a small grid of
  settings) become ONE :class:`~sklearn.model_selection.GridSearchCV` whose inner CV picks the
  family and its settings, then refits them (``refit=True``);
* that search is scored by :func:`sklearn.model_selection.cross_validate` on an outer
  :class:`~sklearn.model_selection.RepeatedStratifiedKFold` (``StratifiedGroupKFold`` per repeat
  when rows are grouped by subject; ``RepeatedKFold`` / ``GroupKFold`` for regression), so the
  outer test fold never takes part in any choice. The headline figure is the mean over all outer
  folds of all repeats; ``_std`` is the sample standard deviation (ddof=1) over those folds;
* every outer fold's fitted search predicts its test rows: the out-of-fold predictions
  (one full set per repeat). Every other figure of a fold (threshold metrics, subgroups, net
  benefit) is computed from them on the same test fold, and the intervals, calibration and
  decision curves come from :mod:`aimedres.training.clinical`.

Conventions: metrics are fractions; binary ``roc_auc`` ranks P(positive) (probability column 1);
multiclass ``roc_auc`` is one-vs-rest, macro averaged. Every fit is single-threaded (BLAS and
OpenMP pools capped at one thread), and ``n_jobs`` spreads outer folds over processes, so the
same seed gives the same figures whatever ``n_jobs`` is (on one machine with one build of the
libraries: float kernels differ between CPUs and builds).
"""
from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from aimedres.training.data import DataError, Dataset, log

#: Metric names of a classification task (all fractions in [0, 1]); ``roc_auc`` is the primary one.
CLASSIFICATION_METRICS: tuple[str, ...] = ("roc_auc", "accuracy", "balanced_accuracy", "f1_macro")
#: Metric names of a regression task; ``rmse`` is the primary one (lower is better).
REGRESSION_METRICS: tuple[str, ...] = ("rmse", "mae", "r2")
#: Out-of-fold metrics of a binary classifier: calibration and the metrics at the fixed threshold.
BINARY_OOF_METRICS: tuple[str, ...] = ("brier", "calibration_slope", "calibration_intercept",
                                       "sensitivity", "specificity", "ppv", "npv")
#: Metrics where a smaller value is better.
LOWER_IS_BETTER: frozenset[str] = frozenset({"rmse", "mae", "brier"})
#: The default decision threshold on P(positive), fixed before any result is seen.
DEFAULT_THRESHOLD = 0.5
#: Folds of the inner CV (the search); fewer when the outer CV has fewer.
INNER_FOLDS = 3

_SCORERS = {
    "binary": {"roc_auc": "roc_auc", "accuracy": "accuracy",
               "balanced_accuracy": "balanced_accuracy", "f1_macro": "f1_macro"},
    "multiclass": {"roc_auc": "roc_auc_ovr", "accuracy": "accuracy",
                   "balanced_accuracy": "balanced_accuracy", "f1_macro": "f1_macro"},
    "regression": {"rmse": "neg_root_mean_squared_error", "mae": "neg_mean_absolute_error",
                   "r2": "r2"},
}


def primary_metric(task: str) -> str:
    """``rmse`` for regression, ``roc_auc`` otherwise."""
    return "rmse" if task == "regression" else "roc_auc"


def scorers(task: str) -> dict[str, str]:
    """Metric name -> scikit-learn scorer name (``neg_*`` scorers are negated back on output)."""
    return dict(_SCORERS[task])


# --------------------------------------------------------------------------------------------
# Metric definitions on predictions (a held-out split, the out-of-fold predictions)
# --------------------------------------------------------------------------------------------
def classification_metrics(y_true: Sequence[Any], proba: np.ndarray, classes: Sequence[Any]) -> dict[str, float]:
    """Classification metrics from predicted probabilities.

    Args:
        y_true: true labels (values from ``classes``).
        proba: array (n_samples, n_classes); column j is P(classes[j]). A 1-d array is taken as
            P(classes[1]) of a binary task.
        classes: labels in column order; binary: ``[negative, positive]``.

    Returns:
        ``roc_auc`` (binary: on P(positive); multiclass: one-vs-rest, macro), ``accuracy``,
        ``balanced_accuracy``, ``f1_macro`` (predictions = most probable class). Fractions.
        ``roc_auc`` is NaN when the true labels hold a single class.
    """
    from sklearn.metrics import accuracy_score, balanced_accuracy_score, f1_score, roc_auc_score

    classes = list(classes)
    proba = np.asarray(proba, dtype=float)
    if proba.ndim == 1:
        if len(classes) != 2:
            raise ValueError("a 1-d probability array needs exactly 2 classes")
        proba = np.column_stack([1.0 - proba, proba])
    if proba.shape[1] != len(classes):
        raise ValueError(f"proba has {proba.shape[1]} columns but there are {len(classes)} classes")
    index = {c: i for i, c in enumerate(classes)}
    try:
        y_idx = np.array([index[v] for v in y_true], dtype=np.int64)
    except KeyError as exc:
        raise ValueError(f"label {exc.args[0]!r} not in classes {classes}") from None
    y_pred = np.argmax(proba, axis=1)
    labels = np.arange(len(classes))
    present = np.unique(y_idx)
    if len(present) < 2:
        auc = float("nan")
    elif len(classes) == 2:
        auc = float(roc_auc_score(y_idx == 1, proba[:, 1]))
    else:
        p = np.clip(proba, 0.0, None)
        p = p / np.where(p.sum(axis=1, keepdims=True) > 0, p.sum(axis=1, keepdims=True), 1.0)
        if len(present) < len(classes):  # one-vs-rest over the classes present
            auc = float(np.mean([roc_auc_score(y_idx == k, p[:, k]) for k in present]))
        else:
            auc = float(roc_auc_score(y_idx, p, multi_class="ovr", average="macro", labels=labels))
    return {
        "roc_auc": auc,
        "accuracy": float(accuracy_score(y_idx, y_pred)),
        "balanced_accuracy": float(balanced_accuracy_score(y_idx, y_pred)),
        "f1_macro": float(f1_score(y_idx, y_pred, average="macro", labels=labels, zero_division=0)),
    }


def regression_metrics(y_true: Sequence[float], y_pred: Sequence[float]) -> dict[str, float]:
    """``rmse``, ``mae`` and ``r2`` (1 - SS_res / SS_tot; may be negative)."""
    from sklearn.metrics import mean_absolute_error, r2_score, root_mean_squared_error

    yt = np.asarray(y_true, dtype=float)
    yp = np.asarray(y_pred, dtype=float)
    return {"rmse": float(root_mean_squared_error(yt, yp)),
            "mae": float(mean_absolute_error(yt, yp)), "r2": float(r2_score(yt, yp))}


def threshold_metrics(y: np.ndarray, p: np.ndarray, threshold: float = DEFAULT_THRESHOLD) -> dict[str, float]:
    """Sensitivity, specificity, PPV and NPV of "positive when P(positive) >= threshold"."""
    from sklearn.metrics import confusion_matrix

    pred = (np.asarray(p) >= threshold).astype(int)
    tn, fp, fn, tp = confusion_matrix(np.asarray(y).astype(int), pred, labels=[0, 1]).ravel()

    def ratio(a: int, b: int) -> float:
        return float(a / b) if b else float("nan")

    return {"sensitivity": ratio(tp, tp + fn), "specificity": ratio(tn, tn + fp),
            "ppv": ratio(tp, tp + fp), "npv": ratio(tn, tn + fn)}


def calibration(y: np.ndarray, p: np.ndarray, groups: np.ndarray | None = None) -> dict[str, float]:
    """Brier score, calibration slope and calibration intercept of binary probabilities.

    Slope: the coefficient of logit(p) in a logistic GLM of the outcome (1 = ideal, < 1 = too
    extreme predictions). Intercept (calibration-in-the-large): ``a`` in
    logit P(y=1) = a + offset(logit(p)) (0 = ideal, > 0 = risks under-estimated). Both are fitted
    by statsmodels (:func:`aimedres.training.clinical.calibration_glm`, which also gives their
    intervals); the Brier score is scikit-learn's.
    """
    from sklearn.metrics import brier_score_loss

    from aimedres.training.clinical import calibration_glm

    y = np.asarray(y).astype(int)
    glm = calibration_glm(y, p, groups)
    return {"brier": float(brier_score_loss(y, np.asarray(p, dtype=float), labels=[0, 1])),
            "calibration_slope": glm["calibration_slope"], "calibration_intercept": glm["calibration_intercept"]}


# --------------------------------------------------------------------------------------------
# Splitters
# --------------------------------------------------------------------------------------------
def _check_folds(ds: Dataset, folds: int) -> None:
    n_rows = len(ds.y)
    if folds > n_rows:
        raise DataError(f"{ds.source}: {n_rows} rows cannot be split into {folds} folds; use --folds <= {n_rows}")
    if ds.groups is not None and folds > ds.groups.nunique():
        raise DataError(f"{ds.source}: {ds.groups.nunique()} groups cannot be split into {folds} folds")
    if ds.task != "regression":
        counts = ds.y.astype(str).value_counts()
        if counts.min() < folds:
            raise DataError(
                f"{ds.source}: class {counts.idxmin()!r} has only {int(counts.min())} row(s), fewer than "
                f"--folds {folds}; use --folds <= {int(counts.min())}")


def make_splitter(ds: Dataset, *, folds: int, seed: int, shuffle: bool = True) -> Any:
    """One K-fold splitter for ``ds``: StratifiedKFold (classification) or KFold (regression);
    StratifiedGroupKFold / GroupKFold when ``ds.groups`` is set (a subject's rows stay together).

    Raises:
        DataError: a class (or the number of groups) is smaller than ``folds``.
    """
    from sklearn.model_selection import GroupKFold, KFold, StratifiedGroupKFold, StratifiedKFold

    _check_folds(ds, folds)
    grouped = ds.groups is not None
    if ds.task == "regression":
        return (GroupKFold(n_splits=folds, shuffle=True, random_state=seed) if grouped
                else KFold(n_splits=folds, shuffle=shuffle, random_state=seed))
    return (StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed) if grouped
            else StratifiedKFold(n_splits=folds, shuffle=shuffle, random_state=seed))


def outer_splits(ds: Dataset, *, folds: int, repeats: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """The outer CV's (train, test) indices, repeat by repeat (index i: repeat i // folds).

    RepeatedStratifiedKFold / RepeatedKFold (seed) for ungrouped rows; for grouped rows a
    StratifiedGroupKFold / GroupKFold per repeat with seeds ``seed, seed + 1, ...``.
    """
    from sklearn.model_selection import RepeatedKFold, RepeatedStratifiedKFold

    _check_folds(ds, folds)
    y = ds.encoded_y()
    X_dummy = np.zeros((len(y), 1))
    if ds.groups is None:
        cls = RepeatedKFold if ds.task == "regression" else RepeatedStratifiedKFold
        cv = cls(n_splits=folds, n_repeats=repeats, random_state=seed)
        return [(np.asarray(a), np.asarray(b)) for a, b in cv.split(X_dummy, y)]
    groups = ds.groups.to_numpy()
    out = []
    for r in range(repeats):
        cv = make_splitter(ds, folds=folds, seed=seed + r)
        out += [(np.asarray(a), np.asarray(b)) for a, b in cv.split(X_dummy, y, groups)]
    return out


# --------------------------------------------------------------------------------------------
# Nested cross-validation
# --------------------------------------------------------------------------------------------
@dataclass
class Candidate:
    """A model family: an unfitted Pipeline and its grid (parameter names inside the Pipeline)."""

    pipeline: Any
    grid: dict[str, list[Any]] = field(default_factory=dict)


@contextlib.contextmanager
def single_threaded():
    """Cap BLAS and OpenMP pools at one thread while fitting (thread-count-independent sums).

    One thread is also the fast choice here: torch and scikit-learn ship two copies of libgomp,
    and once both are loaded a multi-threaded HistGradientBoosting fit becomes ~30x slower.
    """
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover
        yield
        return
    with threadpool_limits(limits=1):
        yield


def make_search(candidates: Mapping[str, Candidate], task: str, *, inner_folds: int, seed: int,
                grouped: bool = False) -> Any:
    """ONE GridSearchCV over every family and its grid; the inner CV picks, ``refit`` refits.

    The searched estimator is ``Pipeline([("family", <a family's pipeline>)])``; the grid sets
    the ``family`` step to each candidate in turn, with that candidate's settings.
    """
    from sklearn.model_selection import GridSearchCV, GroupKFold, KFold, StratifiedGroupKFold, StratifiedKFold
    from sklearn.pipeline import Pipeline

    if task == "regression":
        inner = (GroupKFold(n_splits=inner_folds, shuffle=True, random_state=seed) if grouped
                 else KFold(n_splits=inner_folds, shuffle=True, random_state=seed))
    else:
        inner = (StratifiedGroupKFold(n_splits=inner_folds, shuffle=True, random_state=seed) if grouped
                 else StratifiedKFold(n_splits=inner_folds, shuffle=True, random_state=seed))
    grid = [{"family": [c.pipeline], **{f"family__{k}": list(v) for k, v in c.grid.items()}}
            for c in candidates.values()]
    first = next(iter(candidates.values())).pipeline
    return GridSearchCV(Pipeline([("family", first)]), grid, scoring=scorers(task)[primary_metric(task)],
                        cv=inner, refit=True, n_jobs=1, error_score="raise")


def family_of(search: Any, candidates: Mapping[str, Candidate]) -> str:
    """Name of the family a fitted search picked."""
    return _family_index(candidates)[search.best_index_]


def _family_index(candidates: Mapping[str, Candidate]) -> list[str]:
    """Family of each row of a search's ``cv_results_``: ParameterGrid enumerates the families'
    grids in order, each grid as a block of ``_grid_size`` rows."""
    return [name for name, c in candidates.items() for _ in range(_grid_size(c))]


def best_settings(search: Any) -> dict[str, Any]:
    """The picked settings, without the family object (JSON-able)."""
    return {k.removeprefix("family__"): v for k, v in search.best_params_.items() if k != "family"}


@dataclass
class NestedResult:
    """What :func:`nested_cv` measured."""

    task: str
    primary_metric: str
    folds: int
    repeats: int
    inner_folds: int
    seed: int
    fold_scores: dict[str, np.ndarray]  # metric -> score per outer fold (repeat-major)
    splits: list[tuple[np.ndarray, np.ndarray]]
    oof: list[np.ndarray]  # per repeat: P(positive) / (n, k) probabilities / predictions
    picks: list[str]  # family picked in each outer fold
    inner_best: dict[str, list[float]]  # family -> its best inner score in each outer fold
    fit_seconds: float
    estimators: list[Any] = field(default_factory=list, repr=False)  # the fitted search of each outer fold

    def picked_pipeline(self, i: int) -> Any:
        """The pipeline (family and settings) that outer fold ``i``'s search picked, fitted."""
        est = self.estimators[i]
        return est.best_estimator_.named_steps["family"] if hasattr(est, "best_estimator_") else est

    @property
    def means(self) -> dict[str, float]:
        return {m: float(np.nanmean(v)) for m, v in self.fold_scores.items()}

    @property
    def stds(self) -> dict[str, float]:
        return {m: float(np.nanstd(v, ddof=1)) if np.isfinite(v).sum() > 1 else float("nan")
                for m, v in self.fold_scores.items()}


def nested_cv(candidates: Mapping[str, Candidate], ds: Dataset, *, folds: int, repeats: int, seed: int,
              n_jobs: int = 1, inner_folds: int = INNER_FOLDS, verbose: bool = True) -> NestedResult:
    """Nested CV: :func:`make_search` scored by ``cross_validate`` on :func:`outer_splits`.

    A single candidate without a grid has nothing to choose: it is scored by ``cross_validate``
    directly (plain repeated CV, no inner search).

    ``n_jobs`` outer folds run at once in separate processes, each single-threaded; the figures
    do not depend on it.
    """
    import joblib
    from sklearn.model_selection import cross_validate

    task = ds.task
    inner_folds = max(2, min(inner_folds, folds))
    splits = outer_splits(ds, folds=folds, repeats=repeats, seed=seed)
    fixed = len(candidates) == 1 and not next(iter(candidates.values())).grid
    # one candidate without a grid: nothing to choose, so no inner search
    search = (next(iter(candidates.values())).pipeline if fixed else
              make_search(candidates, task, inner_folds=inner_folds, seed=seed, grouped=ds.groups is not None))
    y = ds.encoded_y()
    # the search's inner CV needs the groups; a fixed pipeline takes no groups (the outer splits
    # are given, grouped already)
    params = {"groups": ds.groups.to_numpy()} if ds.groups is not None and not fixed else None
    t0 = time.perf_counter()
    with single_threaded(), joblib.parallel_config(backend="loky", inner_max_num_threads=1):
        res = cross_validate(search, ds.X, y, cv=splits, scoring=scorers(task), n_jobs=n_jobs,
                             params=params, return_estimator=True, error_score="raise")
        fitted = res["estimator"]
        n = len(y)
        oof: list[np.ndarray] = []
        for r in range(repeats):
            if task == "regression":
                pred = np.full(n, np.nan)
            else:
                pred = np.full((n, len(ds.classes)), np.nan)
            for i in range(r * folds, (r + 1) * folds):
                _, test = splits[i]
                est = fitted[i]
                if task == "regression":
                    pred[test] = est.predict(ds.X.iloc[test])
                else:
                    pred[test] = _aligned_proba(est, ds.X.iloc[test], len(ds.classes))
            oof.append(pred[:, 1] if task == "binary" else pred)
    seconds = time.perf_counter() - t0
    fold_scores = {}
    for m, name in scorers(task).items():
        v = np.asarray(res[f"test_{m}"], dtype=float)
        fold_scores[m] = -v if name.startswith("neg_") else v
    if fixed:
        picks = [next(iter(candidates))] * len(fitted)
    else:
        picks = [family_of(est, candidates) for est in fitted]
    inner_best: dict[str, list[float]] = {name: [] for name in candidates}
    sign = -1.0 if scorers(task)[primary_metric(task)].startswith("neg_") else 1.0
    owner = np.array(_family_index(candidates))
    for est in ([] if fixed else fitted):
        table = est.cv_results_
        for name in candidates:
            mask = owner == name
            inner_best[name].append(float(sign * np.max(table["mean_test_score"][mask])))
    out = NestedResult(task=task, primary_metric=primary_metric(task), folds=folds, repeats=repeats,
                       inner_folds=inner_folds, seed=seed, fold_scores=fold_scores, splits=splits,
                       oof=oof, picks=picks, inner_best=inner_best, fit_seconds=seconds,
                       estimators=list(fitted))
    if verbose:
        pm = out.primary_metric
        what = ("repeated CV" if fixed else f"nested CV, inner {inner_folds}-fold search over "
                f"{sum(_grid_size(c) for c in candidates.values())} settings of {list(candidates)}")
        log(f"  {what} ({folds} folds x {repeats} repeats): "
            f"{pm} {out.means[pm]:.4f} ± {out.stds[pm]:.4f} ({seconds:.1f} s); picks "
            + ", ".join(f"{k} {picks.count(k)}" for k in candidates if picks.count(k)))
    return out


def _grid_size(c: Candidate) -> int:
    return int(np.prod([len(v) for v in c.grid.values()])) if c.grid else 1


def _aligned_proba(model: Any, X: pd.DataFrame, n_classes: int) -> np.ndarray:
    """predict_proba with columns 0..k-1, also when a training fold lacked a class."""
    proba = np.asarray(model.predict_proba(X), dtype=float)
    fitted = getattr(model, "classes_", None)
    if fitted is not None and len(fitted) != n_classes:
        full = np.zeros((proba.shape[0], n_classes))
        full[:, np.asarray(fitted, dtype=int)] = proba
        proba = full
    return proba


def refit_search(candidates: Mapping[str, Candidate], ds: Dataset, *, folds: int, seed: int,
                 inner_folds: int = INNER_FOLDS) -> tuple[Any, str, dict[str, Any]]:
    """The final model: the same search fitted on every row. Returns (best pipeline, family, settings)."""
    from sklearn.base import clone

    if len(candidates) == 1 and not next(iter(candidates.values())).grid:
        name, c = next(iter(candidates.items()))
        with single_threaded():
            final = clone(c.pipeline).fit(ds.X, ds.encoded_y())
        if getattr(final, "memory", None) is not None:
            final.set_params(memory=None)
        return final, name, {}
    search = make_search(candidates, ds.task, inner_folds=max(2, min(inner_folds, folds)), seed=seed,
                         grouped=ds.groups is not None)
    kwargs = {"groups": ds.groups.to_numpy()} if ds.groups is not None else {}
    with single_threaded():
        search.fit(ds.X, ds.encoded_y(), **kwargs)
    final = search.best_estimator_.named_steps["family"]
    if getattr(final, "memory", None) is not None:
        final.set_params(memory=None)  # a scratch cache folder means nothing to the saved model
    return final, family_of(search, candidates), best_settings(search)
