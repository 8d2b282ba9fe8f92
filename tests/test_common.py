"""Unit tests of the shared training module (aimedres.training.common) and the torch MLP."""
from __future__ import annotations

import argparse
import json
import math
import pickle
import time

import numpy as np
import pandas as pd
import pytest
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline

from aimedres.training import common
from aimedres.training.common import DataError, Dataset
from fakejobs import CONTRACT_KEYS, DATA_KEYS



def toy_dataset(n: int = 60, seed: int = 0, task: str = "binary") -> Dataset:
    """A small mixed-type data set with signal in x1 and a categorical column."""
    rng = np.random.default_rng(seed)
    x1 = rng.normal(size=n)
    x2 = rng.normal(size=n)
    cat = rng.choice(["a", "b", "c"], size=n)
    X = pd.DataFrame({"x1": x1, "x2": x2, "cat": cat})
    X.loc[3, "x2"] = np.nan
    if task == "regression":
        y = pd.Series(2 * x1 + rng.normal(scale=0.5, size=n), name="target")
        return Dataset("toy", X, y, "regression", "test:toy")
    y = pd.Series(np.where(x1 + rng.normal(scale=0.7, size=n) > 0, "sick", "well"), name="status")
    return Dataset("toy", X, y, "binary", "test:toy", positive_label="sick")


# ---------------------------------------------------------------- metric definitions
def test_binary_metrics_match_hand_computed_values():
    # y:     0    0    1     1      P(pos): 0.1 0.4 0.35 0.8
    # ROC AUC: pairs (pos, neg) ranked right: (0.35>0.1) (0.35<0.4) (0.8>0.1) (0.8>0.4) -> 3/4
    # predictions (argmax): 0 0 0 1 -> accuracy 3/4; recall neg 1, pos 1/2 -> balanced 3/4
    # F1 neg: precision 2/3, recall 1 -> 0.8; F1 pos: precision 1, recall 1/2 -> 2/3; macro 11/15
    proba = np.array([[0.9, 0.1], [0.6, 0.4], [0.65, 0.35], [0.2, 0.8]])
    m = common.classification_metrics(["no", "no", "yes", "yes"], proba, ["no", "yes"])
    assert m["roc_auc"] == pytest.approx(0.75)
    assert m["accuracy"] == pytest.approx(0.75)
    assert m["balanced_accuracy"] == pytest.approx(0.75)
    assert m["f1_macro"] == pytest.approx(11 / 15)
    assert set(m) == set(common.CLASSIFICATION_METRICS)


def test_binary_roc_auc_ranks_the_positive_class_column():
    # Swapping the class order means column 1 is now P("no"): the AUC flips to 1 - 0.75.
    proba = np.array([[0.1, 0.9], [0.4, 0.6], [0.35, 0.65], [0.8, 0.2]])
    m = common.classification_metrics(["no", "no", "yes", "yes"], proba, ["yes", "no"])
    assert m["roc_auc"] == pytest.approx(0.75)
    one_d = common.classification_metrics([0, 0, 1, 1], np.array([0.1, 0.4, 0.35, 0.8]), [0, 1])
    assert one_d["roc_auc"] == pytest.approx(0.75)


def test_multiclass_roc_auc_is_one_vs_rest_macro():
    y = [0, 1, 2, 0, 1, 2]
    proba = np.array([
        [0.7, 0.2, 0.1],
        [0.2, 0.5, 0.3],
        [0.1, 0.3, 0.6],
        [0.3, 0.4, 0.3],   # class 0 scored below a class-1 row -> class-0 AUC < 1
        [0.1, 0.8, 0.1],
        [0.2, 0.2, 0.6],
    ])
    # class 0 vs rest: positives 0.7, 0.3; negatives 0.2 0.1 0.1 0.2 -> all 8 pairs right -> 1.0
    # class 1 vs rest: positives 0.5, 0.8; negatives 0.2 0.3 0.4 0.2 -> 1.0
    # class 2 vs rest: positives 0.6, 0.6; negatives 0.1 0.3 0.3 0.1 -> 1.0
    m = common.classification_metrics(y, proba, [0, 1, 2])
    assert m["roc_auc"] == pytest.approx(1.0)
    proba[3] = [0.1, 0.1, 0.8]    # a class-0 row now looks most like class 2
    # class 0: positives 0.7, 0.1 vs negatives 0.2 0.1 0.1 0.2: 0.7 wins 4; 0.1 loses 2, ties 2 -> (4+1)/8
    # class 1: positives 0.5, 0.8 vs negatives 0.2 0.3 0.1 0.2 -> 1.0
    # class 2: positives 0.6, 0.6 vs negatives 0.1 0.3 0.8 0.1 -> 6/8
    expected = (5 / 8 + 1.0 + 6 / 8) / 3
    assert common.classification_metrics(y, proba, [0, 1, 2])["roc_auc"] == pytest.approx(expected)


