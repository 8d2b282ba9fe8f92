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

CONTRACT_KEYS = {"job", "task", "primary_metric", "metrics", "models", "best_model", "data",
                 "folds", "epochs", "seed", "duration_s"}
DATA_KEYS = {"source", "synthetic", "rows", "features", "sha256"}


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


def test_preprocessing_is_fitted_on_training_folds_only():
    ds = toy_dataset(n=60)
    key = "fold-local"
    _FITTED_ROWS.pop(key, None)
    model = Pipeline([("record", RecordingTransformer(key)),
                      ("pre", common.make_preprocessor(ds.X)),
                      ("lr", LogisticRegression())])
    common.cross_validate({"lr": model}, ds, folds=3, seed=7, verbose=False)
    splits = common.fold_indices(ds, folds=3, seed=7)
    fitted = _FITTED_ROWS[key]
    assert len(fitted) == 3
    for rows, (train_idx, test_idx) in zip(fitted, splits):
        assert rows == frozenset(train_idx)
        assert rows.isdisjoint(test_idx)


def test_fold_scaler_mean_differs_from_full_data_mean():
    ds = toy_dataset(n=60)
    pre = common.make_preprocessor(ds.X)
    train_idx, _ = common.fold_indices(ds, folds=3, seed=0)[0]
    pre.fit(ds.X.iloc[train_idx])
    scaler = pre.named_transformers_["num"].named_steps["scale"]
    assert scaler.mean_[0] == pytest.approx(ds.X["x1"].iloc[train_idx].mean())
    assert scaler.mean_[0] != pytest.approx(ds.X["x1"].mean())


def test_splits_are_identical_for_every_model_and_stratified():
    ds = toy_dataset(n=60)
    a = common.fold_indices(ds, folds=5, seed=3)
    b = common.fold_indices(ds, folds=5, seed=3)
    assert all(np.array_equal(x[1], y[1]) for x, y in zip(a, b))
    pos_share = [np.mean(ds.encoded_y()[te]) for _, te in a]
    assert max(pos_share) - min(pos_share) < 0.2


def test_grouped_folds_keep_each_group_on_one_side():
    ds = toy_dataset(n=60)
    ds.groups = pd.Series(np.repeat(np.arange(20), 3))
    for train_idx, test_idx in common.fold_indices(ds, folds=4, seed=0):
        assert set(ds.groups.iloc[train_idx]).isdisjoint(set(ds.groups.iloc[test_idx]))


def test_too_few_rows_per_class_is_a_data_error():
    ds = toy_dataset(n=60)
    with pytest.raises(DataError, match="--folds"):
        common.fold_indices(ds, folds=40, seed=0)


# ---------------------------------------------------------------- determinism
def test_same_seed_gives_identical_metrics_and_other_seed_differs():
    ds = toy_dataset(n=80)

    def run(seed: int) -> dict:
        models = common.standard_models(ds, epochs=15, seed=seed, n_jobs=1)
        return common.cross_validate(models, ds, folds=3, seed=seed, verbose=False)["models"]

    first, second = run(5), run(5)
    assert first == second  # exact, to the last digit
    assert run(6) != first


def test_regression_cross_validation_uses_regression_metrics():
    ds = toy_dataset(n=80, task="regression")
    models = common.standard_models(ds, epochs=10, seed=0, n_jobs=1)
    assert set(models) == {"ridge", "gradient_boosting", "mlp"}
    cv = common.cross_validate(models, ds, folds=3, seed=0, verbose=False)
    assert cv["primary_metric"] == "rmse"
    assert set(cv["models"]["ridge"]) == {"rmse", "rmse_std", "mae", "mae_std", "r2", "r2_std"}
    assert cv["models"]["ridge"]["r2"] > 0.7
    best = cv["best_model"]
    assert cv["models"][best]["rmse"] == min(m["rmse"] for m in cv["models"].values())


def test_selection_estimate_scores_each_fold_with_the_model_picked_on_the_others():
    fold_metrics = {  # "a" has the best mean only thanks to fold 0
        "a": [{"roc_auc": 0.99}, {"roc_auc": 0.70}, {"roc_auc": 0.70}],
        "b": [{"roc_auc": 0.70}, {"roc_auc": 0.75}, {"roc_auc": 0.75}],
    }
    sel = common.selection_estimate(fold_metrics, "roc_auc")
    # fold 0: b wins on folds 1-2 -> 0.70; folds 1 and 2: a wins (0.845 vs 0.725) -> 0.70
    assert sel["picks"] == ["b", "a", "a"]
    assert sel["roc_auc"] == pytest.approx(0.70)
    # while the plain pick, "a" by its mean 0.797, would claim 0.797
    # lower is better for rmse; one model that wins everywhere: the estimate is its own mean
    rmse = {"x": [{"rmse": 1.0}, {"rmse": 2.0}], "y": [{"rmse": 3.0}, {"rmse": 4.0}]}
    sel = common.selection_estimate(rmse, "rmse")
    assert sel["picks"] == ["x", "x"] and sel["rmse"] == pytest.approx(1.5)


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


