"""Every tabular training script runs for real in smoke mode and honours the job contract.

Scripts are started the way the plugin starts them: ``python <script> ...`` with the venv's
interpreter, no shell, and a working directory that is NOT the repository (paths must come from
arguments or ``__file__``).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from fakejobs import CONTRACT_KEYS

ROOT = Path(__file__).resolve().parents[1]
TRAINING = ROOT / "src" / "aimedres" / "training"
PIPELINES = ROOT / "mlops" / "pipelines"
SMOKE = ["--epochs", "1", "--folds", "2", "--repeats", "2", "--n-jobs", "1"]

# job id -> (script, smoke args, rows, features)
JOBS: dict[str, tuple[Path, list[str], int, int]] = {
    "alzheimers": (TRAINING / "train_alzheimers.py", SMOKE, 333, 130),
    "parkinsons": (TRAINING / "train_parkinsons.py", SMOKE, 252, 751),
    "diabetes": (TRAINING / "train_diabetes.py", SMOKE, 532, 7),
    "cardiovascular": (TRAINING / "train_cardiovascular.py", SMOKE, 126, 28),
    "model": (PIPELINES / "train_model.py", SMOKE, 699, 9),
    # no iterative learner, so no --epochs
    # the development rows of each data set: each job's untouched test set stays out of the baselines
    "baseline_models": (PIPELINES / "train_baseline_models.py", ["--folds", "2", "--repeats", "1", "--n-jobs", "1"],
                        266 + 201 + 200 + 100 + 560, 130 + 751 + 7 + 28 + 9),
}
CLASSIFICATION = {"roc_auc", "accuracy", "balanced_accuracy", "f1_macro"}
CALIBRATION = {"brier", "calibration_slope", "calibration_intercept", "sensitivity", "specificity",
               "ici", "e50", "e90"}


def run_script(script: Path, args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRAINING_")}
    env["OMP_NUM_THREADS"] = "1"
    return subprocess.run([sys.executable, str(script), *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=240)


def check_contract(out: Path, job: str, rows: int, features: int, *, epochs: int | None, folds: int) -> dict:
    doc = json.loads((out / "metrics.json").read_text())
    assert CONTRACT_KEYS <= set(doc), set(doc) ^ CONTRACT_KEYS
    assert doc["job"] == job
    assert doc["task"] == "binary" and doc["primary_metric"] == "roc_auc"
    assert all(isinstance(v, float) for v in doc["metrics"].values())  # flat numbers: what the plugin accepts
    assert doc["best_model"] in doc["models"] and len(doc["models"]) >= 2
    for name in CLASSIFICATION:
        assert 0.0 <= doc["metrics"][name] <= 1.0
    data = doc["data"]
    assert data["synthetic"] is False and data["source"]
    assert (data["rows"], data["features"]) == (rows, features)
    assert len(data["sha256"]) == 64
    assert (doc["folds"], doc["epochs"], doc["seed"]) == (folds, epochs, 42)
    assert doc["duration_s"] > 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["data"]["sha256"] == data["sha256"] and manifest["seed"] == 42
    assert manifest["versions"]["torch"] and manifest["versions"]["sklearn"]
    assert (out / "model.joblib").stat().st_size > 0
    return doc


def check_nested_outputs(out: Path, doc: dict, rows: int) -> None:
    """Nested-CV figures: interval, calibration, out-of-fold predictions and the figures."""
    assert CALIBRATION <= set(doc["metrics"])
    lo, hi = doc["metrics_ci"]["roc_auc"]
    assert lo < doc["metrics"]["roc_auc"] < hi and "corrected repeated-CV t" in doc["ci_method"]
    assert doc["estimand"].startswith("mean over the 4 outer folds")
    lo, hi = doc["metrics_ci"]["calibration_slope"]
    assert lo < doc["metrics"]["calibration_slope"] < hi and "GLM" in doc["calibration"]["ci_method"]
    assert doc["metrics_std"]["roc_auc"] >= 0 and doc["cv"]["repeats"] == 2
    assert doc["cv"]["n_scores"] == doc["folds"] * 2 == len(doc["cv"]["fold_scores"]["roc_auc"])
    dev = doc["data"]["split"]["development"]
    assert dev + doc["data"]["split"]["test"] == rows and doc["test"]["rows"] == doc["data"]["split"]["test"] > 0
    assert {"roc_auc", "calibration_slope", "ici"} <= set(doc["test"]["metrics"]) and "roc_auc" in doc["test"]["metrics_ci"]
    assert len(doc["decision_curve"]["thresholds"]) == 46 and "useful" in doc["decision_curve"]
    assert doc["threshold_tuned"]["metrics"]["sensitivity"] > doc["metrics"]["sensitivity"] - 0.2
    assert doc["reporting"]["sample_size"]["riley"]["required_n"] > 0
    lines = (out / "predictions.csv").read_text().splitlines()
    assert lines[0] == "row,fold,repeat,y_true,score" and len(lines) == 1 + 2 * dev
    assert {p.name for p in (out / "figures").iterdir()} == {"roc.png", "calibration.png", "confusion.png",
                                                             "decision_curve.png"}


def check_saved_model(out: Path, job: str) -> None:
    """The saved bundle reloads and predicts probabilities for rows of the job's own data."""
    import importlib

    import joblib
    import numpy as np

    bundle = joblib.load(out / "model.joblib")
    assert {"model", "classes", "positive_label", "features", "target"} <= set(bundle)
    module = importlib.import_module(f"aimedres.training.train_{job}") if job != "model" else None
    if module is None:
        from aimedres.training import common

        frame = common.load_rdataset("MASS", "biopsy")
        X = frame[bundle["features"]].head(5)
    else:
        X = module.load_data(None).X.head(5)
    proba = bundle["model"].predict_proba(X)
    assert proba.shape == (5, len(bundle["classes"])) and np.allclose(proba.sum(axis=1), 1.0)
    assert bundle["classes"][-1] == bundle["positive_label"]