def test_regression_metrics_match_hand_computed_values():
    m = common.regression_metrics([1.0, 2.0, 3.0], [1.0, 2.0, 5.0])
    assert m["rmse"] == pytest.approx(math.sqrt(4 / 3))
    assert m["mae"] == pytest.approx(2 / 3)
    assert m["r2"] == pytest.approx(1 - 4 / 2)   # SS_res 4, SS_tot 2


def test_metrics_are_fractions_not_percentages():
    rng = np.random.default_rng(1)
    p = rng.uniform(size=50)
    y = rng.integers(0, 2, size=50)
    m = common.classification_metrics(y, p, [0, 1])
    assert all(0.0 <= v <= 1.0 for v in m.values())


# ---------------------------------------------------------------- fold-local preprocessing
_FITTED_ROWS: dict[str, list[frozenset[int]]] = {}


class RecordingTransformer(TransformerMixin, BaseEstimator):
    """Passes data through; records the row labels it was fitted on under ``key``."""

    def __init__(self, key: str = "default"):
        self.key = key

    def fit(self, X, y=None):
        _FITTED_ROWS.setdefault(self.key, []).append(frozenset(X.index))
        return self

    def transform(self, X):
        return X


def _recording_candidate(ds: Dataset, key: str, grid: dict | None = None) -> common.Candidate:
    model = Pipeline([("record", RecordingTransformer(key)),
                      ("pre", common.make_preprocessor(ds.X)),
                      ("model", LogisticRegression())])
    return common.Candidate(model, grid or {})


def test_preprocessing_and_search_never_see_the_outer_test_fold():
    ds = toy_dataset(n=60)
    key = "fold-local"
    _FITTED_ROWS.pop(key, None)
    cand = _recording_candidate(ds, key, {"model__C": [0.1, 1.0]})
    common.nested_cv({"lr": cand}, ds, folds=3, repeats=2, seed=7, verbose=False)
    splits = common.outer_splits(ds, folds=3, repeats=2, seed=7)
    fitted = _FITTED_ROWS[key]
    # per outer fold: 2 settings x 2 inner folds (inner folds = min(3, folds)... = 3 here) + 1 refit
    assert len(fitted) == len(splits) * (2 * 3 + 1)
    for rows in fitted:  # every fit lies inside one outer training fold and avoids its test fold
        assert any(rows <= frozenset(tr) and rows.isdisjoint(te) for tr, te in splits)
    refits = [rows for rows in fitted if any(rows == frozenset(tr) for tr, _ in splits)]
    assert len(refits) == len(splits)  # refit=True: the picked setting refitted on the whole outer fold


def test_fold_scaler_mean_differs_from_full_data_mean():
    ds = toy_dataset(n=60)
    pre = common.make_preprocessor(ds.X)
    train_idx, _ = common.outer_splits(ds, folds=3, repeats=1, seed=0)[0]
    pre.fit(ds.X.iloc[train_idx])
    scaler = pre.named_transformers_["num"].named_steps["scale"]
    assert scaler.mean_[0] == pytest.approx(ds.X["x1"].iloc[train_idx].mean())
    assert scaler.mean_[0] != pytest.approx(ds.X["x1"].mean())


def test_outer_splits_are_repeated_stratified_partitions():
    ds = toy_dataset(n=60)
    a = common.outer_splits(ds, folds=5, repeats=3, seed=3)
    b = common.outer_splits(ds, folds=5, repeats=3, seed=3)
    assert len(a) == 15 and all(np.array_equal(x[1], y[1]) for x, y in zip(a, b))
    for r in range(3):  # each repeat's test folds partition the rows
        tests = np.concatenate([te for _, te in a[r * 5:(r + 1) * 5]])
        assert sorted(tests) == list(range(60))
    assert not np.array_equal(a[0][1], a[5][1])  # a new assignment per repeat
    pos_share = [np.mean(ds.encoded_y()[te]) for _, te in a]
    assert max(pos_share) - min(pos_share) < 0.2


