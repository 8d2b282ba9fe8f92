"""The figures a clinical reviewer reads: the interval of the whole procedure, clustered bootstrap
intervals of a fixed model, calibration (GLM slope and intercept with intervals, ICI/E50/E90,
loess), decision curves (net benefit), a threshold chosen inside the inner CV, and the TRIPOD+AI
reporting items (participants by outcome, missing data, events per parameter, Riley's sample size).

Libraries: scipy (t quantiles), statsmodels (the calibration GLM, lowess), scikit-learn
(metrics, ``TunedThresholdClassifierCV``). Net benefit is the two-line formula of Vickers & Elkin
(2006), checked against hand counts in the tests.
"""
from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from aimedres.training.data import log

#: The estimand of every cross-validated figure (headline, interval, subgroups).
ESTIMAND = ("mean over the {j} outer folds ({k} folds x {r} repeats) of the statistic computed on each "
            "outer test fold: the expected performance of the whole procedure (search, refit) trained "
            "on {k1}/{k} of the development rows")
#: How the interval of a cross-validated figure is made.
CI_METHOD_CV = ("corrected repeated-CV t interval (Nadeau & Bengio 2003, for one K-fold run): mean of the "
                "{j} outer-fold values +/- t(0.975, {df}) * sd * sqrt(1/{k} + n_test/n_train), sd over all "
                "{j} folds; the sd spans refits of the whole procedure, the correction the overlap of "
                "training sets, and repeats count as one K-fold run (they average out the split, not the "
                "sampling of the data)")
#: Thresholds of the decision curve.
DECISION_THRESHOLDS = tuple(round(0.05 + 0.01 * i, 2) for i in range(46))  # 0.05 .. 0.50
#: The stated target of the tuned threshold: highest specificity with sensitivity >= this.
TARGET_SENSITIVITY = 0.8
#: Bootstrap resamples (of subjects) for intervals of a fixed model on a fixed test set.
TEST_BOOTSTRAP = 500
#: A test split with fewer subjects than this gets a warning.
MIN_TEST_SUBJECTS = 10


# --------------------------------------------------------------------------------------------
# The interval of the whole procedure
# --------------------------------------------------------------------------------------------
def corrected_t_interval(values: Sequence[float], *, n_train: float, n_test: float, folds: int | None = None,
                         level: float = 0.95) -> tuple[float, float, float]:
    """Mean of the outer-fold values and its corrected t interval.

    ``mean +/- t_{J-1} * sd * sqrt(1/J + n_test/n_train)`` (Nadeau & Bengio 2003): the plain
    ``1/J`` ignores that the training sets of the folds overlap. ``J`` is ``folds`` (the folds of
    ONE repeat: repeating a K-fold CV averages out the split, not the sampling of the data, and
    the coverage simulation of :mod:`aimedres.training.coverage` shows ``J = K x R`` under-covers)
    or, when None, the number of finite values; the sd is over all finite values.
    Returns (mean, lo, hi); NaNs when fewer than two values are finite.
    """
    from scipy import stats

    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    if v.size < 2:
        m = float(v.mean()) if v.size else float("nan")
        return m, float("nan"), float("nan")
    j = min(folds, v.size) if folds else v.size
    half = stats.t.ppf(0.5 + level / 2, j - 1) * v.std(ddof=1) * math.sqrt(1 / j + n_test / n_train)
    return float(v.mean()), float(v.mean() - half), float(v.mean() + half)


