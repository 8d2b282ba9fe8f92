"""ALS progression: regression of the ALSFRS-R slope (points per month) from first-visit features.

No real ALS data ships in any package, so by default this trains on a seeded SYNTHETIC cohort
(:func:`aimedres.training.synthetic.als_cohort`, schema documented there) and says so in the
log, in metrics.json (``data.synthetic: true``) and in the data source string.  ``--data PATH``
trains on a real CSV with the same columns instead (never a silent fallback).

Because the synthetic target is a known function plus Gaussian noise of known SD, metrics.json
also reports the noise floor under ``data.noise_floor`` (the best achievable RMSE and R2) and
``data.oracle_on_sample`` (the true function's RMSE and R2 on the generated cohort).

Candidates (preprocessing fitted inside each fold), searched by nested CV (an inner 3-fold search
picks the family and its settings, an outer K-fold x R-repeat CV scores that procedure):
  elastic_net        ElasticNet, alpha and l1 ratio searched
  gradient_boosting  HistGradientBoostingRegressor, --epochs boosting rounds, leaf count searched

A seeded 20 % of the cohort (``--test-fraction``) is held out before any choice and scored once
by the final model (metrics.json ``test``). Primary metric: rmse (points/month, lower is better);
mae and r2 are reported too, each the mean over outer test folds with a corrected repeated-CV t
interval; predictions.csv and figures/predicted_vs_observed.png (watermarked SYNTHETIC DATA on
the generated cohort) hold the out-of-fold predictions.

    python src/aimedres/training/train_als.py                      # synthetic cohort, 1,000 rows
    python src/aimedres/training/train_als.py --data my_als.csv    # real data, same columns
    python src/aimedres/training/train_als.py --epochs 1 --folds 2 # smoke run
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make `aimedres` importable from src/
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import pandas as pd

from aimedres.training import common, synthetic

JOB = "als"
# ---- settings (defaults give good models; each is a flag) --------------------------------------
DEFAULT_EPOCHS = 300  # boosting rounds of gradient boosting / max epochs of the MLP (early-stopped)
DEFAULT_FOLDS = 5  # K-fold cross-validation (shuffled KFold: the target is continuous)
DEFAULT_N_SAMPLES = 1000  # patients in the synthetic cohort
FEATURES = [c for c in synthetic.ALS_COLUMNS if c != synthetic.ALS_TARGET]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command line of the ALS job."""
    parser = argparse.ArgumentParser(
        description="ALS progression (ALSFRS-R slope, points/month) regression. Default data: a seeded "
        "SYNTHETIC cohort (no real ALS data ships); --data for a real CSV with the same columns.",
    )
    common.add_common_args(parser, epochs=DEFAULT_EPOCHS, folds=DEFAULT_FOLDS)
    parser.add_argument(
        "--data",
        type=Path,
        default=None,
        metavar="CSV",
        help="real data: a CSV with a header and the columns "
        + ", ".join(synthetic.ALS_COLUMNS)
        + " (extra columns are ignored). Default: the synthetic cohort.",
    )
    parser.add_argument(
        "--n-samples",
        type=int,
        default=None,
        metavar="N",
        help=f"patients in the synthetic cohort (>= 20, default {DEFAULT_N_SAMPLES}); "
        "not allowed with --data",
    )
    args = parser.parse_args(argv)
    if args.data is not None and args.n_samples is not None:
        parser.error("--n-samples sizes the synthetic cohort; it cannot be combined with --data")
    if args.n_samples is None:
        args.n_samples = DEFAULT_N_SAMPLES
    if args.n_samples < 20:
        parser.error(f"--n-samples must be >= 20, got {args.n_samples}")
    return args