def test_grouped_folds_keep_each_group_on_one_side():
    ds = toy_dataset(n=60)
    ds.groups = pd.Series(np.repeat(np.arange(20), 3))
    for train_idx, test_idx in common.outer_splits(ds, folds=4, repeats=2, seed=0):
        assert set(ds.groups.iloc[train_idx]).isdisjoint(set(ds.groups.iloc[test_idx]))


def test_too_few_rows_per_class_is_a_data_error():
    ds = toy_dataset(n=60)
    with pytest.raises(DataError, match="--folds"):
        common.outer_splits(ds, folds=40, repeats=1, seed=0)


# ---------------------------------------------------------------- nested CV on scikit-learn's machinery
def test_nested_cv_scores_equal_sklearn_cross_validate_of_the_search():
    """The headline is exactly cross_validate(GridSearchCV) on the outer splits: no copy of it."""
    from sklearn.model_selection import cross_validate

    from aimedres.training import evaluation

    ds = toy_dataset(n=80)
    cands = common.standard_candidates(ds, epochs=5, seed=0, C_grid=(0.1, 1.0))
    res = common.nested_cv(cands, ds, folds=3, repeats=2, seed=1, verbose=False)
    search = evaluation.make_search(cands, "binary", inner_folds=3, seed=1)
    splits = common.outer_splits(ds, folds=3, repeats=2, seed=1)
    ref = cross_validate(search, ds.X, ds.encoded_y(), cv=splits, scoring="roc_auc")
    assert np.array_equal(res.fold_scores["roc_auc"], ref["test_score"])
    assert res.means["roc_auc"] == pytest.approx(ref["test_score"].mean())
    assert res.stds["roc_auc"] == pytest.approx(np.std(ref["test_score"], ddof=1))  # sample std
    assert len(res.oof) == 2 and res.oof[0].shape == (80,) and np.isfinite(res.oof[0]).all()


def test_the_inner_search_picks_the_useful_family():
    from sklearn.dummy import DummyClassifier

    ds = toy_dataset(n=80)
    cands = {
        "majority": common.Candidate(common.make_model_pipeline(ds.X, DummyClassifier())),
        "logistic_regression": common.Candidate(common.make_model_pipeline(ds.X, LogisticRegression()),
                                                {"model__C": [0.1, 1.0]}),
    }
    res = common.nested_cv(cands, ds, folds=3, repeats=1, seed=0, verbose=False)
    assert res.picks == ["logistic_regression"] * 3
    assert np.mean(res.inner_best["majority"]) == pytest.approx(0.5)
    final, family, settings = common.refit_search(cands, ds, folds=3, seed=0)
    assert family == "logistic_regression" and set(settings) == {"model__C"}
    assert final.predict_proba(ds.X).shape == (80, 2)


def test_same_seed_same_figures_whatever_n_jobs_and_other_seed_differs():
    ds = toy_dataset(n=80)

    def run(seed: int, n_jobs: int) -> dict:
        cands = common.standard_candidates(ds, epochs=15, seed=seed, C_grid=(0.1, 1.0))
        res = common.nested_cv(cands, ds, folds=3, repeats=2, seed=seed, n_jobs=n_jobs, verbose=False)
        return {k: v.tolist() for k, v in res.fold_scores.items()} | {"oof": res.oof[1].tolist()}

    first = run(5, 1)
    assert run(5, 2) == first  # exact, to the last digit, with two worker processes
    assert run(6, 1) != first


def test_regression_nested_cv_uses_regression_metrics():
    ds = toy_dataset(n=80, task="regression")
    cands = common.standard_candidates(ds, epochs=10, seed=0)
    assert set(cands) == {"ridge", "gradient_boosting"}
    res = common.nested_cv(cands, ds, folds=3, repeats=1, seed=0, verbose=False)
    assert res.primary_metric == "rmse" and set(res.means) == {"rmse", "mae", "r2"}
    assert res.means["rmse"] > 0 and res.means["r2"] > 0.7
    ci = common.bootstrap_intervals(ds.encoded_y(), res.oof, "regression", seed=0, n_boot=200)
    assert ci["rmse"][0] < res.means["rmse"] < ci["rmse"][1] * 1.2