def fold_values(splits: Sequence[tuple[np.ndarray, np.ndarray]], folds: int, oof: Sequence[np.ndarray],
                y: np.ndarray, statistic: Callable[[np.ndarray, np.ndarray], Mapping[str, float]],
                rows: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """``statistic(y_test, score_test)`` on every outer test fold (restricted to ``rows``, a mask):
    name -> one value per fold (repeat-major)."""
    out: dict[str, list[float]] = {}
    for i, (_, test) in enumerate(splits):
        r = i // folds
        if rows is not None:
            test = test[rows[test]]
        with warnings.catch_warnings():  # a fold or subgroup with one class: NaN, said in the figures
            warnings.simplefilter("ignore", UserWarning)
            values = statistic(y[test], np.asarray(oof[r])[test]) if len(test) else {}
        for k, v in values.items():
            out.setdefault(k, []).append(float(v))
    return {k: np.asarray(v, dtype=float) for k, v in out.items()}


#: Metrics that are fractions (their intervals are clipped to [0, 1]) and those that are >= 0.
NON_NEGATIVE = frozenset({"rmse", "mae"})
UNBOUNDED = frozenset({"r2"})


def summarise_folds(values: Mapping[str, np.ndarray], *, n_train: float, n_test: float, folds: int | None = None
                    ) -> tuple[dict[str, float], dict[str, list[float]], dict[str, float]]:
    """(means, corrected intervals, sample std) of per-fold values; intervals of fractions are
    clipped to [0, 1], of errors to [0, inf)."""
    means, ci, std = {}, {}, {}
    for k, v in values.items():
        m, lo, hi = corrected_t_interval(v, n_train=n_train, n_test=n_test, folds=folds)
        means[k] = m
        if math.isfinite(lo):
            if k in NON_NEGATIVE:
                lo = max(lo, 0.0)
            elif k not in UNBOUNDED:
                lo, hi = max(lo, 0.0), min(hi, 1.0)
            ci[k] = [lo, hi]
        finite = v[np.isfinite(v)]
        std[k] = float(finite.std(ddof=1)) if finite.size > 1 else float("nan")
    return means, ci, std


# --------------------------------------------------------------------------------------------
# Clustered bootstrap of a fixed model's predictions
# --------------------------------------------------------------------------------------------
def cluster_resamples(groups: np.ndarray | None, n: int, n_boot: int, seed: int) -> list[np.ndarray]:
    """Row indices of ``n_boot`` bootstrap resamples that draw SUBJECTS with replacement (all rows
    of a drawn subject come along); rows are their own subjects when ``groups`` is None."""
    rng = np.random.default_rng([seed, 2025])
    if groups is None:
        return list(rng.integers(0, n, size=(n_boot, n)))
    codes, uniques = _codes(groups)
    members = [np.flatnonzero(codes == g) for g in range(len(uniques))]
    draws = rng.integers(0, len(members), size=(n_boot, len(members)))
    return [np.concatenate([members[g] for g in d]) for d in draws]


def _codes(groups: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    uniques, codes = np.unique(np.asarray(groups).astype(str), return_inverse=True)
    return codes, uniques


def n_subjects(groups: np.ndarray | None, n: int) -> int:
    """Distinct subjects (rows when ``groups`` is None)."""
    return n if groups is None else len(np.unique(np.asarray(groups).astype(str)))


def bootstrap_interval(y: np.ndarray, score: np.ndarray, statistic: Callable[[np.ndarray, np.ndarray],
                       Mapping[str, float]], *, groups: np.ndarray | None = None, seed: int = 0,
                       n_boot: int = TEST_BOOTSTRAP) -> dict[str, list[float]]:
    """95 % percentile intervals of ``statistic(y, score)`` over a subject-level bootstrap."""
    y, score = np.asarray(y), np.asarray(score)
    draws: dict[str, list[float]] = {}
    with warnings.catch_warnings():  # a resample with one class gives NaN, dropped below
        warnings.simplefilter("ignore", UserWarning)
        for idx in cluster_resamples(groups, len(y), n_boot, seed):
            for k, v in statistic(y[idx], score[idx]).items():
                draws.setdefault(k, []).append(v)
    out = {}
    for k, v in draws.items():
        a = np.asarray(v, dtype=float)
        a = a[np.isfinite(a)]
        if a.size:
            out[k] = [float(np.percentile(a, 2.5)), float(np.percentile(a, 97.5))]
    return out


def split_warnings(y_test: np.ndarray, groups: np.ndarray | None, n_classes: int, where: str) -> list[str]:
    """Warnings for a test split that lacks a class or has fewer than :data:`MIN_TEST_SUBJECTS`
    subjects (each also logged)."""
    out = []
    present = len(np.unique(y_test))
    if present < n_classes:
        out.append(f"{where}: {n_classes - present} of {n_classes} classes absent from the test split; "
                   f"metrics over classes (roc_auc, balanced_accuracy) are not comparable")
    subjects = n_subjects(groups, len(y_test))
    if subjects < MIN_TEST_SUBJECTS:
        out.append(f"{where}: only {subjects} subject(s) in the test split (< {MIN_TEST_SUBJECTS}); "
                   f"its figures and intervals are unreliable")
    for w in out:
        log(f"warning: {w}")
    return out


# --------------------------------------------------------------------------------------------
# Calibration
# --------------------------------------------------------------------------------------------
def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(p, dtype=float), 1e-6, 1 - 1e-6)
    return np.log(p / (1 - p))


def calibration_glm(y: np.ndarray, p: np.ndarray, groups: np.ndarray | None = None) -> dict[str, Any]:
    """Calibration slope and intercept with 95 % Wald intervals (statsmodels GLM, binomial/logit).

    Slope: ``logit P(y) = a + b logit(p)``; intercept (calibration-in-the-large): ``a`` in
    ``logit P(y) = a + offset(logit(p))``. With ``groups`` the standard errors are clustered by
    subject (a subject's rows, e.g. its out-of-fold predictions of several repeats, are not
    independent).
    """
    import statsmodels.api as sm

    y = np.asarray(y).astype(float)
    lp = _logit(p)
    nan = {"calibration_slope": float("nan"), "calibration_intercept": float("nan")}
    if len(np.unique(y)) < 2:
        return nan
    fit_kw: dict[str, Any] = {}
    if groups is not None:
        codes, _ = _codes(groups)
        fit_kw = {"cov_type": "cluster", "cov_kwds": {"groups": codes}}
    family = sm.families.Binomial()
    slope = sm.GLM(y, sm.add_constant(lp), family=family).fit(**fit_kw)
    inter = sm.GLM(y, np.ones((len(y), 1)), family=family, offset=lp).fit(**fit_kw)
    s_ci, i_ci = np.asarray(slope.conf_int()), np.asarray(inter.conf_int())
    return {"calibration_slope": float(slope.params[1]), "calibration_slope_ci": [float(s_ci[1, 0]), float(s_ci[1, 1])],
            "calibration_intercept": float(inter.params[0]),
            "calibration_intercept_ci": [float(i_ci[0, 0]), float(i_ci[0, 1])]}


def loess(y: np.ndarray, p: np.ndarray, grid: np.ndarray | None = None, frac: float = 2 / 3) -> np.ndarray:
    """Observed risk smoothed over predicted risk (statsmodels lowess, ``it=0``), at ``grid``
    (default: at ``p`` itself), clipped to [0, 1]."""
    from statsmodels.nonparametric.smoothers_lowess import lowess

    p = np.asarray(p, dtype=float)
    fitted = lowess(np.asarray(y, dtype=float), p, frac=frac, it=0, xvals=p if grid is None else grid)
    return np.clip(np.asarray(fitted, dtype=float), 0.0, 1.0)


def calibration_errors(y: np.ndarray, p: np.ndarray) -> dict[str, float]:
    """ICI, E50 and E90 (Austin & Steyerberg 2019): mean, median and 90th percentile of
    ``|loess(observed | predicted) - predicted|`` over the predictions."""
    p = np.asarray(p, dtype=float)
    gap = np.abs(loess(y, p) - p)
    return {"ici": float(gap.mean()), "e50": float(np.median(gap)), "e90": float(np.percentile(gap, 90))}


def calibration_report(y: np.ndarray, p: np.ndarray, groups: np.ndarray | None = None) -> dict[str, Any]:
    """Brier score, GLM slope/intercept with intervals, ICI/E50/E90 of binary probabilities."""
    from sklearn.metrics import brier_score_loss

    y = np.asarray(y).astype(int)
    out: dict[str, Any] = {"brier": float(brier_score_loss(y, np.asarray(p, dtype=float), labels=[0, 1]))}
    out |= calibration_glm(y, p, groups)
    if len(np.unique(y)) == 2:
        out |= calibration_errors(y, p)
    return out


def loess_band(y: np.ndarray, p: np.ndarray, groups: np.ndarray | None, *, seed: int, n_boot: int = 100,
               points: int = 50) -> dict[str, list[float]]:
    """The loess calibration curve on a grid of predicted risks and its 95 % subject-bootstrap band."""
    y, p = np.asarray(y, dtype=float), np.asarray(p, dtype=float)
    lo, hi = np.percentile(p, [1, 99])
    grid = np.linspace(lo, hi, points)
    curve = loess(y, p, grid)
    boots = np.vstack([loess(y[i], p[i], grid) for i in cluster_resamples(groups, len(y), n_boot, seed)])
    return {"risk": grid.tolist(), "observed": curve.tolist(),
            "lo": np.nanpercentile(boots, 2.5, axis=0).tolist(), "hi": np.nanpercentile(boots, 97.5, axis=0).tolist()}


# --------------------------------------------------------------------------------------------
# Decision curves
# --------------------------------------------------------------------------------------------
def net_benefit(y: np.ndarray, p: np.ndarray, thresholds: Sequence[float] = DECISION_THRESHOLDS
                ) -> dict[str, np.ndarray]:
    """Net benefit of "treat when P >= t" (``TP/n - FP/n * t/(1-t)``) and of treating everyone,
    at each threshold t (Vickers & Elkin 2006); treating no one is 0."""
    y = np.asarray(y).astype(int)
    p = np.asarray(p, dtype=float)
    t = np.asarray(thresholds, dtype=float)
    n = len(y)
    treat = p[None, :] >= t[:, None]
    tp = (treat & (y == 1)[None, :]).sum(1)
    fp = (treat & (y == 0)[None, :]).sum(1)
    odds = t / (1 - t)
    prevalence = y.mean()
    return {"model": tp / n - fp / n * odds, "treat_all": prevalence - (1 - prevalence) * odds}


def _ranges(thresholds: np.ndarray, mask: np.ndarray) -> list[list[float]]:
    """Contiguous runs of ``mask`` as [first, last] thresholds."""
    out: list[list[float]] = []
    run: list[float] = []
    for t, m in zip(thresholds, mask):
        if m:
            run.append(float(t))
        elif run:
            out.append([run[0], run[-1]])
            run = []
    if run:
        out.append([run[0], run[-1]])
    return out


def decision_curve(per_fold: Sequence[tuple[np.ndarray, np.ndarray]], *, n_train: float, n_test: float,
                   folds: int | None = None, thresholds: Sequence[float] = DECISION_THRESHOLDS) -> dict[str, Any]:
    """Net benefit per threshold as the mean over outer test folds (the estimand of the headline),
    with the corrected interval of the model's gain over the better default (treat all / none).

    ``useful`` lists the threshold ranges where that gain is positive, ``useful_clearly`` those
    where its interval lies above 0.
    """
    t = np.asarray(thresholds, dtype=float)
    rows = [net_benefit(y, p, t) for y, p in per_fold]
    model = np.vstack([r["model"] for r in rows])
    treat_all = np.vstack([r["treat_all"] for r in rows])
    gain = model - np.maximum(treat_all, 0.0)
    stats = [corrected_t_interval(gain[:, j], n_train=n_train, n_test=n_test, folds=folds) for j in range(len(t))]
    mean_gain = np.array([s[0] for s in stats])
    gain_lo = np.array([s[1] for s in stats])
    return {
        "thresholds": t.tolist(),
        "net_benefit_model": model.mean(0).tolist(),
        "net_benefit_treat_all": treat_all.mean(0).tolist(),
        "net_benefit_treat_none": [0.0] * len(t),
        "gain_over_default": mean_gain.tolist(),
        "gain_ci": [[s[1], s[2]] for s in stats],
        "useful": _ranges(t, mean_gain > 0),
        "useful_clearly": _ranges(t, np.nan_to_num(gain_lo, nan=-1.0) > 0),
    }


def decision_phrase(dc: Mapping[str, Any]) -> str:
    """One line: where the model adds net benefit over treating all or none."""
    def text(ranges: Sequence[Sequence[float]]) -> str:
        return ", ".join(f"{a:.2f}-{b:.2f}" for a, b in ranges) if ranges else "none"

    lo, hi = dc["thresholds"][0], dc["thresholds"][-1]
    return (f"decision curve {lo:.2f}-{hi:.2f}: net benefit above treat-all and treat-none at thresholds "
            f"{text(dc['useful'])} (interval above 0 at {text(dc['useful_clearly'])})")


# --------------------------------------------------------------------------------------------
# A threshold chosen inside the inner CV
# --------------------------------------------------------------------------------------------
def sensitivity_constrained_specificity(target: float = TARGET_SENSITIVITY) -> Callable[..., float]:
    """A score for ``TunedThresholdClassifierCV``: the specificity when sensitivity >= ``target``,
    else ``sensitivity - 1`` (negative, so any threshold meeting the target wins)."""
    def score(y_true: np.ndarray, y_pred: np.ndarray) -> float:
        y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
        pos, neg = y_true == 1, y_true == 0
        sens = float((y_pred[pos] == 1).mean()) if pos.any() else 0.0
        spec = float((y_pred[neg] == 0).mean()) if neg.any() else 0.0
        return spec if sens >= target else sens - 1.0

    return score


def tuned_threshold(estimator: Any, X: Any, y: np.ndarray, *, inner_folds: int, seed: int,
                    groups: np.ndarray | None = None, target: float = TARGET_SENSITIVITY) -> float:
    """The threshold on P(positive) that scikit-learn's ``TunedThresholdClassifierCV`` picks on an
    inner CV of (X, y) for "highest specificity with sensitivity >= target"; ``estimator`` keeps its
    settings (the outer fold's pick). The tuner's refit is thrown away: only the threshold is used."""
    from sklearn.base import clone
    from sklearn.metrics import make_scorer
    from sklearn.model_selection import (
        StratifiedGroupKFold,
        StratifiedKFold,
        TunedThresholdClassifierCV,
    )

    cv = (StratifiedGroupKFold(n_splits=inner_folds, shuffle=True, random_state=seed) if groups is not None
          else StratifiedKFold(n_splits=inner_folds, shuffle=True, random_state=seed))
    splits = list(cv.split(np.zeros(len(y)), y, groups))
    tuner = TunedThresholdClassifierCV(clone(estimator), scoring=make_scorer(sensitivity_constrained_specificity(target)),
                                       cv=splits, refit=True, thresholds=200, response_method="predict_proba")
    tuner.fit(X, y)
    return float(tuner.best_threshold_)


# --------------------------------------------------------------------------------------------
# TRIPOD+AI reporting items
# --------------------------------------------------------------------------------------------
def riley_sample_size(*, parameters: int, prevalence: float, r2_cs: float, shrinkage: float = 0.9,
                      delta: float = 0.05, margin: float = 0.05) -> dict[str, Any]:
    """Riley et al. (2020, BMJ 368:m441) minimum sample size of a binary-outcome prediction model.

    (i) expected uniform shrinkage >= ``shrinkage``: ``n = p / ((S - 1) ln(1 - R2cs / S))``;
    (ii) optimism in Nagelkerke's R2 <= ``delta``: ``S_ii = R2cs / (R2cs + delta * max R2cs)``,
    then (i) with ``S_ii``; (iii) the overall risk within ``margin``: ``(1.96 / margin)^2 phi(1 - phi)``.
    ``max R2cs = 1 - exp(2 (phi ln phi + (1 - phi) ln(1 - phi)))``. Returns each and their maximum.
    """
    phi = prevalence
    max_r2 = 1 - math.exp(2 * (phi * math.log(phi) + (1 - phi) * math.log(1 - phi)))
    r2 = min(max(r2_cs, 1e-6), max_r2 * 0.999)

    def by_shrinkage(s: float) -> float:
        return parameters / ((s - 1) * math.log(1 - r2 / s))

    s_ii = r2 / (r2 + delta * max_r2)
    n = {"shrinkage": by_shrinkage(shrinkage), "optimism": by_shrinkage(s_ii),
         "overall_risk": (1.96 / margin) ** 2 * phi * (1 - phi)}
    need = math.ceil(max(n.values()))
    return {"criteria": {k: math.ceil(v) for k, v in n.items()}, "required_n": need,
            "required_events": math.ceil(need * phi), "r2_cs": r2, "max_r2_cs": max_r2}


def cox_snell_r2(y: np.ndarray, p: np.ndarray) -> float:
    """Cox-Snell R2 of probabilities ``p``: ``1 - exp(-LR / n)``, LR the likelihood-ratio statistic
    against the intercept-only model."""
    y = np.asarray(y).astype(float)
    p = np.clip(np.asarray(p, dtype=float), 1e-9, 1 - 1e-9)
    phi = y.mean()
    ll = np.sum(y * np.log(p) + (1 - y) * np.log(1 - p))
    ll0 = len(y) * (phi * math.log(phi) + (1 - phi) * math.log(1 - phi))
    return float(1 - math.exp(-2 * (ll - ll0) / len(y)))


def sample_size_item(y: np.ndarray, p_oof: np.ndarray, parameters: int, where: str) -> dict[str, Any]:
    """Events per parameter and Riley's minimum sample size (anticipated R2cs from the out-of-fold
    predictions), with a warning when the data holds less than half of it."""
    y = np.asarray(y).astype(int)
    events = int(min(y.sum(), len(y) - y.sum()))
    r2 = cox_snell_r2(y, p_oof)
    riley = riley_sample_size(parameters=parameters, prevalence=float(y.mean()), r2_cs=r2)
    out = {"rows": len(y), "events": events, "parameters": int(parameters),
           "events_per_parameter": round(events / max(parameters, 1), 2),
           "r2_cs_source": "out-of-fold predictions" if r2 > 0 else "none (out-of-fold R2cs <= 0; floor used)",
           "riley": riley}
    if len(y) < riley["required_n"] / 2:
        out["warning"] = (f"{where}: {len(y)} rows, far below Riley's minimum of {riley['required_n']} "
                          f"({events / max(parameters, 1):.1f} events per parameter): expect overfitting "
                          f"and unstable figures")
        log(f"warning: {out['warning']}")
    return out


def participants_by_outcome(y_labels: Sequence[Any], classes: Sequence[str]) -> dict[str, int]:
    """Rows per class."""
    values = [str(v) for v in y_labels]
    return {c: int(sum(v == c for v in values)) for c in classes}


def missing_data(X: Any) -> dict[str, Any]:
    """Missing values per column (only columns with any) and how they are handled."""
    counts = X.isna().sum()
    return {"per_column": {str(k): int(v) for k, v in counts.items() if v},
            "rows_with_any": int(X.isna().any(axis=1).sum()),
            "handling": "median (numeric) / most-frequent (categorical) imputation fitted inside each "
                        "training fold; no missingness indicator"}


def linear_coefficients(model: Any) -> dict[str, float] | None:
    """Intercept and coefficients (on the preprocessed, standardised scale) of a fitted
    ``Pipeline(preprocess, model)`` whose model is linear; None otherwise."""
    est = getattr(model, "named_steps", {}).get("model") if hasattr(model, "named_steps") else None
    coef = getattr(est, "coef_", None)
    if coef is None or np.asarray(coef).ndim > 2 or np.asarray(coef).reshape(-1).size == 0:
        return None
    coef = np.asarray(coef, dtype=float)
    if coef.ndim == 2 and coef.shape[0] > 1:
        return None
    try:
        names = list(model[:-1].get_feature_names_out())
    except (AttributeError, TypeError, ValueError):  # a transformer without feature names
        names = [f"x{i}" for i in range(coef.reshape(-1).size)]
    out = {"(intercept)": float(np.asarray(getattr(est, "intercept_", 0.0)).reshape(-1)[0])}
    out |= {str(n): float(c) for n, c in zip(names, coef.reshape(-1)) if c != 0.0}
    return out