def load_data(args: argparse.Namespace) -> tuple[common.Dataset, dict]:
    """The data set and its metrics.json ``data`` block (with the noise floor when synthetic).

    Raises:
        DataError: ``--data`` is missing, unreadable, lacks a column or has a non-numeric numeric column.
    """
    if args.data is not None:
        ds = common.load_csv(
            args.data,
            target=synthetic.ALS_TARGET,
            name="als",
            task="regression",
            expected_features=FEATURES,
        )
        for col in synthetic.ALS_NUMERIC:
            if not pd.api.types.is_numeric_dtype(ds.X[col]):
                raise common.DataError(
                    f"{args.data}: column {col!r} must be numeric (found e.g. {ds.X[col].dropna().iloc[0]!r}); "
                    f"expected columns: {synthetic.ALS_COLUMNS}"
                )
        for col, levels in synthetic.ALS_CATEGORICAL.items():
            unknown = sorted(set(ds.X[col].dropna().astype(str)) - set(levels))
            if unknown:
                common.log(f"note: {args.data}: column {col!r} has values outside {levels}: {unknown}")
        common.log(f"real data: {ds.source} ({len(ds.X)} rows)")
        return ds, ds.info()

    frame = synthetic.als_cohort(args.n_samples, args.seed)
    source = f"synthetic:{synthetic.ALS_GENERATOR}(n={args.n_samples},seed={args.seed})"
    ds = common.dataset_from_frame(
        frame,
        name="als_cohort",
        target=synthetic.ALS_TARGET,
        source=source,
        task="regression",
        synthetic=True,
        expected_features=FEATURES,
    )
    floor = synthetic.als_noise_floor()
    banner = (
        f"SYNTHETIC DATA: {source} -- a generated ALS cohort, not patients (no real ALS data ships); "
        f"noise floor: best achievable rmse {floor['rmse']:.4f}, r2 {floor['r2']:.4f}. "
        "Use --data CSV for real data."
    )
    common.log(banner)
    data = ds.info() | {
        "generator": synthetic.ALS_GENERATOR,
        "noise_sd": synthetic.ALS_NOISE_SD,
        "noise_floor": floor,
        "oracle_on_sample": synthetic.als_oracle(frame),
    }
    return ds, data


def build_candidates(X: pd.DataFrame, *, epochs: int, seed: int) -> dict[str, common.Candidate]:
    """The candidate families: Pipelines (feature derivation -> fold-fitted preprocessing -> model)
    with their grids."""
    from sklearn.ensemble import HistGradientBoostingRegressor
    from sklearn.linear_model import ElasticNet
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import FunctionTransformer

    sample = synthetic.add_delta_frs(X.head(50))

    def pipe(model, *, scale: bool = True) -> Pipeline:
        # add_delta_frs lives in an importable module so the saved pipeline unpickles anywhere.
        return Pipeline(
            [
                ("derive", FunctionTransformer(synthetic.add_delta_frs)),
                ("prep", common.make_preprocessor(sample, scale=scale)),
                ("model", model),
            ]
        )

    return {
        "elastic_net": common.Candidate(
            pipe(ElasticNet(max_iter=10000, random_state=seed)),
            {"model__alpha": [0.001, 0.01, 0.1], "model__l1_ratio": [0.2, 1.0]},
        ),
        "gradient_boosting": common.Candidate(
            pipe(
                HistGradientBoostingRegressor(
                    max_iter=epochs,
                    learning_rate=0.05,
                    min_samples_leaf=20,
                    l2_regularization=1.0,
                    early_stopping=False,
                    random_state=seed,
                ),
                scale=False,
            ),
            {"model__max_leaf_nodes": [4, 8]},
        ),
    }


def train(args: argparse.Namespace) -> dict:
    """Nested CV of the candidates, refit of the search on all rows, outputs; return their paths."""
    started = time.time()
    full, data = load_data(args)
    ds, test, how = common.development_and_test(full, seed=args.seed, fraction=args.test_fraction)
    candidates = build_candidates(ds.X, epochs=args.epochs, seed=args.seed)
    common.log(
        f"{JOB}: {len(ds.X)} rows, {ds.X.shape[1]} features; nested CV {args.folds} folds x "
        f"{args.repeats} repeats, boosting rounds {args.epochs}, seed {args.seed}, n_jobs {args.n_jobs}"
    )
    nested = common.nested_cv(candidates, ds, folds=args.folds, repeats=args.repeats, seed=args.seed,
                              n_jobs=args.n_jobs)
    if ds.synthetic:
        floor = data["noise_floor"]
        m = nested.means
        common.log(
            f"nested CV: rmse {m['rmse']:.4f} vs floor {floor['rmse']:.4f}; "
            f"r2 {m['r2']:.4f} vs ceiling {floor['r2']:.4f}"
        )
    return common.write_tabular_job(JOB, args, ds, candidates, nested, started=started, data=data,
                                    test=test, full=full, test_how=how)


def main(argv: list[str] | None = None) -> int:
    """Entry point: parse flags, train, write outputs."""
    train(parse_args(argv))
    return 0


if __name__ == "__main__":
    common.run(main)