def test_infer_task():
    assert common.infer_task(pd.Series(["a", "b", "a"])) == "binary"
    assert common.infer_task(pd.Series([0, 1, 2, 1])) == "multiclass"
    assert common.infer_task(pd.Series([0.5, 1.7, 2.2, 3.1])) == "regression"


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
    assert (args.epochs, args.folds, args.seed, args.output_dir, args.n_jobs) == (50, 5, 42, None, 3)
    for bad in (["--epochs", "0"], ["--folds", "1"], ["--n-jobs", "0"], ["--epochs", "x"]):
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
def _cv_and_model(ds: Dataset):
    models = {"lr": common.make_model_pipeline(ds.X, LogisticRegression()),
              "lr_strong": common.make_model_pipeline(ds.X, LogisticRegression(C=0.01))}
    cv = common.cross_validate(models, ds, folds=3, seed=0, verbose=False)
    return cv, common.fit_final(models[cv["best_model"]], ds)


def test_metrics_json_follows_the_contract(tmp_path, capsys):
    ds = toy_dataset()
    cv, model = _cv_and_model(ds)
    args = argparse.Namespace(epochs=7, folds=3, seed=0, output_dir=tmp_path, n_jobs=1)
    written = common.write_outputs(tmp_path, job="toy", ds=ds, cv_result=cv, model=model, args=args,
                                   started=time.time())
    doc = json.loads((tmp_path / "metrics.json").read_text())
    assert set(doc) == CONTRACT_KEYS | {"selection"}  # two candidates: a pick to account for
    assert len(doc["selection"]["picks"]) == 3 and set(doc["selection"]["picks"]) <= set(doc["models"])
    assert 0.0 <= doc["selection"]["roc_auc"] <= 1.0
    assert doc["job"] == "toy" and doc["task"] == "binary" and doc["primary_metric"] == "roc_auc"
    assert set(doc["data"]) == DATA_KEYS and doc["data"]["synthetic"] is False
    assert doc["data"]["rows"] == 60 and doc["data"]["features"] == 3
    assert doc["best_model"] in doc["models"]
    assert set(doc["metrics"]) == set(common.CLASSIFICATION_METRICS)
    assert doc["metrics"] == {k: v for k, v in doc["models"][doc["best_model"]].items()
                              if not k.endswith("_std")}
    for metrics in [doc["metrics"], *doc["models"].values()]:
        assert all(isinstance(v, float) and 0.0 <= v <= 1.0 for v in metrics.values())
    assert (doc["folds"], doc["epochs"], doc["seed"]) == (3, 7, 0)
    assert isinstance(doc["duration_s"], float)
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["seed"] == 0 and manifest["data"]["sha256"] == doc["data"]["sha256"]
    assert {"python", "numpy", "pandas", "sklearn", "torch"} <= set(manifest["versions"])
    assert "commit" in manifest["git"]
    assert written["model"].name == "model.joblib"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["manifest.json", "metrics.json", "model.joblib"]
    out = capsys.readouterr().out
    assert "best model: " in out and "selection-aware estimate: roc_auc" in out


def test_write_outputs_single_split_and_synthetic_banner(tmp_path, capsys):
    ds = toy_dataset()
    ds.synthetic, ds.source = True, "synthetic:toy(seed=0)"
    common.write_outputs(tmp_path, job="mri", ds=ds, task="multiclass",
                         models={"cnn": {"accuracy": 0.9, "roc_auc": 0.95}}, best_model="cnn",
                         data={**ds.info(), "features": 4096}, args={"seed": 1, "epochs": 3},
                         started=time.time())
    doc = json.loads((tmp_path / "metrics.json").read_text())
    assert doc["folds"] is None and doc["epochs"] == 3 and doc["data"]["features"] == 4096
    assert doc["metrics"] == {"accuracy": 0.9, "roc_auc": 0.95} and doc["data"]["synthetic"] is True
    assert "SYNTHETIC DATA" in capsys.readouterr().out


def test_failed_model_save_leaves_no_metrics_json(tmp_path):
    ds = toy_dataset()
    cv, _ = _cv_and_model(ds)

    class Unpicklable:
        def __reduce__(self):
            raise pickle.PicklingError("cannot pickle this model")

    with pytest.raises(pickle.PicklingError):
        common.write_outputs(tmp_path, job="toy", ds=ds, cv_result=cv, model=Unpicklable(),
                             args={"seed": 0}, started=0.0)
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
    assert common._git_commit(tmp_path) == {"commit": None, "dirty": None}
    here = common._git_commit(common.repo_root())
    assert here["commit"] is None or len(here["commit"]) == 40


def test_torch_module_is_saved_as_state_dict(tmp_path):
    import torch

    net = torch.nn.Linear(3, 2)
    path = common._save_model(net, tmp_path)
    assert path.name == "model.pt"
    saved = torch.load(path, weights_only=True)
    assert saved["class"] == "Linear"
    assert torch.equal(saved["state_dict"]["weight"], net.weight.detach())
