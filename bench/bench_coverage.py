"""Coverage of the cross-validated 95 % interval of ROC AUC, before and after: a seeded simulation
on ad_data-shaped synthetic data (n 250, p 100, 10 informative features, L1 logistic regression,
5-fold CV x R repeats; :mod:`aimedres.training.coverage`).

"before" is the interval the jobs reported first: a percentile bootstrap of rows of the pooled
out-of-fold predictions, the fold models held fixed. "after" is the one they report now: the
corrected t interval of the fold mean (Nadeau & Bengio, J = K). Also shown: the naive t interval
(folds as independent) and the correction with J = K x R. Coverage is given against the
procedure's expected AUC at the training size (what the fold mean estimates) and against the AUC
of the model fitted on all rows of the replicate. Prints figures, asserts nothing.

    .venv/bin/python bench/bench_coverage.py [--replicates 400] [--repeats 5]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from aimedres.training.coverage import simulate

LABELS = {"bootstrap": "before: row bootstrap of pooled OOF (models fixed)",
          "naive": "naive t, folds independent",
          "corrected_all": "corrected t, J = K x R",
          "corrected": "after: corrected t, J = K (reported)"}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--replicates", type=int, default=400, help="simulated data sets (default 400)")
    parser.add_argument("--repeats", type=int, nargs="+", default=[2, 5], help="CV repeats to try (default 2 5)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    for repeats in args.repeats:
        res = simulate(args.replicates, repeats=repeats, seed=args.seed, bootstrap=True)
        print(f"5-fold x {repeats} repeats, {args.replicates} replicates ({res['seconds']} s); "
              f"target: procedure AUC {res['truth']['procedure']:.3f} at the training size, "
              f"full-data model AUC {res['truth']['model_mean']:.3f} on average")
        for key, label in LABELS.items():
            print(f"  {label:<52} coverage {res[key]:.3f} (of the full-data model: {res[key + '_model']:.3f}), "
                  f"mean width {res['width'][key]:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
