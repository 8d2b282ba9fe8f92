"""Models: preprocessing fitted inside each fold, and the candidate families with their grids.

Every candidate is a :class:`~aimedres.training.evaluation.Candidate`: an unfitted Pipeline
(``preprocess`` -> ``model``) and a small grid of settings that the inner CV of the nested CV
searches. No setting is tuned by looking at the outer folds.
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import pandas as pd

from aimedres.training.data import Dataset
from aimedres.training.evaluation import Candidate

#: Boosting defaults shared by the jobs (``max_iter`` is ``--epochs``).
BOOSTING_DEFAULTS = {"learning_rate": 0.05, "max_depth": 3, "min_samples_leaf": 10, "early_stopping": False}


def make_preprocessor(X: pd.DataFrame, *, scale: bool = True, power: bool = False) -> Any:
    """A ColumnTransformer for ``X``'s columns, to be fitted inside each fold.

    Numeric columns: median imputation (+ standard scaling when ``scale``; with ``power`` a
    Yeo-Johnson power transform that also standardises, for right-skewed measurements). Other columns
    (strings, categories, booleans): most-frequent imputation and one-hot encoding that ignores
    categories unseen in the training fold.
    """
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, PowerTransformer, StandardScaler

    numeric = [c for c in X.columns if pd.api.types.is_numeric_dtype(X[c]) and not pd.api.types.is_bool_dtype(X[c])]
    categorical = [c for c in X.columns if c not in numeric]
    num_steps: list[tuple[str, Any]] = [("impute", SimpleImputer(strategy="median"))]
    if power:
        num_steps.append(("power", PowerTransformer(method="yeo-johnson", standardize=True)))
    elif scale:
        num_steps.append(("scale", StandardScaler()))
    transformers: list[tuple[str, Any, list[str]]] = []
    if numeric:
        transformers.append(("num", Pipeline(num_steps), numeric))
    if categorical:
        transformers.append((
            "cat",
            Pipeline([
                ("impute", SimpleImputer(strategy="most_frequent")),
                ("onehot", OneHotEncoder(handle_unknown="ignore", sparse_output=False)),
            ]),
            categorical,
        ))
    return ColumnTransformer(transformers, remainder="drop", verbose_feature_names_out=False)


_CACHE_DIR: str | None = None


def preprocessing_cache() -> str:
    """A per-process scratch folder for Pipeline(memory=...), removed at exit.

    A grid search refits the same preprocessing on the same inner fold once per setting of the
    model; with ``memory`` scikit-learn fits it once and reuses it (worth it for the slow
    Yeo-Johnson fits).
    """
    global _CACHE_DIR
    if _CACHE_DIR is None:
        import atexit
        import shutil
        import tempfile

        _CACHE_DIR = tempfile.mkdtemp(prefix="aimedres-prep-")
        atexit.register(shutil.rmtree, _CACHE_DIR, True)
    return _CACHE_DIR


def make_model_pipeline(X: pd.DataFrame, estimator: Any, *, scale: bool = True, power: bool = False,
                        steps: Sequence[tuple[str, Any]] = ()) -> Any:
    """``Pipeline([preprocess, *steps, model])`` for the columns of ``X`` (all fitted per fold).

    With ``power`` the fitted preprocessing is cached (:func:`preprocessing_cache`).
    """
    from sklearn.pipeline import Pipeline

    return Pipeline([("preprocess", make_preprocessor(X, scale=scale, power=power)), *steps,
                     ("model", estimator)], memory=preprocessing_cache() if power else None)


def logistic(C: float = 1.0, *, l1: bool = False, seed: int = 0) -> Any:
    """Logistic regression; ``l1`` gives the lasso (liblinear), else L2 (lbfgs).

    The penalty is set through ``l1_ratio`` (0 = L2, 1 = L1), whose meaning without ``penalty``
    dates from scikit-learn 1.8 (hence the lower bound in pyproject.toml); before 1.8 the same
    call silently trained L2.
    """
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(C=C, l1_ratio=1.0 if l1 else 0.0, solver="liblinear" if l1 else "lbfgs",
                              max_iter=5000, random_state=seed)


def standard_candidates(
    ds: Dataset,
    *,
    epochs: int,
    seed: int,
    C_grid: Sequence[float] = (0.01, 0.03, 0.1, 0.3, 1.0),
    l1: bool = False,
    power_transform: bool = False,
    boosting: Mapping[str, Any] | None = None,
    boosting_grid: Mapping[str, Sequence[Any]] | None = None,
    include: Sequence[str] = ("logistic_regression", "gradient_boosting"),
) -> dict[str, Candidate]:
    """The project's standard candidate families for a tabular data set.

    Classification: ``logistic_regression`` (grid over ``C``; L1 with ``l1``, else L2),
    ``gradient_boosting`` (HistGradientBoosting, ``max_iter = epochs``; grid ``boosting_grid``,
    default depth 2 or 3) and, when named in ``include``, ``ensemble`` (soft vote of the two, grid
    over the linear ``C``) and ``mlp`` (the torch MLP of :mod:`~aimedres.training.torch_tabular`,
    ``epochs`` with early stopping on a split of the training fold; no grid). The torch MLP is
    used instead of scikit-learn's MLPClassifier because it scored higher on the same folds
    (5-fold x 2 repeats, seed 42: ad_data 0.863 vs 0.743, Pima 0.851 vs 0.797 ROC AUC). Regression: ``ridge`` (grid over ``alpha = 1/C``) and
    ``gradient_boosting`` (regressor). Every random_state is ``seed``.
    """
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
    from sklearn.linear_model import Ridge

    gb = dict(BOOSTING_DEFAULTS) | dict(boosting or {})
    gb_grid = {f"model__{k}": list(v) for k, v in (boosting_grid or {"max_depth": [2, 3]}).items()}
    regression = ds.task == "regression"
    out: dict[str, Candidate] = {}
    for family in include:
        if family in ("logistic_regression", "ridge"):
            if regression:
                out["ridge"] = Candidate(make_model_pipeline(ds.X, Ridge(), power=power_transform),
                                         {"model__alpha": [1.0 / c for c in C_grid]})
            else:
                out["logistic_regression"] = Candidate(
                    make_model_pipeline(ds.X, logistic(l1=l1, seed=seed), power=power_transform),
                    {"model__C": list(C_grid)})
        elif family == "gradient_boosting":
            cls = HistGradientBoostingRegressor if regression else HistGradientBoostingClassifier
            out["gradient_boosting"] = Candidate(
                make_model_pipeline(ds.X, cls(max_iter=epochs, random_state=seed, **gb), scale=False), gb_grid)
        elif family == "mlp":
            from aimedres.training.torch_tabular import TorchMLPClassifier, TorchMLPRegressor

            cls = TorchMLPRegressor if regression else TorchMLPClassifier
            out["mlp"] = Candidate(make_model_pipeline(ds.X, cls(
                hidden_layer_sizes=(64, 32), epochs=epochs, weight_decay=1e-4, patience=10,
                random_state=seed, n_jobs=1)))
        elif family == "ensemble" and not regression:
            from sklearn.ensemble import VotingClassifier

            vote = VotingClassifier([
                ("linear", logistic(l1=l1, seed=seed)),
                ("boosting", HistGradientBoostingClassifier(max_iter=epochs, random_state=seed, **gb)),
            ], voting="soft")
            out["ensemble"] = Candidate(make_model_pipeline(ds.X, vote, power=power_transform),
                                        {"model__linear__C": list(C_grid)})
        else:
            raise ValueError(f"unknown model family {family!r}")
    return out
