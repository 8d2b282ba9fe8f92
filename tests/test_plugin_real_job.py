"""One real AIMedRes job end to end through ``pytest -p training_plugin`` from the repository
root: the job contract's metrics.json, the JUnit properties, the summary table and summary.json.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from fakejobs import CONTRACT_KEYS, DATA_KEYS
from training_plugin.results import METRICS_FILE, SUMMARY_FILE

REPO = Path(__file__).resolve().parents[1]
CLASSIFICATION = {"roc_auc", "accuracy", "balanced_accuracy", "f1_macro"}


@pytest.mark.slow
@pytest.mark.skipif(not (REPO / "pytest.ini").exists(), reason="needs the repository checkout")
def test_a_real_job_trains_and_reports_through_the_plugin(tmp_path: Path) -> None:
    out = tmp_path / "out"
    junit = tmp_path / "j.xml"
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTEST_ADDOPTS", "PYTEST_XDIST_WORKER", "PYTEST_CURRENT_TEST")}
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "training_plugin", "-p", "no:cacheprovider",
         "-k", "model and not baseline", "--epochs", "1", "--folds", "2",
         "--train-arg", "repeats=1", f"--output-dir={out}", f"--junitxml={junit}"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=900,
    )
    text = proc.stdout + proc.stderr
    assert proc.returncode == 0, text
    assert "1 passed" in text

    # the job contract: metrics.json in <output-dir>/<id>/, next to the plugin's train.log
    job_dir = out / "model"
    assert (job_dir / "train.log").is_file()
    doc = json.loads((job_dir / METRICS_FILE).read_text())
    assert CONTRACT_KEYS <= set(doc), set(doc) ^ CONTRACT_KEYS
    assert DATA_KEYS <= set(doc["data"])
    assert doc["job"] == "model" and doc["task"] == "binary"
    assert doc["folds"] == 2 and doc["epochs"] == 1  # the shared flags reached the script
    assert doc["data"]["synthetic"] is False
    primary = doc["primary_metric"]
    assert primary == "roc_auc" and CLASSIFICATION <= set(doc["metrics"])
    assert all(0.0 <= doc["metrics"][m] <= 1.0 for m in CLASSIFICATION)  # fractions
    assert doc["best_model"] in doc["models"]
    value = doc["metrics"][primary]

    # JUnit: one testcase with the metrics as properties
    cases = {case.get("name"): case for case in ET.parse(junit).iter("testcase")}
    assert set(cases) == {"model"}
    props = {p.get("name"): p.get("value") for p in cases["model"].iter("property")}
    assert props["primary_metric"] == primary
    assert math.isclose(float(props[primary]), value)
    assert props["data.synthetic"] == "false"

    # the summary table and summary.json
    rows = [line.split() for line in proc.stdout.splitlines() if line.startswith("model ")]
    assert rows and rows[-1][1] == "passed" and f"{primary}={value:.4f}" in rows[-1], text
    assert f"summary: {out / SUMMARY_FILE}" in proc.stdout
    summary = json.loads((out / SUMMARY_FILE).read_text())
    (job,) = summary["jobs"]
    assert job["id"] == "model" and job["outcome"] == "passed"
    assert job["primary_metric"] == {"name": primary, "value": value}
    assert job["synthetic"] is False
    assert job["argv"][1:] == ["mlops/pipelines/train_model.py", "--epochs", "1", "--folds", "2",
                               "--repeats", "1", "--output-dir", str(job_dir)]
