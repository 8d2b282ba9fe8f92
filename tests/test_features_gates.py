"""Quality gates and regressions against a baseline (training_plugin.features.gates)."""

from __future__ import annotations

import json
import textwrap
import xml.etree.ElementTree as ET

import pytest

pytest_plugins = ["pytester"]

#: A fake training script: writes metrics.json from the literals given (via helper values).
JOB = """\
import argparse, json, os
{imports}
p = argparse.ArgumentParser()
p.add_argument("--epochs", type=int, default=5)
p.parse_args()
out = os.environ["TRAINING_OUTPUT_DIR"]
doc = {{"job": os.environ["TRAINING_JOB_ID"], "primary_metric": {primary!r},
        "metrics": {metrics}, "selection": {selection}}}
json.dump(doc, open(os.path.join(out, "metrics.json"), "w"))
"""


def job(metrics: str, primary: str = "roc_auc", selection: str = "{}", imports: str = "") -> str:
    """Source of a fake job; ``metrics`` is a Python expression (may use imported names)."""
    return JOB.format(imports=imports, primary=primary, metrics=metrics, selection=selection)


def make(pytester: pytest.Pytester, files: dict[str, str], ini: str = "") -> None:
    pytester.makeini("[pytest]\n" + textwrap.dedent(ini))
    for rel, text in files.items():
        path = pytester.path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))


def run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    return pytester.runpytest("-p", "training_plugin", "-p", "no:randomly", *args)


def junit_props(pytester: pytest.Pytester, name: str = "junit.xml") -> dict[str, dict[str, str]]:
    root = ET.parse(pytester.path / name).getroot()
    return {
        case.get("name"): {p.get("name"): p.get("value") for p in case.iter("property")}
        for case in root.iter("testcase")
    }


# -- gates ----------------------------------------------------------------------------------------

def test_a_gate_that_holds_and_one_that_fails(pytester: pytest.Pytester) -> None:
    make(pytester, {
        "train_clf.py": job('{"roc_auc": 0.91, "accuracy": 0.8}'),
        "train_reg.py": job('{"rmse": 0.5, "r2": 0.3}', primary="rmse"),
        "pyproject.toml": """
            [tool.training_plugin.jobs.clf]
            min = { roc_auc = 0.88 }
            [tool.training_plugin.jobs.reg]
            max = { rmse = 0.35 }
        """,
    })
    result = run(pytester)
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines([
        "job 'reg': rmse 0.5 is above the maximum 0.35 "
        "(pyproject.toml [[]tool.training_plugin.jobs.reg[]] max)",
        "outputs kept in *reg",
    ])
    assert (pytester.path / "training-results" / "reg" / "metrics.json").exists()


def test_ini_gate_applies_to_every_job_and_the_job_table_wins(pytester: pytest.Pytester) -> None:
    make(pytester, {
        "train_a.py": job('{"roc_auc": 0.70}'),
        "train_b.py": job('{"roc_auc": 0.70}'),
        "pyproject.toml": """
            [tool.training_plugin.jobs.b]
            min = { roc_auc = 0.6 }
        """,
    }, ini="training_min = roc_auc = 0.75\n")
    result = run(pytester)
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*job 'a': roc_auc 0.7 is below the minimum 0.75 "
                                 "(tox.ini training_min)*"])


def test_a_gate_on_a_missing_metric_or_no_metrics_json_fails(pytester: pytest.Pytester) -> None:
    make(pytester, {
        "train_a.py": job('{"accuracy": 0.8, "f1_macro": 0.7}'),
        "train_none.py": "print('no metrics written')\n",
        "pyproject.toml": """
            [tool.training_plugin.jobs.a]
            min = { roc_auc = 0.88 }
            [tool.training_plugin.jobs.none]
            min = { roc_auc = 0.88 }
        """,
    })
    result = run(pytester)
    result.assert_outcomes(failed=2)
    result.stdout.fnmatch_lines_random([
        "*job 'a': gate roc_auc minimum 0.88 (*): roc_auc not in metrics.json; it has: "
        "accuracy, f1_macro*",
        "*job 'none': gate roc_auc minimum 0.88 (*): the job wrote no metrics.json*",
    ])


def test_a_nested_metric_is_gated_by_its_dotted_key(pytester: pytest.Pytester) -> None:
    make(pytester, {
        "train_a.py": job('{"roc_auc": 0.95}', selection='{"roc_auc": 0.85}'),
        "pyproject.toml": """
            [tool.training_plugin.jobs.a]
            min = { "selection.roc_auc" = 0.9 }
        """,
    })
    result = run(pytester)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*job 'a': selection.roc_auc 0.85 is below the minimum 0.9*"])


def test_bad_ini_gate_is_a_usage_error(pytester: pytest.Pytester) -> None:
    make(pytester, {"train_a.py": job('{"roc_auc": 0.9}')}, ini="training_min = roc_auc\n")
    result = run(pytester)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*training_min: 'roc_auc' is not 'metric = number'*"])
    assert not (pytester.path / "training-results").exists()


# -- baselines ------------------------------------------------------------------------------------

