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
    figs = common.evaluate(res, ds)
    assert figs["metrics"]["rmse"] == pytest.approx(res.means["rmse"])  # one estimand: the fold mean
    assert figs["ci"]["rmse"][0] < res.means["rmse"] < figs["ci"]["rmse"][1]


# ---------------------------------------------------------------- intervals, calibration, threshold
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
    cands = common.standard_candidates(ds, epochs=5, seed=0, C_grid=(1.0,), include=("logistic_regression",))
    nested = common.nested_cv(cands, ds, folds=3, repeats=2, seed=0, verbose=False)
    groups = common.subgroup_metrics(nested, ds, ds.X["sex"])
    assert set(groups) == {"0", "1"} and groups["0"]["n"] + groups["1"]["n"] == 60
    for g in groups.values():
        assert {"roc_auc", "roc_auc_ci", "sensitivity", "fpr", "calibration_slope_ci"} <= set(g)
        assert g["roc_auc_ci"][0] <= g["roc_auc"] <= g["roc_auc_ci"][1]


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
    assert DATA_KEYS <= set(doc["data"]) and doc["data"]["synthetic"] is False
    assert doc["data"]["rows"] == 60 and doc["data"]["features"] == 4 and doc["data"]["subjects"] == 60
    always = set(common.CLASSIFICATION_METRICS) | set(common.BINARY_OOF_METRICS) - {"ppv", "npv"}
    assert always | {"ici", "e50", "e90"} <= set(doc["metrics"]) <= always | {"ppv", "npv", "ici", "e50", "e90"}
    assert all(isinstance(v, float) for v in doc["metrics"].values())  # flat numbers only
    assert doc["metrics"]["roc_auc"] == pytest.approx(nested.means["roc_auc"])  # headline: outer-CV mean
    lo, hi = doc["metrics_ci"]["roc_auc"]
    assert 0.0 <= lo < hi <= 1.0 and "corrected repeated-CV t" in doc["ci_method"]
    assert doc["estimand"].startswith("mean over the 6 outer folds")
    for name in doc["metrics_ci"]:  # every interval brackets its own headline
        assert doc["metrics_ci"][name][0] <= doc["metrics"][name] <= doc["metrics_ci"][name][1], name
    assert set(doc["decision_curve"]) >= {"thresholds", "net_benefit_model", "useful"}
    assert doc["decision_curve"]["thresholds"][0] == 0.05 and doc["decision_curve"]["thresholds"][-1] == 0.5
    assert doc["threshold_tuned"]["target"].endswith("sensitivity >= 0.8")
    assert {"participants_by_outcome", "missing_data", "sample_size"} <= set(doc["reporting"])
    assert ("coefficients" in doc["reporting"]) == (doc["best_model"] == "logistic_regression")
    assert doc["reporting"]["missing_data"]["per_column"] == {"x2": 1}
    assert doc["metrics_std"]["roc_auc"] == pytest.approx(np.std(nested.fold_scores["roc_auc"], ddof=1))
    assert doc["best_model"] in doc["models"]
    assert sum(m["picked"] for m in doc["models"].values()) == pytest.approx(1.0)
    assert doc["cv"]["outer_folds"] == 3 and doc["cv"]["repeats"] == 2 and doc["cv"]["n_scores"] == 6
    assert doc["threshold"] == 0.5 and doc["classes"] == ["well", "sick"]
    assert {g["n"] for g in doc["subgroups"]["male"].values()} == {30}
    assert all("roc_auc_ci" in g for g in doc["subgroups"]["male"].values())
    assert (doc["folds"], doc["repeats"], doc["epochs"], doc["seed"]) == (3, 2, 7, 0)
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["seed"] == 0 and manifest["data"]["sha256"] == doc["data"]["sha256"]
    assert {"python", "numpy", "pandas", "sklearn", "torch"} <= set(manifest["versions"])
    assert written["model"].name == "model.joblib"
    preds = pd.read_csv(tmp_path / "predictions.csv")
    assert list(preds.columns) == ["row", "fold", "repeat", "y_true", "score"]
    assert len(preds) == 2 * 60 and sorted(preds["repeat"].unique()) == [0, 1]
    assert preds.groupby("repeat")["row"].nunique().tolist() == [60, 60]
    assert sorted(p.name for p in (tmp_path / "figures").iterdir()) == [
        "calibration.png", "confusion.png", "decision_curve.png", "roc.png"]
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


