"""Coverage simulation of the cross-validated interval, on ad_data-shaped synthetic data.

Each replicate draws ``n`` rows with ``p`` standard-normal features, 10 of them informative
(logit = 0.6 * (x1 - x2 + x3 - ...) - 1, about 30 % positives, like ad_data's 91 of 333), runs a
repeated stratified K-fold CV of an L1 logistic regression (the alzheimers job's family) and
forms, for the fold-mean ROC AUC:

* ``corrected``: the interval the jobs report (:func:`aimedres.training.clinical.corrected_t_interval`);
* ``naive``: the t interval with the K x R folds taken as independent (``sd / sqrt(J)``);
* ``corrected_all``: Nadeau & Bengio's correction with ``J = K x R`` (the repeats counted as
  independent folds);
* ``bootstrap``: the interval the jobs reported before (percentile bootstrap of rows of the pooled
  out-of-fold predictions, AUC averaged over repeats), with the fold models held fixed.

Targets: ``procedure`` -- the expected AUC of the procedure at the training size of a fold (what
the fold mean estimates: the mean over replicates of the AUC, on a large independent sample, of
the model fitted on ``n (K-1)/K`` rows); ``model`` -- the AUC of the model fitted on all ``n``
rows of that replicate (the shipped model's own figure). Used by the test suite (fast) and by
``bench/bench_coverage.py`` (more replicates).
"""
from __future__ import annotations

import time
from typing import Any

import numpy as np

from aimedres.training.clinical import corrected_t_interval

INFORMATIVE = 10
EFFECT = 0.6
OFFSET = -1.0
C = 0.1  # inverse L1 strength (inside the alzheimers job's grid)


def _draw(rng: np.random.Generator, m: int, p: int) -> tuple[np.ndarray, np.ndarray]:
    beta = np.zeros(p)
    beta[:INFORMATIVE] = EFFECT * np.where(np.arange(INFORMATIVE) % 2 == 0, 1.0, -1.0)
    X = rng.normal(size=(m, p))
    y = (rng.uniform(size=m) < 1 / (1 + np.exp(-(X @ beta + OFFSET)))).astype(int)
    return X, y


def _fit(X: np.ndarray, y: np.ndarray) -> Any:
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(C=C, l1_ratio=1.0, solver="liblinear").fit(X, y)


def _auc(y: np.ndarray, s: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(y, s))


def _row_bootstrap(y: np.ndarray, oof: np.ndarray, rng: np.random.Generator, n_boot: int) -> tuple[float, float]:
    """Percentile interval of the pooled out-of-fold AUC (mean over repeats) over row resamples."""
    from scipy.stats import rankdata

    idx = rng.integers(0, len(y), size=(n_boot, len(y)))
    yy = y[idx]
    n1 = yy.sum(1)
    n0 = yy.shape[1] - n1
    values = []
    for s in oof:
        ranks = rankdata(s[idx], axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            values.append(((ranks * yy).sum(1) - n1 * (n1 + 1) / 2) / (n1 * n0))
    v = np.nanmean(np.vstack(values), axis=0)
    return float(np.nanpercentile(v, 2.5)), float(np.nanpercentile(v, 97.5))


def simulate(replicates: int = 120, *, repeats: int = 2, folds: int = 5, n: int = 250, p: int = 100,
             seed: int = 0, test_rows: int = 2000, bootstrap: bool = False, n_boot: int = 200) -> dict[str, Any]:
    """Coverage of each interval (see the module docstring) over ``replicates`` seeded replicates.

    Returns ``{"corrected": share, "naive": share, ["bootstrap": share,] "corrected_model": share,
    ..., "width": {...}, "truth": {...}, "seconds": s}``: a share is how often the interval holds
    the ``procedure`` target; ``*_model`` how often it holds the replicate's ``model`` target.
    """
    from scipy import stats
    from sklearn.model_selection import RepeatedStratifiedKFold

    t0 = time.perf_counter()
    X_big, y_big = _draw(np.random.default_rng([seed, 1]), test_rows, p)
    n_train = n * (folds - 1) / folds
    rows = []
    for r in range(replicates):
        rng = np.random.default_rng([seed, 2, r])
        X, y = _draw(rng, n, p)
        cv = RepeatedStratifiedKFold(n_splits=folds, n_repeats=repeats, random_state=r)
        aucs, oof = [], np.zeros((repeats, n))
        for i, (a, b) in enumerate(cv.split(X, y)):
            s = _fit(X[a], y[a]).decision_function(X[b])
            aucs.append(_auc(y[b], s))
            oof[i // folds, b] = s
        mean, lo, hi = corrected_t_interval(aucs, n_train=n_train, n_test=n / folds, folds=folds)
        j = len(aucs)
        half = stats.t.ppf(0.975, j - 1) * np.std(aucs, ddof=1) / np.sqrt(j)
        _, lo_all, hi_all = corrected_t_interval(aucs, n_train=n_train, n_test=n / folds)
        row = {"corrected": (lo, hi), "naive": (mean - half, mean + half), "corrected_all": (lo_all, hi_all),
               "at_train_size": _auc(y_big, _fit(X[: int(n_train)], y[: int(n_train)]).decision_function(X_big)),
               "model": _auc(y_big, _fit(X, y).decision_function(X_big))}
        if bootstrap:
            row["bootstrap"] = _row_bootstrap(y, oof, rng, n_boot)
        rows.append(row)
    procedure = float(np.mean([row["at_train_size"] for row in rows]))
    methods = ["corrected", "corrected_all", "naive"] + (["bootstrap"] if bootstrap else [])
    out: dict[str, Any] = {}
    for m in methods:
        out[m] = float(np.mean([row[m][0] <= procedure <= row[m][1] for row in rows]))
        out[f"{m}_model"] = float(np.mean([row[m][0] <= row["model"] <= row[m][1] for row in rows]))
    out["width"] = {m: float(np.mean([row[m][1] - row[m][0] for row in rows])) for m in methods}
    out["truth"] = {"procedure": procedure, "model_mean": float(np.mean([row["model"] for row in rows]))}
    out["replicates"], out["repeats"], out["folds"] = replicates, repeats, folds
    out["seconds"] = round(time.perf_counter() - t0, 1)
    return out
