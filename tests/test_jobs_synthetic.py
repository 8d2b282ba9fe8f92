"""The two jobs on synthetic data: ALS (train_als.py) and brain MRI (train_brain_mri.py).

The scripts run for real, in smoke mode, as subprocesses (``sys.executable``), the way the plugin
runs them; the generators and helpers are also checked in-process.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from aimedres.training import synthetic
from fakejobs import CONTRACT_KEYS, DATA_KEYS

ROOT = Path(__file__).resolve().parents[1]
ALS = ROOT / "src" / "aimedres" / "training" / "train_als.py"
MRI = ROOT / "src" / "aimedres" / "training" / "train_brain_mri.py"


def run_script(script: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run a training script like the plugin does: no shell, cwd = repo root, one thread."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRAINING_")}
    env["OMP_NUM_THREADS"] = "1"
    return subprocess.run([sys.executable, str(script), *args], cwd=ROOT, env=env, capture_output=True,
                           text=True, timeout=timeout)


def check_contract(doc: dict, *, job: str, task: str, primary: str) -> None:
    """Assert the metrics.json contract (docs/getting-started.md, "The job contract")."""
    assert CONTRACT_KEYS <= set(doc), CONTRACT_KEYS - set(doc)
    assert doc["job"] == job and doc["task"] == task and doc["primary_metric"] == primary
    assert doc["best_model"] in doc["models"]
    assert all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in doc["metrics"].values())
    assert primary in doc["metrics_ci"] and doc["metrics_ci"][primary][0] <= doc["metrics_ci"][primary][1]
    assert DATA_KEYS <= set(doc["data"])
    assert len(doc["data"]["sha256"]) == 64
    if task == "regression":
        assert set(doc["metrics"]) == {"rmse", "mae", "r2"}
        assert doc["metrics"]["rmse"] >= doc["metrics"]["mae"] >= 0 and doc["metrics"]["r2"] <= 1
    else:
        assert set(doc["metrics"]) == {"roc_auc", "accuracy", "balanced_accuracy", "f1_macro"}
        assert all(0.0 <= v <= 1.0 for v in doc["metrics"].values())


def read_metrics(out: Path) -> dict:
    return json.loads((out / "metrics.json").read_text())


# ---------------------------------------------------------------------------------------------
# Generators (in-process, fast)
# ---------------------------------------------------------------------------------------------
def _sha(frame) -> str:
    return hashlib.sha256(frame.to_csv(index=False).encode()).hexdigest()


def test_als_generator_is_seeded():
    a, b, c = synthetic.als_cohort(300, 7), synthetic.als_cohort(300, 7), synthetic.als_cohort(300, 8)
    assert _sha(a) == _sha(b)
    assert _sha(a) != _sha(c)
    assert list(a.columns) == synthetic.ALS_COLUMNS


def test_als_generator_has_documented_shape():
    df = synthetic.als_cohort(20_000, 0)
    assert 0.22 <= (df.onset_site == "bulbar").mean() <= 0.32
    assert 59 <= df.age_onset.mean() <= 63
    assert 10 <= df.diagnostic_delay_months.median() <= 13
    assert df.alsfrs_r_baseline.between(0, 48).all() and 36 <= df.alsfrs_r_baseline.mean() <= 40
    assert -1.1 <= df[synthetic.ALS_TARGET].mean() <= -0.7


def test_als_noise_floor_matches_the_generator():
    """The oracle (true signal) on a large cohort reaches exactly the documented floor."""
    floor = synthetic.als_noise_floor()
    oracle = synthetic.als_oracle(synthetic.als_cohort(50_000, 3))
    assert floor["rmse"] == synthetic.ALS_NOISE_SD
    assert oracle["rmse"] == pytest.approx(floor["rmse"], abs=0.005)
    assert oracle["r2"] == pytest.approx(floor["r2"], abs=0.01)
    assert 0.3 < floor["r2"] < 0.95


def test_mri_generator_is_seeded():
    a, b, c = synthetic.mri_slices(40, 1), synthetic.mri_slices(40, 1), synthetic.mri_slices(40, 2)
    assert a.sha256() == b.sha256()
    assert a.sha256() != c.sha256()
    assert a.images.shape == (40, 64, 64) and a.images.dtype == np.float32
    assert 0.0 <= a.images.min() and a.images.max() <= 1.0
    assert np.bincount(a.labels).tolist() == [10, 10, 10, 10]
    assert a.synthetic and a.source.startswith("synthetic:")


def test_mri_split_is_stratified_and_disjoint():
    from aimedres.training.train_brain_mri import stratified_split

    labels = np.repeat(np.arange(3), [10, 5, 3])
    split = stratified_split(labels, seed=0)
    parts = [set(split[k]) for k in ("train", "val", "test")]
    assert not (parts[0] & parts[1]) and not (parts[0] & parts[2]) and not (parts[1] & parts[2])
    assert set.union(*parts) == set(range(len(labels)))
    for k in ("train", "val", "test"):
        assert set(labels[split[k]]) == {0, 1, 2}  # every class in every part
    assert (split["test"] == stratified_split(labels, seed=0)["test"]).all()


# ---------------------------------------------------------------------------------------------
# ALS script
# ---------------------------------------------------------------------------------------------
ALS_SMOKE = ["--epochs", "1", "--folds", "2", "--repeats", "2", "--n-samples", "300"]


@pytest.mark.slow
def test_als_smoke_contract_and_determinism(tmp_path):
    out, again = tmp_path / "a", tmp_path / "b"
    proc = run_script(ALS, *ALS_SMOKE, "--output-dir", str(out))
    assert proc.returncode == 0, proc.stderr
    doc = read_metrics(out)
    check_contract(doc, job="als", task="regression", primary="rmse")
    assert doc["folds"] == 2 and doc["epochs"] == 1 and doc["seed"] == 42
    assert set(doc["models"]) >= {"elastic_net", "gradient_boosting"}
    data = doc["data"]
    assert data["synthetic"] is True and data["source"].startswith("synthetic:als_cohort")
    assert data["rows"] == 300
    assert data["noise_floor"]["rmse"] == synthetic.ALS_NOISE_SD and 0 < data["noise_floor"]["r2"] < 1
    assert "SYNTHETIC DATA" in proc.stdout + proc.stderr
    assert (out / "model.joblib").is_file()
    assert data["split"]["development"] == 240 and doc["test"]["rows"] == 60  # 20 % held out first
    assert set(doc["test"]["metrics"]) == {"rmse", "mae", "r2"} and "rmse" in doc["test"]["metrics_ci"]
    assert "corrected repeated-CV t" in doc["ci_method"] and doc["estimand"].startswith("mean over the 4")
    lines = (out / "predictions.csv").read_text().splitlines()
    assert lines[0] == "row,fold,repeat,y_true,score" and len(lines) == 1 + 2 * 240
    assert (out / "figures" / "predicted_vs_observed.png").is_file()
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["seed"] == 42 and manifest["data"]["sha256"] == data["sha256"]
    # same seed -> the same metrics, to the last digit, with one or two worker processes
    proc = run_script(ALS, *ALS_SMOKE, "--n-jobs", "2", "--output-dir", str(again))
    assert proc.returncode == 0, proc.stderr
    assert read_metrics(again)["metrics"] == doc["metrics"]
    assert read_metrics(again)["models"] == doc["models"]
    assert read_metrics(again)["data"]["sha256"] == data["sha256"]


def test_als_missing_data_file_exits_2(tmp_path):
    missing = tmp_path / "nope.csv"
    proc = run_script(ALS, "--data", str(missing), "--output-dir", str(tmp_path / "out"))
    assert proc.returncode == 2
    assert str(missing) in proc.stderr and "fvc_percent" in proc.stderr  # names file and columns
    assert not (tmp_path / "out" / "metrics.json").exists()


def test_als_data_missing_column_is_a_data_error(tmp_path):
    from aimedres.training import common, train_als

    csv = tmp_path / "als.csv"
    synthetic.als_cohort(50, 1).drop(columns=["fvc_percent"]).to_csv(csv, index=False)
    with pytest.raises(common.DataError, match="fvc_percent") as info:
        train_als.main(["--data", str(csv), "--output-dir", str(tmp_path / "out")])
    assert "als.csv" in str(info.value) and "expected columns" in str(info.value)
    assert not (tmp_path / "out").exists()


def test_als_data_non_numeric_column_is_a_data_error(tmp_path):
    from aimedres.training import common, train_als

    csv = tmp_path / "als.csv"
    frame = synthetic.als_cohort(50, 1)
    frame["bmi"] = "heavy"
    frame.to_csv(csv, index=False)
    with pytest.raises(common.DataError, match="'bmi' must be numeric"):
        train_als.main(["--data", str(csv), "--output-dir", str(tmp_path / "out")])


@pytest.mark.slow
def test_als_real_csv_is_not_synthetic(tmp_path):
    csv = tmp_path / "registry.csv"
    synthetic.als_cohort(120, 5).to_csv(csv, index=False)
    out = tmp_path / "out"
    proc = run_script(ALS, "--data", str(csv), "--epochs", "1", "--folds", "2", "--repeats", "1",
                      "--output-dir", str(out))
    assert proc.returncode == 0, proc.stderr
    doc = read_metrics(out)
    check_contract(doc, job="als", task="regression", primary="rmse")
    assert doc["data"]["synthetic"] is False
    assert doc["data"]["source"] == str(csv.resolve()) and doc["data"]["rows"] == 120
    assert "noise_floor" not in doc["data"]
    assert "SYNTHETIC" not in proc.stdout + proc.stderr


# ---------------------------------------------------------------------------------------------
# Brain MRI script
# ---------------------------------------------------------------------------------------------
MRI_SMOKE = ["--epochs", "1", "--n-samples", "200", "--n-jobs", "1"]


@pytest.mark.slow
def test_mri_smoke_contract_and_determinism(tmp_path):
    import torch

    from aimedres.training.mri import SmallCNN

    out, again = tmp_path / "a", tmp_path / "b"
    proc = run_script(MRI, *MRI_SMOKE, "--output-dir", str(out))
    assert proc.returncode == 0, proc.stderr
    doc = read_metrics(out)
    check_contract(doc, job="brain_mri", task="multiclass", primary="accuracy")
    assert doc["folds"] is None and doc["epochs"] == 1
    assert doc["data"]["synthetic"] is True and doc["data"]["source"].startswith("synthetic:mri_slices")
    assert doc["data"]["split"] == {"train": 120, "val": 40, "test": 40} and doc["data"]["split_by"] == "image"
    assert "held-out test" in doc["evaluation"] and "per patient" in doc["evaluation"]
    assert doc["test"]["subjects"] == 40 and "one machine" in doc["determinism"]
    assert doc["metrics_ci"]["accuracy"][0] <= doc["metrics"]["accuracy"] <= doc["metrics_ci"]["accuracy"][1]
    lines = (out / "predictions.csv").read_text().splitlines()
    assert lines[0].startswith("row,fold,repeat,y_true,score,y_pred,p_normal") and len(lines) == 41
    assert {p.name for p in (out / "figures").iterdir()} == {"samples.png", "confusion.png"}
    assert "SYNTHETIC DATA" in proc.stdout + proc.stderr
    ckpt = torch.load(out / "model.pt", weights_only=True)  # plain containers only: safe to load
    assert ckpt["classes"] == synthetic.MRI_CLASSES and ckpt["config"]["epochs"] == 1
    model = SmallCNN(ckpt["n_classes"], widths=tuple(ckpt["config"]["widths"]))
    model.load_state_dict(ckpt["state_dict"])
    assert (out / "manifest.json").is_file()
    # same seed -> the same metrics, to the last digit, whatever --n-jobs says (1 vs 2 threads given)
    proc = run_script(MRI, *MRI_SMOKE, "--n-jobs", "2", "--output-dir", str(again))
    assert proc.returncode == 0, proc.stderr
    assert read_metrics(again)["metrics"] == doc["metrics"]


def test_mri_predictions_are_averaged_per_patient():
    from aimedres.training.train_brain_mri import per_patient

    y = np.array([1, 1, 0, 0, 0])
    proba = np.array([[0.2, 0.8], [0.6, 0.4], [0.9, 0.1], [0.7, 0.3], [0.5, 0.5]])
    labels, p, ids = per_patient(y, proba, np.array(["b", "b", "a", "c", "c"]))
    assert list(ids) == ["a", "b", "c"] and list(labels) == [0, 1, 0]
    assert p == pytest.approx(np.array([[0.9, 0.1], [0.4, 0.6], [0.6, 0.4]]))
    same, q, _ = per_patient(y, proba, None)  # no ids: every image its own patient
    assert (same == y).all() and (q == proba).all()


@pytest.mark.slow
def test_mri_small_patient_tree_is_scored_per_patient_and_warns(tmp_path):
    _write_patient_tree(tmp_path / "scans", patients_per_class=3, slices=4)
    out = tmp_path / "out"
    proc = run_script(MRI, "--data-dir", str(tmp_path / "scans"), "--epochs", "1", "--image-size", "32",
                      "--output-dir", str(out))
    assert proc.returncode == 0, proc.stderr
    doc = read_metrics(out)
    assert doc["data"]["split_by"] == "patient" and doc["data"]["subjects"] == 6
    test = doc["test"]
    assert test["subjects"] == doc["data"]["patients"]["test"] < 10 and test["images"] == 4 * test["subjects"]
    assert any("subject(s) in the test split" in w for w in test["warnings"])
    assert "warning:" in proc.stderr and "test patients" in doc["ci_method"]


def test_mri_rejects_folds(tmp_path):
    proc = run_script(MRI, "--folds", "2", "--output-dir", str(tmp_path))
    assert proc.returncode == 2
    assert "--folds" in proc.stderr
    assert not (tmp_path / "metrics.json").exists()


def _write_png_tree(root: Path, n_per_class: int = 6) -> None:
    from PIL import Image

    rng = np.random.default_rng(0)
    for name, level in (("healthy", 60), ("lesion", 190)):
        (root / name).mkdir(parents=True)
        for i in range(n_per_class):
            arr = np.clip(rng.normal(level, 20, (40, 48, 3)), 0, 255).astype(np.uint8)  # RGB, not square
            Image.fromarray(arr).save(root / name / f"img{i}.png")


@pytest.mark.slow
def test_mri_data_dir_real_images(tmp_path):
    _write_png_tree(tmp_path / "scans")
    out = tmp_path / "out"
    proc = run_script(MRI, "--data-dir", str(tmp_path / "scans"), "--epochs", "1", "--image-size", "32",
                      "--output-dir", str(out))
    assert proc.returncode == 0, proc.stderr
    doc = read_metrics(out)
    check_contract(doc, job="brain_mri", task="binary", primary="accuracy")
    assert doc["data"]["synthetic"] is False and doc["data"]["classes"] == ["healthy", "lesion"]
    assert doc["data"]["rows"] == 12 and doc["data"]["features"] == 32 * 32
    assert doc["data"]["split_by"] == "image" and "both sides of the split" in proc.stderr
    assert "SYNTHETIC" not in proc.stdout + proc.stderr


def _write_patient_tree(root: Path, patients_per_class: int = 5, slices: int = 3, flat: bool = False) -> None:
    from PIL import Image

    rng = np.random.default_rng(1)
    for name, level in (("healthy", 60), ("lesion", 190)):
        for p in range(patients_per_class):
            pid = f"{name[0].upper()}{p:03d}"
            folder = root / name if flat else root / name / pid
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(slices):
                arr = np.clip(rng.normal(level, 20, (32, 32)), 0, 255).astype(np.uint8)
                Image.fromarray(arr).save(folder / (f"{pid}_slice{i}.png" if flat else f"slice{i}.png"))


@pytest.mark.parametrize("flat", [False, True])
def test_mri_real_images_are_split_by_patient(tmp_path, flat):
    from aimedres.training import mri
    from aimedres.training.train_brain_mri import grouped_split

    _write_patient_tree(tmp_path / "scans", patients_per_class=6, flat=flat)
    data = mri.load_image_folder(tmp_path / "scans", size=32, patient_pattern=r"^([A-Z]\d+)_" if flat else None)
    assert data.groups is not None and len(set(data.groups)) == 12 and len(data.labels) == 36
    split = grouped_split(data.labels, data.groups, seed=0)
    sets = {k: set(data.groups[v]) for k, v in split.items()}
    assert not (sets["train"] & sets["test"]) and not (sets["val"] & sets["test"]) and not (sets["train"] & sets["val"])
    assert sum(len(v) for v in split.values()) == 36


def test_mri_flat_folder_without_pattern_warns_and_bad_pattern_is_an_error(tmp_path):
    from aimedres.training import common, mri

    _write_patient_tree(tmp_path / "scans", flat=True)
    assert mri.load_image_folder(tmp_path / "scans", size=32).groups is None
    with pytest.raises(common.DataError, match="does not match --patient-pattern"):
        mri.load_image_folder(tmp_path / "scans", size=32, patient_pattern=r"^patient(\d+)")
    proc = run_script(MRI, "--patient-pattern", "(", "--data-dir", str(tmp_path / "scans"),
                      "--output-dir", str(tmp_path / "out"))
    assert proc.returncode == 2 and "not a regular expression" in proc.stderr


def test_mri_missing_data_dir_exits_2(tmp_path):
    root, out = tmp_path / "scans", tmp_path / "out"
    proc = run_script(MRI, "--data-dir", str(root), "--output-dir", str(out))
    assert proc.returncode == 2, proc.stderr
    assert "no such directory" in proc.stderr and str(root) in proc.stderr
    assert not (out / "metrics.json").exists()


@pytest.mark.parametrize("layout, message", [
    ("no_classes", "class folder"),
    ("one_class", "found 1 class folder"),
    ("unreadable", "cannot read image"),
    ("too_few", "fewer than 3 images"),
])
def test_mri_bad_data_dir_is_a_data_error(tmp_path, layout, message):
    from aimedres.training import common, train_brain_mri

    root = tmp_path / "scans"
    if layout == "no_classes":
        root.mkdir()
    elif layout == "one_class":
        _write_png_tree(root, n_per_class=3)
        for f in (root / "lesion").iterdir():
            f.unlink()
        (root / "lesion").rmdir()
    elif layout == "unreadable":
        _write_png_tree(root, n_per_class=3)
        (root / "lesion" / "broken.png").write_bytes(b"not a png")
    elif layout == "too_few":
        _write_png_tree(root, n_per_class=2)
    out = tmp_path / "out"
    with pytest.raises(common.DataError, match=message) as info:
        train_brain_mri.main(["--data-dir", str(root), "--output-dir", str(out), "--n-jobs", "1"])
    assert str(root) in str(info.value)
    assert not (out / "metrics.json").exists()


# ---------------------------------------------------------------------------------------------
# What the plugin's static flag analysis sees (it decides which shared flags each job gets)
# ---------------------------------------------------------------------------------------------
def test_plugin_sees_the_flags_of_these_jobs():
    from training_plugin.flags import Analyzer

    analyzer = Analyzer(ROOT)
    als, mri = analyzer.analyze(ALS), analyzer.analyze(MRI)
    assert als.resolved and mri.resolved
    for flag in ("--epochs", "--folds", "--repeats", "--seed", "--output-dir", "--n-jobs", "--data", "--n-samples"):
        assert als.find(flag) is not None, flag
    for flag in ("--epochs", "--seed", "--output-dir", "--n-jobs", "--data-dir", "--patient-pattern", "--batch-size",
                 "--lr"):
        assert mri.find(flag) is not None, flag


def test_plugin_does_not_give_brain_mri_folds():
    from training_plugin.flags import Analyzer

    assert Analyzer(ROOT).analyze(MRI).find("--folds") is None