def test_git_commit_is_none_outside_a_repository_and_found_inside_this_checkout(tmp_path):
    import shutil
    import subprocess

    from aimedres.training import outputs

    assert outputs._git_commit(tmp_path) == {"commit": None, "dirty": None}
    root = common.repo_root()
    if shutil.which("git") is None or not (root / ".git").exists():
        pytest.skip("git or the checkout's .git is absent here")
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True)
    found = outputs._git_commit(root)
    assert found["commit"] == head.stdout.strip() and len(found["commit"]) == 40
    assert isinstance(found["dirty"], bool)


def test_torch_module_is_saved_as_state_dict(tmp_path):
    import torch

    net = torch.nn.Linear(3, 2)
    from aimedres.training import outputs

    path = outputs._save_model(net, tmp_path)
    assert path.name == "model.pt"
    saved = torch.load(path, weights_only=True)
    assert saved["class"] == "Linear"
    assert torch.equal(saved["state_dict"]["weight"], net.weight.detach())


# ---------------------------------------------------------------- clinical figures (aimedres.training.clinical)
from aimedres.training import clinical  # noqa: E402


def test_corrected_t_interval_matches_the_nadeau_bengio_formula():
    from scipy import stats

    v = np.array([0.80, 0.85, 0.78, 0.90, 0.83, 0.86])
    mean, lo, hi = clinical.corrected_t_interval(v, n_train=200, n_test=50)
    sd = math.sqrt(sum((x - v.mean()) ** 2 for x in v) / 5)
    half = stats.t.ppf(0.975, 5) * sd * math.sqrt(1 / 6 + 50 / 200)
    assert mean == pytest.approx(v.mean()) and (lo, hi) == pytest.approx((v.mean() - half, v.mean() + half))
    naive = stats.t.ppf(0.975, 5) * sd / math.sqrt(6)
    assert hi - lo > 2 * naive  # wider than the interval that treats the folds as independent


def test_headline_interval_and_subgroups_are_one_statistic():
    """The headline is the mean of the outer-fold scores (exactly cross_validate's), and a subgroup
    holding every row reproduces the headline and its interval."""
    ds = toy_dataset(n=80)
    cands = common.standard_candidates(ds, epochs=5, seed=0, C_grid=(0.1, 1.0))
    nested = common.nested_cv(cands, ds, folds=4, repeats=2, seed=3, verbose=False)
    per_fold = common.fold_metrics(nested, ds)
    assert np.allclose(per_fold["roc_auc"], nested.fold_scores["roc_auc"])
    figs = common.evaluate(nested, ds, tune_threshold=False)
    assert figs["metrics"]["roc_auc"] == pytest.approx(nested.means["roc_auc"])
    everyone = common.subgroup_metrics(nested, ds, pd.Series(["all"] * 80))["all"]
    assert everyone["roc_auc"] == pytest.approx(figs["metrics"]["roc_auc"])
    assert everyone["roc_auc_ci"] == pytest.approx(figs["ci"]["roc_auc"])


def test_cluster_resamples_draw_whole_subjects():
    groups = np.repeat(np.array(["a", "b", "c", "d"]), [1, 2, 3, 4])
    for idx in clinical.cluster_resamples(groups, len(groups), 50, seed=1):
        drawn = pd.Series(groups[idx]).value_counts()
        sizes = {"a": 1, "b": 2, "c": 3, "d": 4}
        assert all(count % sizes[g] == 0 for g, count in drawn.items())  # never part of a subject
    assert clinical.n_subjects(groups, 10) == 4 and clinical.n_subjects(None, 10) == 10


def test_split_warnings_name_a_missing_class_and_few_subjects(capsys):
    warnings = clinical.split_warnings(np.array([0, 0, 0]), np.array(["p1", "p1", "p2"]), 2, "mri test")
    assert len(warnings) == 2 and "classes absent" in warnings[0] and "2 subject(s)" in warnings[1]
    assert "warning: mri test" in capsys.readouterr().err
    assert clinical.split_warnings(np.tile([0, 1], 10), None, 2, "ok") == []