# ---------------------------------------------------------------- intervals, calibration, threshold
def test_vectorised_bootstrap_metrics_equal_sklearn_on_one_resample():
    from sklearn.metrics import balanced_accuracy_score, brier_score_loss, f1_score, roc_auc_score

    from aimedres.training import evaluation

    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, size=200)
    p = np.clip(0.3 * y + rng.uniform(size=200) * 0.7, 0, 1)
    p[:10] = 0.5  # ties and the threshold itself
    rows = evaluation._binary_rows(y[None, :], p[None, :], 0.5)
    hard = (p > 0.5).astype(int)
    assert rows["roc_auc"][0] == pytest.approx(roc_auc_score(y, p))
    assert rows["balanced_accuracy"][0] == pytest.approx(balanced_accuracy_score(y, hard))
    assert rows["f1_macro"][0] == pytest.approx(f1_score(y, hard, average="macro"))
    assert rows["brier"][0] == pytest.approx(brier_score_loss(y, p))
    expected = common.threshold_metrics(y, p, 0.5)
    for k, v in expected.items():
        assert rows[k][0] == pytest.approx(v)


def test_bootstrap_interval_covers_the_estimate_and_narrows_with_more_data():
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(1)

    def sample(n: int) -> tuple[np.ndarray, np.ndarray]:
        y = rng.integers(0, 2, size=n)
        return y, y + rng.normal(scale=1.5, size=n)

    truth = roc_auc_score(*sample(200_000))
    widths = []
    for n in (200, 3000):
        y, s = sample(n)
        lo, hi = common.bootstrap_intervals(y, [1 / (1 + np.exp(-s))], "binary", seed=0, n_boot=400)["roc_auc"]
        assert lo < roc_auc_score(y, s) < hi and lo - 0.03 < truth < hi + 0.03
        widths.append(hi - lo)
    assert widths[1] < widths[0] / 2


def test_threshold_metrics_match_hand_counts():
    y = np.array([1, 1, 1, 0, 0, 0, 0, 0])
    p = np.array([0.9, 0.6, 0.2, 0.7, 0.1, 0.1, 0.3, 0.5])
    # >= 0.5 positive: TP 2 (0.9, 0.6), FN 1, FP 2 (0.7, 0.5), TN 3
    m = common.threshold_metrics(y, p, 0.5)
    assert m == pytest.approx({"sensitivity": 2 / 3, "specificity": 3 / 5, "ppv": 2 / 4, "npv": 3 / 4})


def test_calibration_slope_and_intercept():
    rng = np.random.default_rng(0)
    lp = rng.normal(scale=1.5, size=20000)
    y = (rng.uniform(size=lp.size) < 1 / (1 + np.exp(-lp))).astype(int)
    good = common.calibration(y, 1 / (1 + np.exp(-lp)))
    assert good["calibration_slope"] == pytest.approx(1.0, abs=0.05)
    assert good["calibration_intercept"] == pytest.approx(0.0, abs=0.05)
    extreme = common.calibration(y, 1 / (1 + np.exp(-2 * lp)))  # over-confident: slope ~0.5
    assert extreme["calibration_slope"] == pytest.approx(0.5, abs=0.05)
    low = common.calibration(y, 1 / (1 + np.exp(-(lp - 1))))  # risks under-estimated: intercept ~ +1
    assert low["calibration_intercept"] == pytest.approx(1.0, abs=0.1)
    assert good["brier"] < extreme["brier"]


def test_subgroup_metrics_give_n_per_group():
    ds = toy_dataset(n=60)
    ds.X["sex"] = np.tile([0, 1], 30)
    scores = [np.where(ds.encoded_y() == 1, 0.8, 0.2)]
    groups = common.subgroup_metrics(ds, "sex", scores)
    assert set(groups) == {"0", "1"} and groups["0"]["n"] + groups["1"]["n"] == 60
    assert groups["0"]["roc_auc"] == 1.0 and groups["1"]["roc_auc"] == 1.0