@pytest.mark.slow
@pytest.mark.parametrize("job", list(JOBS))
def test_script_runs_in_smoke_mode_and_writes_the_contract(job, tmp_path):
    script, args, rows, features = JOBS[job]
    out = tmp_path / "out"
    proc = run_script(script, [*args, "--output-dir", str(out)], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    doc = check_contract(out, job, rows, features, epochs=None if job == "baseline_models" else 1, folds=2)
    assert f"model: {doc['best_model']}" in proc.stdout
    if job != "baseline_models":
        check_nested_outputs(out, doc, rows)
        check_saved_model(out, job)
    if job in ("alzheimers", "parkinsons"):  # sex subgroups, with their sizes and intervals
        groups = next(iter(doc["subgroups"].values()))
        assert sum(g["n"] for g in groups.values()) == doc["data"]["split"]["development"]
        assert all(g["roc_auc_ci"][0] <= g["roc_auc"] <= g["roc_auc_ci"][1] for g in groups.values())
    if job == "diabetes":  # MASS's own split: Pima.tr develops, Pima.te tests
        assert doc["data"]["split"] == {"development": 200, "test": 332, "test_set": "the test set shipped with the data"}
        assert "complete cases" in doc["reporting"]["selection"]
    if job == "model":  # biopsies of one patient ID stay together
        assert doc["cv"]["outer_split"] == "grouped by subject" and doc["data"]["subjects"] == 645
    if job == "baseline_models":
        board = json.loads((out / "leaderboard.json").read_text())
        assert {(r["dataset"], r["model"]) for r in board} == {
            (d, m) for d in ("alzheimers", "parkinsons", "diabetes", "cardiovascular", "biopsy")
            for m in ("majority", "logistic_regression", "random_forest")}
        assert all(r["roc_auc"] == 0.5 for r in board if r["model"] == "majority")
        assert all(r["roc_auc_ci_lo"] <= r["roc_auc"] + 0.05 and r["roc_auc_ci_hi"] >= r["roc_auc"] - 0.05
                   for r in board)
        assert (out / "leaderboard.csv").read_text().startswith("dataset,model,roc_auc,")
        assert (out / "figures" / "leaderboard.png").stat().st_size > 0


@pytest.mark.parametrize("job", list(JOBS))
def test_help_explains_every_shared_flag(job, tmp_path):
    script = JOBS[job][0]
    proc = run_script(script, ["--help"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    for flag in ["--folds", "--repeats", "--seed", "--output-dir", "--n-jobs"]:
        assert flag in proc.stdout
    assert ("--epochs" in proc.stdout) == (job != "baseline_models")


@pytest.mark.parametrize("bad", [["--epochs", "0"], ["--folds", "1"], ["--no-such-flag"]])
def test_bad_usage_exits_2(bad, tmp_path):
    proc = run_script(JOBS["diabetes"][0], [*bad, "--output-dir", str(tmp_path / "out")], cwd=tmp_path)
    assert proc.returncode == 2
    assert "error" in proc.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_generic_pipeline_trains_on_a_user_csv(tmp_path):
    import numpy as np

    rng = np.random.default_rng(0)
    n = 120
    age = rng.integers(30, 80, size=n)
    marker = rng.normal(size=n)
    site = rng.choice(["north", "south"], size=n)
    risk = 0.05 * (age - 55) + 1.5 * marker + rng.normal(scale=0.5, size=n)
    lines = ["patient_id,record,age,marker,site,outcome"]
    for i in range(n):
        lines.append(f"P{i:04d},{1000 + 7 * i},{age[i]},{'' if i == 5 else round(marker[i], 4)},{site[i]},"
                     f"{'event' if risk[i] > 0 else 'none'}")
    csv = tmp_path / "cohort.csv"
    csv.write_text("\n".join(lines) + "\n")
    out = tmp_path / "out"
    proc = run_script(PIPELINES / "train_model.py",
                      ["--data", str(csv), "--target", "outcome", "--positive-label", "event", *SMOKE,
                       "--output-dir", str(out)], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    # patient_id (text) and record (an integer, unique per row) are dropped as identifiers
    doc = check_contract(out, "model", n, 3, epochs=1, folds=2)
    assert doc["data"]["source"] == str(csv.resolve())
    assert "warning" in proc.stderr and "'patient_id'" in proc.stderr and "'record'" in proc.stderr
    assert doc["metrics"]["roc_auc"] > 0.8


@pytest.mark.slow
def test_generic_pipeline_regression_task(tmp_path):
    import numpy as np

    rng = np.random.default_rng(1)
    x = rng.normal(size=(80, 2))
    y = 2 * x[:, 0] - x[:, 1] + rng.normal(scale=0.3, size=80)
    csv = tmp_path / "reg.csv"
    csv.write_text("a,b,slope\n" + "".join(f"{a:.5f},{b:.5f},{t:.5f}\n" for (a, b), t in zip(x, y)))
    out = tmp_path / "out"
    proc = run_script(PIPELINES / "train_model.py",
                      ["--data", str(csv), "--target", "slope", *SMOKE, "--output-dir", str(out)], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    doc = json.loads((out / "metrics.json").read_text())
    assert doc["task"] == "regression" and doc["primary_metric"] == "rmse"
    assert set(doc["metrics"]) == {"rmse", "mae", "r2"} and doc["best_model"] in doc["models"]
    assert doc["metrics"]["r2"] > 0.8 and doc["metrics_ci"]["rmse"][0] < doc["metrics"]["rmse"]
    assert (out / "figures" / "predicted_vs_observed.png").is_file()


@pytest.mark.parametrize("case", ["missing", "no_target_column", "empty"])
def test_generic_pipeline_bad_data_file_exits_2_without_outputs(case, tmp_path):
    csv = tmp_path / "data.csv"
    if case == "no_target_column":
        csv.write_text("age,marker\n50,0.1\n60,0.2\n")
    elif case == "empty":
        csv.write_text("")
    out = tmp_path / "out"
    proc = run_script(PIPELINES / "train_model.py",
                      ["--data", str(csv), "--target", "outcome", *SMOKE, "--output-dir", str(out)], cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert "error:" in proc.stderr and "data.csv" in proc.stderr and "outcome" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (out / "metrics.json").exists()


@pytest.mark.slow
def test_disease_job_rejects_a_csv_without_its_columns(tmp_path):
    csv = tmp_path / "pima.csv"
    csv.write_text("glu,bmi,type\n100,30,Yes\n90,25,No\n")
    out = tmp_path / "out"
    proc = run_script(JOBS["diabetes"][0], ["--data", str(csv), *SMOKE, "--output-dir", str(out)], cwd=tmp_path)
    assert proc.returncode == 2
    assert "pima.csv" in proc.stderr and "npreg" in proc.stderr and "age" in proc.stderr
    assert not (out / "metrics.json").exists()


def test_parkinsons_per_recording_csv_is_split_by_subject(tmp_path):
    """A CSV with several recordings per subject (an ``id`` column) gets subject-grouped folds:
    the recordings of one person never straddle train and test."""
    import pandas as pd

    from aimedres.training import common, train_parkinsons

    frame = common.load_rdataset("modeldata", "pd_speech").head(60)
    recordings = pd.concat([frame.assign(id=range(60))] * 3, ignore_index=True)
    csv = tmp_path / "pd_recordings.csv"
    recordings.to_csv(csv, index=False)
    ds = train_parkinsons.load_data(csv)
    assert ds.groups is not None and "id" not in ds.X.columns and ds.X.shape[1] == 751
    for train_idx, test_idx in common.outer_splits(ds, folds=3, repeats=2, seed=42):
        assert set(ds.groups.iloc[train_idx]).isdisjoint(ds.groups.iloc[test_idx])


@pytest.mark.slow
def test_same_seed_same_metrics_whatever_n_jobs(tmp_path):
    """--n-jobs 1 and 2 (standalone default vs. the plugin's budget) give the same figures."""
    docs = []
    for n_jobs in ("1", "2"):
        out = tmp_path / n_jobs
        args = ["--epochs", "1", "--folds", "2", "--repeats", "2", "--n-jobs", n_jobs, "--output-dir", str(out)]
        proc = run_script(JOBS["diabetes"][0], args, cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr[-3000:]
        docs.append(json.loads((out / "metrics.json").read_text()))
        docs[-1]["predictions"] = (out / "predictions.csv").read_text()
    for key in ("metrics", "metrics_ci", "metrics_std", "predictions"):
        assert docs[0][key] == docs[1][key], key


def test_plugin_sees_the_flags_of_the_table_driven_disease_jobs():
    """The disease scripts build their parser in aimedres.training.disease; the plugin's static
    flag analysis follows it and sees every shared flag."""
    from training_plugin.flags import Analyzer

    analyzer = Analyzer(ROOT)
    for job in ("alzheimers", "parkinsons", "diabetes", "cardiovascular"):
        info = analyzer.analyze(JOBS[job][0])
        assert info.resolved, job
        for flag in ("--epochs", "--folds", "--repeats", "--seed", "--output-dir", "--n-jobs", "--data",
                     "--test-fraction"):
            assert info.find(flag) is not None, (job, flag)


def test_disease_configs_freeze_the_protocol():
    """Each disease job's families and grids come from its config file, not from the code."""
    import argparse

    from aimedres.training import disease

    for job in ("alzheimers", "parkinsons", "diabetes", "cardiovascular"):
        cfg = disease.load_config(job)
        assert cfg["job"] == job and cfg["candidates"]["include"]
    ds = disease.load_data("alzheimers")
    cands = disease.build_candidates("alzheimers", ds, argparse.Namespace(epochs=3, seed=0))
    assert set(cands) == set(disease.load_config("alzheimers")["candidates"]["include"])
    assert cands["logistic_regression"].grid == {"model__C": [0.1, 0.3, 1.0]}
    pima = disease.load_data("diabetes")
    assert len(pima.y) == 532 and int(pima.test_rows.sum()) == 332  # Pima.te, marked as the test set


def test_unknown_config_key_is_an_error_naming_it(tmp_path):
    from aimedres.training import disease

    bad = tmp_path / "x.yaml"
    bad.write_text("job: x\ndata: {package: MASS, dataset: Pima.tr, target: type, colour: red}\ncandidates: {}\n")
    with pytest.raises(disease.ConfigError, match="data.colour"):
        disease.load_config("x", bad)