def test_calibration_glm_agrees_with_an_independent_fit_and_its_fisher_information():
    from scipy.optimize import brentq
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(0)
    lp = rng.normal(scale=1.5, size=3000)
    y = (rng.uniform(size=lp.size) < 1 / (1 + np.exp(-0.7 * lp + 0.3))).astype(int)
    p = 1 / (1 + np.exp(-lp))
    glm = clinical.calibration_glm(y, p)
    ref = LogisticRegression(C=np.inf, max_iter=1000).fit(lp.reshape(-1, 1), y)
    assert glm["calibration_slope"] == pytest.approx(ref.coef_[0, 0], abs=1e-4)
    a = brentq(lambda a: np.sum(1 / (1 + np.exp(-(a + lp)))) - y.sum(), -20, 20)
    assert glm["calibration_intercept"] == pytest.approx(a, abs=1e-5)
    X = np.column_stack([np.ones_like(lp), lp])
    mu = 1 / (1 + np.exp(-(X @ np.array([ref.intercept_[0], ref.coef_[0, 0]]))))
    se = math.sqrt(np.linalg.inv(X.T @ (X * (mu * (1 - mu))[:, None]))[1, 1])
    assert glm["calibration_slope_ci"] == pytest.approx([glm["calibration_slope"] - 1.959964 * se,
                                                         glm["calibration_slope"] + 1.959964 * se], abs=1e-3)


def test_clustered_calibration_interval_is_wider_for_duplicated_rows():
    rng = np.random.default_rng(2)
    p = rng.uniform(0.05, 0.95, size=300)
    y = (rng.uniform(size=300) < p).astype(int)
    once = clinical.calibration_glm(y, p, np.arange(300))
    thrice = clinical.calibration_glm(np.tile(y, 3), np.tile(p, 3), np.tile(np.arange(300), 3))
    naive = clinical.calibration_glm(np.tile(y, 3), np.tile(p, 3))
    width = lambda d: d["calibration_slope_ci"][1] - d["calibration_slope_ci"][0]  # noqa: E731
    assert width(thrice) == pytest.approx(width(once), rel=0.01)  # three copies tell nothing new
    assert width(naive) < 0.7 * width(thrice)


def test_ici_is_the_mean_gap_between_the_smoothed_and_the_true_risk():
    rng = np.random.default_rng(0)
    true = rng.uniform(0.05, 0.95, size=20000)
    y = (rng.uniform(size=true.size) < true).astype(int)
    assert clinical.calibration_errors(y, true)["ici"] < 0.01
    shrunk = 0.5 * true + 0.25  # over-cautious predictions: |p - true| = |0.5 true - 0.25|
    errors = clinical.calibration_errors(y, shrunk)
    assert errors["ici"] == pytest.approx(np.mean(np.abs(shrunk - true)), abs=0.01)
    assert errors["e50"] == pytest.approx(np.median(np.abs(shrunk - true)), abs=0.015)
    assert errors["e90"] == pytest.approx(np.percentile(np.abs(shrunk - true), 90), abs=0.015)