# ---------------------------------------------------------------- data loading and errors
def test_missing_csv_is_a_data_error_naming_file_and_columns(tmp_path):
    path = tmp_path / "nope.csv"
    with pytest.raises(DataError) as err:
        common.load_csv(path, target="outcome", expected_features=["age", "bmi"])
    msg = str(err.value)
    assert str(path) in msg and "outcome" in msg and "age" in msg and "bmi" in msg


@pytest.mark.parametrize("content, fragment", [
    ("", "empty"),
    ("age,bmi\n1,2\n3,4\n", "missing column"),
    ("outcome\nyes\nno\n", "column"),
    ("age,bmi,outcome\n1,2,yes\n3,4,yes\n", "one class"),
])
def test_malformed_csv_is_a_data_error(tmp_path, content, fragment):
    path = tmp_path / "bad.csv"
    path.write_text(content)
    with pytest.raises(DataError) as err:
        common.load_csv(path, target="outcome", task="binary")
    assert fragment in str(err.value)
    assert "bad.csv" in str(err.value)


def test_run_turns_data_error_into_exit_2(capsys):
    def main() -> int:
        raise DataError("data file not found: x.csv (expected columns: ['y'])")

    with pytest.raises(SystemExit) as exc:
        common.run(main)
    assert exc.value.code == 2
    assert "error: data file not found: x.csv" in capsys.readouterr().err


