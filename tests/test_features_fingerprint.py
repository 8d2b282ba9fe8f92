"""Fingerprints, --skip-unchanged and "changed, and why" (training_plugin.features.fingerprint)."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import pytest

from test_features_gates import job, make, run
from training_plugin.features import fingerprint

pytest_plugins = ["pytester"]


def project(pytester: pytest.Pytester) -> None:
    """Two jobs: ``a`` imports ``pkg.helper`` (through ``pkg``), ``b`` imports nothing local;
    ``a`` reads a config named in its arguments, ``b`` declares a data file as an input."""
    make(pytester, {
        "pkg/__init__.py": "",
        "pkg/helper.py": "AUC = 0.9\n",
        "pkg/models.py": "from . import helper\nVALUE = helper.AUC\n",
        "jobs/train_a.py": job('{"roc_auc": models.VALUE}', imports="from pkg import models"),
        "jobs/train_b.py": job('{"roc_auc": 0.8}'),
        "configs/a.yaml": "depth: 3\n",
        "data/b.csv": "x,y\n1,2\n",
        "pyproject.toml": """
            [tool.training_plugin.jobs.a]
            args = ["--config", "configs/a.yaml"]
            [tool.training_plugin.jobs.b]
            inputs = ["data/*.csv"]
        """,
    })
    (pytester.path / "jobs" / "train_a.py").write_text(
        (pytester.path / "jobs" / "train_a.py").read_text().replace(
            'p.add_argument("--epochs"', 'p.add_argument("--config")\np.add_argument("--epochs"')
    )
    # the scripts import `pkg` from rootdir, as a repository's scripts do from src/
    (pytester.path / "jobs" / "train_a.py").write_text(
        "import sys; sys.path.insert(0, '.')\n" + (pytester.path / "jobs" / "train_a.py").read_text()
    )


def collect(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    result = run(pytester, "--collect-only", *args)
    assert result.ret == 0, result.stdout.str()
    return result


def test_a_helper_module_edit_makes_a_job_stale(pytester: pytest.Pytester) -> None:
    project(pytester)
    collect(pytester).stdout.fnmatch_lines(
        ["up to date? (each job against its last passing run in training-results/history.jsonl)",
         "    a: changed: no passing run"])
    run(pytester).assert_outcomes(passed=2)
    collect(pytester).stdout.fnmatch_lines_random([
        "    a: unchanged since * UTC (roc_auc 0.9)",
        "    b: unchanged since * UTC (roc_auc 0.8)",
    ])
    (pytester.path / "pkg" / "helper.py").write_text("AUC = 0.85\n")  # two imports away
    collect(pytester).stdout.fnmatch_lines_random([
        "    a: changed since * UTC: pkg/helper.py edited",
        "    b: unchanged since *",
    ])
    result = run(pytester, "--skip-unchanged")
    result.assert_outcomes(passed=1, skipped=1)
    result.stdout.fnmatch_lines_random([
        "a * passed * roc_auc=0.8500*", "b * skipped * roc_auc=0.8000*"])


def test_collect_only_says_why_args_config_and_inputs_changed(pytester: pytest.Pytester) -> None:
    project(pytester)
    run(pytester).assert_outcomes(passed=2)
    (pytester.path / "configs" / "a.yaml").write_text("depth: 4\n")
    (pytester.path / "data" / "b.csv").write_text("x,y\n1,3\n")
    collect(pytester, "--epochs", "10").stdout.fnmatch_lines_random([
        "    a: changed since * UTC: configs/a.yaml edited; --epochs 10 added",
        "    b: changed since * UTC: data/b.csv edited; --epochs 10 added",
    ])
    run(pytester, "--epochs", "200").assert_outcomes(passed=2)
    collect(pytester, "--epochs", "10").stdout.fnmatch_lines(
        ["    a: changed since * UTC: --epochs 10 instead of 200"])


def test_an_unchanged_job_is_skipped_under_xdist(pytester: pytest.Pytester) -> None:
    project(pytester)
    run(pytester, "--skip-unchanged").assert_outcomes(passed=2)  # no history yet: both run
    (pytester.path / "data" / "b.csv").write_text("x,y\n5,6\n")
    result = pytester.runpytest_subprocess(
        "-p", "training_plugin", "-p", "no:randomly", "-n", "2", "--skip-unchanged", "-rs",
        "--junitxml=junit.xml",
    )
    result.assert_outcomes(passed=1, skipped=1)
    result.stdout.fnmatch_lines_random([
        "SKIPPED * unchanged since * UTC; roc_auc 0.9",
        "a * skipped * roc_auc=0.9000*",
        "b * passed * roc_auc=0.8000*",
    ])
    root = ET.parse(pytester.path / "junit.xml").getroot()
    props = {c.get("name"): {p.get("name"): p.get("value") for p in c.iter("property")}
             for c in root.iter("testcase")}
    assert props["a"]["roc_auc"] == "0.9"  # the last metrics of a skipped job
    lines = [json.loads(x) for x in
             (pytester.path / "training-results" / "history.jsonl").read_text().splitlines()]
    skipped = [e for e in lines if e["outcome"] == "skipped"]
    assert [(e["job"], e["metrics"]) for e in skipped] == [("a", {"roc_auc": 0.9})]
    assert skipped[0]["fingerprint"] == lines[0]["fingerprint"] or \
        skipped[0]["fingerprint"] == lines[1]["fingerprint"]


def test_without_skip_unchanged_every_job_runs(pytester: pytest.Pytester) -> None:
    """The jobs that --skip-unchanged skips as unchanged run again without it."""
    project(pytester)
    run(pytester).assert_outcomes(passed=2)
    run(pytester, "--skip-unchanged").assert_outcomes(skipped=2)
    run(pytester).assert_outcomes(passed=2)
    history = pytester.path / "training-results" / "history.jsonl"
    outcomes = [json.loads(line)["outcome"] for line in history.read_text().splitlines()]
    assert outcomes == ["passed"] * 2 + ["skipped"] * 2 + ["passed"] * 2


def test_package_versions_and_their_change_in_words() -> None:
    versions = fingerprint.package_versions({"pytest"})
    assert "pytest" in versions and "pluggy" in versions  # a requirement, transitively
    old = {"files": {"src/common.py": "1"}, "argv": ["x.py", "--epochs", "200"], "env": {},
           "python": "CPython 3.11.7", "packages": {"scikit-learn": "1.8.0"}}
    new = {"files": {"src/common.py": "2"}, "argv": ["x.py", "--epochs", "10"], "env": {"A": "1"},
           "python": "CPython 3.11.7", "packages": {"scikit-learn": "1.9.1"}}
    assert fingerprint.describe_change(old, new) == [
        "src/common.py edited", "--epochs 10 instead of 200", "env A=1 set",
        "scikit-learn 1.9.1 instead of 1.8.0",
    ]