def test_loess_band_is_statsmodels_lowess_with_a_subject_bootstrap_around_it():
    from statsmodels.nonparametric.smoothers_lowess import lowess

    rng = np.random.default_rng(3)
    p = rng.uniform(0.05, 0.95, size=400)
    y = (rng.uniform(size=400) < p).astype(int)
    band = clinical.loess_band(y, p, np.arange(400) // 2, seed=0, n_boot=60, points=20)
    grid = np.asarray(band["risk"])
    ref = lowess(y.astype(float), p, frac=2 / 3, it=0, xvals=grid)
    assert band["observed"] == pytest.approx(np.clip(ref, 0, 1).tolist())
    lo, hi, mid = map(np.asarray, (band["lo"], band["hi"], band["observed"]))
    assert (lo <= mid + 1e-9).all() and (mid <= hi + 1e-9).all() and (hi - lo).mean() < 0.3


def test_net_benefit_matches_hand_counts():
    y = np.array([1, 1, 1, 0, 0, 0, 0, 0, 0, 0])
    p = np.array([0.9, 0.6, 0.1, 0.7, 0.3, 0.2, 0.1, 0.1, 0.05, 0.05])
    nb = clinical.net_benefit(y, p, thresholds=[0.25, 0.5])
    # t = 0.25: treated p >= 0.25: 0.9 0.6 (TP 2), 0.7 0.3 (FP 2): 2/10 - 2/10 * 1/3
    # t = 0.5: TP 2, FP 1 (0.7): 2/10 - 1/10 * 1
    assert nb["model"] == pytest.approx([0.2 - 0.2 / 3, 0.1])
    assert nb["treat_all"] == pytest.approx([0.3 - 0.7 / 3, 0.3 - 0.7])


def test_net_benefit_agrees_with_dcurves():
    dcurves = pytest.importorskip("dcurves")
    rng = np.random.default_rng(0)
    p = rng.uniform(size=400)
    y = (rng.uniform(size=400) < p).astype(int)
    frame = pd.DataFrame({"y": y, "p": p})
    ref = dcurves.dca(data=frame, outcome="y", modelnames=["p"], thresholds=[0.1, 0.2, 0.3])
    ours = clinical.net_benefit(y, p, thresholds=[0.1, 0.2, 0.3])["model"]
    assert ref.loc[ref["model"] == "p", "net_benefit"].to_numpy() == pytest.approx(ours, abs=1e-9)


def test_decision_curve_reports_where_the_model_beats_both_defaults():
    rng = np.random.default_rng(1)
    folds = []
    for _ in range(6):
        y = rng.integers(0, 2, size=200)
        p = np.clip(0.5 * y + rng.uniform(0, 0.5, size=200), 0, 1)  # perfect ranking around 0.5
        folds.append((y, p))
    dc = clinical.decision_curve(folds, n_train=1000, n_test=200)
    assert dc["useful"] and dc["useful"][0][1] == pytest.approx(0.5)
    assert dc["net_benefit_treat_none"] == [0.0] * 46
    noise = [(y, rng.uniform(size=200)) for y, _ in folds]
    assert clinical.decision_curve(noise, n_train=1000, n_test=200)["useful_clearly"] == []
    assert "net benefit above treat-all and treat-none" in clinical.decision_phrase(dc)


def test_tuned_threshold_meets_the_sensitivity_target_inside_the_inner_cv():
    from sklearn.model_selection import cross_val_predict, StratifiedKFold

    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 2))
    y = (X[:, 0] + rng.normal(scale=1.0, size=300) > 0.8).astype(int)
    model = LogisticRegression()
    t = clinical.tuned_threshold(model, X, y, inner_folds=3, seed=0)
    inner = cross_val_predict(model, X, y, cv=StratifiedKFold(3, shuffle=True, random_state=0),
                              method="predict_proba")[:, 1]
    sens = ((inner >= t) & (y == 1)).sum() / y.sum()
    assert 0.0 < t < 0.5 and sens >= 0.78  # the target, up to the averaging over inner folds


def test_riley_sample_size_reproduces_the_published_example():
    # pmsampsize(type="b", rsquared=0.288, parameters=24, prevalence=0.174): 623, 662, 221 -> 662
    out = clinical.riley_sample_size(parameters=24, prevalence=0.174, r2_cs=0.288)
    assert out["criteria"] == {"shrinkage": 623, "optimism": 662, "overall_risk": 221}
    assert out["required_n"] == 662 and out["required_events"] == 116


def test_sample_size_item_warns_far_below_riley(capsys):
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, size=100)
    p = np.clip(0.3 + 0.2 * y + rng.normal(scale=0.1, size=100), 0.01, 0.99)
    item = clinical.sample_size_item(y, p, parameters=40, where="toy")
    assert item["events_per_parameter"] == pytest.approx(min(y.sum(), 100 - y.sum()) / 40, abs=0.01)
    assert "far below Riley" in item["warning"] and "warning: toy" in capsys.readouterr().err
    from sklearn.metrics import log_loss
    lr = 2 * 100 * (log_loss(y, np.full(100, y.mean())) - log_loss(y, p))
    assert clinical.cox_snell_r2(y, p) == pytest.approx(1 - math.exp(-lr / 100))