def test_csv_rows_without_target_are_dropped_and_identifiers_removed(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("rownames,a,y\n1,0.5,yes\n2,0.1,\n3,0.7,no\n4,0.2,no\n")
    ds = common.load_csv(path, target="y", drop=["rownames"])
    assert list(ds.X.columns) == ["a"]
    assert len(ds.y) == 3 and ds.task == "binary"
    assert ds.classes == ["no", "yes"] and ds.positive_label == "yes"


def test_task_of_target():
    assert common.task_of_target(pd.Series(["a", "b", "a"])) == "binary"
    assert common.task_of_target(pd.Series([0, 1, 2, 1])) == "multiclass"
    assert common.task_of_target(pd.Series([0.5, 1.7, 2.2, 3.1])) == "regression"
    assert common.task_of_target(pd.Series(range(40))) == "regression"  # an integer score, not 40 classes
    with pytest.raises(DataError, match="distinct"):
        common.task_of_target(pd.Series([1, 1, 1]))


def test_dataset_info_hash_is_stable_and_sensitive():
    a, b = toy_dataset(seed=0), toy_dataset(seed=0)
    assert a.info() == b.info()
    assert a.info()["rows"] == 60 and a.info()["features"] == 3 and a.info()["synthetic"] is False
    b.X.loc[0, "x1"] += 1e-9
    assert a.info()["sha256"] != b.info()["sha256"]


# ---------------------------------------------------------------- command line
def test_common_args_defaults_and_validation(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    parser = argparse.ArgumentParser()
    common.add_common_args(parser, epochs=50, folds=5)
    args = parser.parse_args([])
    assert (args.epochs, args.folds, args.repeats, args.seed, args.output_dir, args.n_jobs) == (50, 5, 5, 42, None, 3)
    for bad in (["--epochs", "0"], ["--folds", "1"], ["--repeats", "0"], ["--n-jobs", "0"], ["--epochs", "x"]):
        with pytest.raises(SystemExit) as exc:
            parser.parse_args(bad)
        assert exc.value.code == 2
    bare = argparse.ArgumentParser()
    common.add_common_args(bare, epochs=None, folds=None, n_jobs=False)
    assert vars(bare.parse_args([])) == {"seed": 42, "output_dir": None}


def test_output_dir_precedence(monkeypatch, tmp_path):
    args = argparse.Namespace(output_dir=None)
    monkeypatch.delenv("TRAINING_OUTPUT_DIR", raising=False)
    assert common.output_dir(args, "x") == common.repo_root() / "training-results" / "x"
    monkeypatch.setenv("TRAINING_OUTPUT_DIR", str(tmp_path / "env"))
    assert common.output_dir(args, "x") == tmp_path / "env"
    args.output_dir = tmp_path / "flag"
    assert common.output_dir(args, "x") == tmp_path / "flag"


# ---------------------------------------------------------------- outputs
def _write_toy_job(tmp_path, ds: Dataset, subgroups=()):
    cands = common.standard_candidates(ds, epochs=5, seed=0, C_grid=(0.1, 1.0))
    nested = common.nested_cv(cands, ds, folds=3, repeats=2, seed=0, verbose=False)
    args = argparse.Namespace(epochs=7, folds=3, repeats=2, seed=0, output_dir=tmp_path, n_jobs=1)
    written = common.write_tabular_job("toy", args, ds, cands, nested, started=time.time(), subgroups=subgroups)
    return json.loads((tmp_path / "metrics.json").read_text()), nested, written


def test_metrics_json_follows_the_contract(tmp_path, capsys):
    ds = toy_dataset()
    ds.X["male"] = np.tile([0, 1], 30)
    doc, nested, written = _write_toy_job(tmp_path, ds, subgroups=("male",))
    assert CONTRACT_KEYS <= set(doc)
    assert doc["job"] == "toy" and doc["task"] == "binary" and doc["primary_metric"] == "roc_auc"
    assert set(doc["data"]) == DATA_KEYS and doc["data"]["synthetic"] is False
    assert doc["data"]["rows"] == 60 and doc["data"]["features"] == 4
    always = set(common.CLASSIFICATION_METRICS) | set(common.BINARY_OOF_METRICS) - {"ppv", "npv"}
    assert always <= set(doc["metrics"]) <= always | {"ppv", "npv"}  # ppv/npv: undefined without a positive call
    assert all(isinstance(v, float) for v in doc["metrics"].values())  # flat numbers only
    assert doc["metrics"]["roc_auc"] == pytest.approx(nested.means["roc_auc"])  # headline: outer-CV mean
    lo, hi = doc["metrics_ci"]["roc_auc"]
    assert 0.0 <= lo < hi <= 1.0 and "bootstrap" in doc["ci_method"]
    assert doc["metrics_std"]["roc_auc"] == pytest.approx(np.std(nested.fold_scores["roc_auc"], ddof=1))
    assert doc["best_model"] in doc["models"]
    assert sum(m["picked"] for m in doc["models"].values()) == pytest.approx(1.0)
    assert doc["cv"]["outer_folds"] == 3 and doc["cv"]["repeats"] == 2 and doc["cv"]["n_scores"] == 6
    assert doc["threshold"] == 0.5 and doc["classes"] == ["well", "sick"]
    assert {g["n"] for g in doc["subgroups"]["male"].values()} == {30}
    assert (doc["folds"], doc["repeats"], doc["epochs"], doc["seed"]) == (3, 2, 7, 0)
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["seed"] == 0 and manifest["data"]["sha256"] == doc["data"]["sha256"]
    assert {"python", "numpy", "pandas", "sklearn", "torch"} <= set(manifest["versions"])
    assert written["model"].name == "model.joblib"
    preds = pd.read_csv(tmp_path / "predictions.csv")
    assert list(preds.columns) == ["row", "fold", "repeat", "y_true", "score"]
    assert len(preds) == 2 * 60 and sorted(preds["repeat"].unique()) == [0, 1]
    assert preds.groupby("repeat")["row"].nunique().tolist() == [60, 60]
    assert sorted(p.name for p in (tmp_path / "figures").iterdir()) == ["calibration.png", "confusion.png", "roc.png"]
    assert "roc_auc" in capsys.readouterr().out


def test_non_finite_metrics_are_left_out_of_metrics_json(tmp_path):
    common.write_outputs(tmp_path, job="x", task="binary", primary_metric="roc_auc",
                         metrics={"roc_auc": 0.8, "ppv": float("nan")}, models={"m": {}}, best_model="m",
                         data={"source": "t"}, started=time.time(), quiet=True)
    assert json.loads((tmp_path / "metrics.json").read_text())["metrics"] == {"roc_auc": 0.8}


def test_a_failing_figure_is_a_warning_not_a_failure(tmp_path, capsys):
    def broken(plt):
        raise RuntimeError("no canvas")

    assert common.figures.draw(tmp_path, "broken", broken) is None
    assert "figure 'broken' not drawn" in capsys.readouterr().err


def test_importing_common_does_not_import_matplotlib():
    import subprocess
    import sys

    code = "import sys; from aimedres.training import common; print('matplotlib' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_write_outputs_single_split_and_synthetic_banner(tmp_path, capsys):
    ds = toy_dataset()
    ds.synthetic, ds.source = True, "synthetic:toy(seed=0)"
    common.write_outputs(tmp_path, job="mri", task="multiclass", primary_metric="accuracy",
                         metrics={"accuracy": 0.9, "roc_auc": 0.95}, models={"cnn": {"accuracy": 0.9}},
                         best_model="cnn", data={**ds.info(), "features": 4096}, args={"seed": 1, "epochs": 3},
                         started=time.time())
    doc = json.loads((tmp_path / "metrics.json").read_text())
    assert doc["folds"] is None and doc["epochs"] == 3 and doc["data"]["features"] == 4096
    assert doc["metrics"] == {"accuracy": 0.9, "roc_auc": 0.95} and doc["data"]["synthetic"] is True
    assert "SYNTHETIC DATA" in capsys.readouterr().out


def test_failed_model_save_leaves_no_metrics_json(tmp_path):
    class Unpicklable:
        def __reduce__(self):
            raise pickle.PicklingError("cannot pickle this model")

    with pytest.raises(pickle.PicklingError):
        common.write_outputs(tmp_path, job="toy", task="binary", primary_metric="roc_auc",
                             metrics={"roc_auc": 0.7}, models={"m": {}}, best_model="m",
                             data={"source": "t"}, model=Unpicklable(), args={"seed": 0}, started=0.0)
    assert list(tmp_path.iterdir()) == []  # no metrics.json, no temp files


# ---------------------------------------------------------------- torch MLP
def test_torch_mlp_classifier_is_seeded_picklable_and_sklearn_compatible():
    from sklearn.base import clone

    from aimedres.training.torch_tabular import TorchMLPClassifier

    rng = np.random.default_rng(0)
    X = rng.normal(size=(120, 4))
    y = np.where(X[:, 0] + 0.3 * rng.normal(size=120) > 0, 1, 0)
    a = TorchMLPClassifier(epochs=30, random_state=3).fit(X, y)
    b = clone(a).fit(X, y)
    pa, pb = a.predict_proba(X), b.predict_proba(X)
    assert np.array_equal(pa, pb)
    assert np.allclose(pa.sum(axis=1), 1.0)
    assert (a.predict(X) == y).mean() > 0.85
    assert 1 <= a.best_epoch_ <= 30 and len(a.validation_loss_) >= 1
    restored = pickle.loads(pickle.dumps(a))
    assert np.array_equal(restored.predict_proba(X), pa)
    c = TorchMLPClassifier(epochs=30, random_state=4).fit(X, y)
    assert not np.array_equal(c.predict_proba(X), pa)


def test_torch_mlp_early_stopping_stops_before_max_epochs():
    from aimedres.training.torch_tabular import TorchMLPClassifier

    rng = np.random.default_rng(0)
    X = rng.normal(size=(80, 20))
    y = rng.integers(0, 2, size=80)  # pure noise: validation loss stops improving early
    model = TorchMLPClassifier(epochs=500, patience=5, random_state=0).fit(X, y)
    assert len(model.validation_loss_) < 500


def test_torch_mlp_regressor_learns_a_linear_signal():
    from aimedres.training.torch_tabular import TorchMLPRegressor

    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 3))
    y = 3 * X[:, 0] - X[:, 1] + 0.1 * rng.normal(size=200) + 10
    model = TorchMLPRegressor(epochs=200, random_state=0).fit(X, y)
    assert common.regression_metrics(y, model.predict(X))["r2"] > 0.9


def test_git_commit_is_none_outside_a_repository(tmp_path):
    from aimedres.training import outputs

    assert outputs._git_commit(tmp_path) == {"commit": None, "dirty": None}
    here = outputs._git_commit(common.repo_root())
    assert here["commit"] is None or len(here["commit"]) == 40


def test_torch_module_is_saved_as_state_dict(tmp_path):
    import torch

    net = torch.nn.Linear(3, 2)
    from aimedres.training import outputs

    path = outputs._save_model(net, tmp_path)
    assert path.name == "model.pt"
    saved = torch.load(path, weights_only=True)
    assert saved["class"] == "Linear"
    assert torch.equal(saved["state_dict"]["weight"], net.weight.detach())