def test_save_and_compare_a_baseline(pytester: pytest.Pytester) -> None:
    make(pytester, {
        "helper.py": "AUC = 0.9\n",
        "train_a.py": job('{"roc_auc": helper.AUC, "accuracy": 0.8}', imports="import helper"),
        "train_broken.py": "raise SystemExit(3)\n",
    }, ini="training_baseline = base.json\n")
    saved = run(pytester, "--save-baseline")
    saved.assert_outcomes(passed=1, failed=1)
    saved.stdout.fnmatch_lines(["training: baseline of 1 passing job(s) saved to base.json"])
    data = json.loads((pytester.path / "base.json").read_text())
    assert set(data) >= {"commit", "date", "jobs"}
    assert list(data["jobs"]) == ["a"]  # only jobs that passed
    assert data["jobs"]["a"]["argv"] == ["train_a.py"]
    assert data["jobs"]["a"]["metrics"] == {"roc_auc": 0.9, "accuracy": 0.8}
    assert data["jobs"]["a"]["nodeid"] == "train_a.py::a"  # orders a fresh clone's first run
    assert data["jobs"]["a"]["duration_s"] > 0

    same = run(pytester, "--compare=base.json", "--junitxml=junit.xml", "-k", "not broken")
    same.assert_outcomes(passed=1)
    same.stdout.fnmatch_lines(["a * passed * roc_auc=0.9000 * roc_auc +0 vs baseline"])
    props = junit_props(pytester)["a"]
    assert props["baseline.roc_auc"] == "0.9" and props["delta.roc_auc"] == "0.0"


def test_a_regression_after_a_deliberate_change_turns_red(pytester: pytest.Pytester) -> None:
    make(pytester, {
        "helper.py": "AUC = 0.917\n",
        "train_a.py": job('{"roc_auc": helper.AUC, "accuracy": 0.8}', imports="import helper"),
    }, ini="training_tolerance = 0.02\n")
    run(pytester, "--save-baseline=training-baseline.json").assert_outcomes(passed=1)
    (pytester.path / "helper.py").write_text("AUC = 0.905\n")  # within tolerance
    run(pytester, "--compare=training-baseline.json").assert_outcomes(passed=1)
    (pytester.path / "helper.py").write_text("AUC = 0.871\n")  # a real regression
    result = run(pytester, "--compare=training-baseline.json", "--junitxml=junit.xml")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines([
        "*job 'a': roc_auc 0.871 is 0.046 below the baseline 0.917 (training-baseline.json*); "
        "tolerance 0.02 (tox.ini training_tolerance)*",
        "a * failed * roc_auc=0.8710 * roc_auc -0.046 vs baseline REGRESSED",
    ])
    assert junit_props(pytester)["a"]["delta.roc_auc"] == "-0.046"


def test_lower_is_better_metrics_and_table_directions(pytester: pytest.Pytester) -> None:
    make(pytester, {
        "helper.py": "RMSE = 0.40\nLOSSY = 5.0\n",
        "train_reg.py": job('{"rmse": helper.RMSE}', primary="rmse", imports="import helper"),
        "train_odd.py": job('{"wer": helper.LOSSY}', primary="wer", imports="import helper"),
        "pyproject.toml": """
            [tool.training_plugin.jobs.odd]
            direction = { wer = "lower" }
        """,
    })
    run(pytester, "--save-baseline=b.json").assert_outcomes(passed=2)
    (pytester.path / "helper.py").write_text("RMSE = 0.30\nLOSSY = 4.0\n")  # both improve
    run(pytester, "--compare=b.json").assert_outcomes(passed=2)
    (pytester.path / "helper.py").write_text("RMSE = 0.45\nLOSSY = 6.0\n")  # both worsen
    result = run(pytester, "--compare=b.json")
    result.assert_outcomes(failed=2)
    result.stdout.fnmatch_lines_random([
        "*job 'reg': rmse 0.45 is 0.05 above the baseline 0.4 (b.json*",
        "*job 'odd': wer 6 is 1 above the baseline 5 (b.json*",
    ])


def test_tolerance_precedence_cli_over_job_table_over_ini(pytester: pytest.Pytester) -> None:
    make(pytester, {
        "helper.py": "AUC = 0.90\n",
        "train_a.py": job('{"roc_auc": helper.AUC}', imports="import helper"),
    }, ini="training_tolerance = 0.01\n")
    run(pytester, "--save-baseline=b.json").assert_outcomes(passed=1)
    (pytester.path / "helper.py").write_text("AUC = 0.87\n")  # a drop of 0.03
    ini_only = run(pytester, "--compare=b.json")
    ini_only.assert_outcomes(failed=1)
    ini_only.stdout.fnmatch_lines(["*tolerance 0.01 (tox.ini training_tolerance)*"])
    (pytester.path / "pyproject.toml").write_text(
        '[tool.training_plugin.jobs.a]\ntolerance = { roc_auc = "5%" }\n'
    )
    run(pytester, "--compare=b.json").assert_outcomes(passed=1)  # 5% of 0.9 = 0.045 > 0.03
    cli = run(pytester, "--compare=b.json", "--max-regression=roc_auc=0.02")
    cli.assert_outcomes(failed=1)
    cli.stdout.fnmatch_lines(["*tolerance 0.02 (--max-regression)*"])


def test_a_job_whose_argv_differs_is_not_compared(pytester: pytest.Pytester) -> None:
    make(pytester, {
        "helper.py": "AUC = 0.90\n",
        "train_a.py": job('{"roc_auc": helper.AUC}', imports="import helper"),
    })
    run(pytester, "--save-baseline=b.json").assert_outcomes(passed=1)
    (pytester.path / "helper.py").write_text("AUC = 0.50\n")
    result = run(pytester, "--compare=b.json", "--epochs", "1", "--junitxml=junit.xml")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(
        ["a * passed * not compared with baseline: argv differs (--epochs 1 added)"]
    )
    assert "argv differs" in junit_props(pytester)["a"]["comparison"]


def test_compare_without_a_baseline_file_is_a_usage_error(pytester: pytest.Pytester) -> None:
    make(pytester, {"train_a.py": job('{"roc_auc": 0.9}')})
    result = run(pytester, "--compare=nope.json")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*no baseline file *nope.json; write one with "
                                 "--save-baseline=nope.json*"])
    assert not (pytester.path / "training-results").exists()