def test_reporting_items_count_missing_values_and_linear_coefficients():
    ds = toy_dataset(n=60)
    assert clinical.missing_data(ds.X)["per_column"] == {"x2": 1}
    assert clinical.participants_by_outcome(ds.y, ds.classes) == ds.y.value_counts().reindex(ds.classes).to_dict()
    pipe = common.make_model_pipeline(ds.X, LogisticRegression()).fit(ds.X, ds.encoded_y())
    coefs = clinical.linear_coefficients(pipe)
    assert coefs["x1"] == pytest.approx(pipe.named_steps["model"].coef_[0, 0])
    assert {"(intercept)", "x1", "x2", "cat_a"} <= set(coefs)
    from sklearn.ensemble import HistGradientBoostingClassifier
    assert clinical.linear_coefficients(common.make_model_pipeline(ds.X, HistGradientBoostingClassifier())
                                        .fit(ds.X, ds.encoded_y())) is None


def test_development_and_test_hold_out_before_any_choice():
    ds = toy_dataset(n=100)
    dev, test, how = common.development_and_test(ds, seed=0)
    assert len(test.y) == 20 and len(dev.y) == 80 and "20%" in how
    assert abs(test.encoded_y().mean() - ds.encoded_y().mean()) < 0.06  # stratified
    again = common.development_and_test(ds, seed=0)[1]
    assert test.X.equals(again.X)
    ds.groups = pd.Series(np.repeat(np.arange(25), 4))
    dev, test, _ = common.development_and_test(ds, seed=0)
    assert set(dev.groups).isdisjoint(test.groups) and test.subjects() == 5
    ds.test_rows = np.arange(100) >= 70
    dev, test, how = common.development_and_test(ds, seed=0)
    assert len(test.y) == 30 and "shipped" in how
    assert common.development_and_test(toy_dataset(n=100), seed=0, fraction=0)[1] is None


def test_test_block_scores_the_fixed_model_once_with_subject_intervals():
    ds = toy_dataset(n=160)
    dev, test, how = common.development_and_test(ds, seed=0)
    model = common.make_model_pipeline(dev.X, LogisticRegression()).fit(dev.X, dev.encoded_y())
    block = common.test_block(model, dev, test, seed=0, how=how, tuned=0.3)
    p = model.predict_proba(test.X)[:, 1]
    assert block["metrics"]["roc_auc"] == pytest.approx(common.classification_metrics(test.encoded_y(), p, [0, 1])["roc_auc"])
    lo, hi = block["metrics_ci"]["roc_auc"]
    assert lo <= block["metrics"]["roc_auc"] <= hi
    assert block["threshold_tuned"]["metrics"] == common.threshold_metrics(test.encoded_y(), p, 0.3)
    assert block["rows"] == 32 and block["by_outcome"] == clinical.participants_by_outcome(test.y, dev.classes)


def test_synthetic_watermark_is_stamped_on_the_figure(tmp_path):
    seen = {}

    def painter(plt):
        fig, ax = plt.subplots()
        ax.set_title("als: predicted vs observed")
        seen["fig"] = fig
        return fig

    assert common.figures.draw(tmp_path, "x", painter, watermark="SYNTHETIC DATA").is_file()
    fig = seen["fig"]
    assert any(t.get_text() == "SYNTHETIC DATA" for t in fig.texts)
    assert fig.axes[0].get_title().startswith("SYNTHETIC DATA: ")

    def untitled(plt):
        fig, _ = plt.subplots(2, 2)
        seen["grid"] = fig
        return fig

    common.figures.draw(tmp_path, "grid", untitled, watermark="SYNTHETIC DATA")
    assert seen["grid"]._suptitle.get_text() == "SYNTHETIC DATA"


# ---------------------------------------------------------------- coverage of the interval (fast)
def test_interval_of_the_whole_procedure_covers_at_nominal_level():
    """Seeded simulation on ad_data-shaped data (n 250, p 100, L1 logistic regression): the
    corrected repeated-CV t interval of the fold-mean AUC covers the procedure's expected AUC (at
    the training size) in >= 90 % of 200 replicates; a naive t interval (folds as independent)
    does not."""
    from aimedres.training.coverage import simulate

    res = simulate(replicates=200, repeats=2, seed=0)
    assert res["corrected"] >= 0.90
    assert res["naive"] < res["corrected"] - 0.1
