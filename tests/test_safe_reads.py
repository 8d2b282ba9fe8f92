"""Every file the plugin reads is validated (training_plugin.schema): a bad history line,
metrics.json, fingerprint.json or manifest is a one-line warning naming the file and line, a
bad baseline entry is a usage error naming the entry; never a traceback.  Reports and MLflow
skip symlinked files."""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path

import pytest
from test_features_gates import job, make, run

from training_plugin import results, schema, store
from training_plugin.features import baseline, fingerprint

pytest_plugins = ["pytester"]

HISTORY = "training-results/history.jsonl"
#: A line (or document) nested 200,000 deep: past any recursion limit.
DEEP = "[" * 200_000 + "]" * 200_000
HUGE = 10 ** 399  # 400 digits


def output(result: pytest.RunResult) -> str:
    return "\n".join(result.outlines + result.errlines)


def assert_no_traceback(result: pytest.RunResult) -> None:
    text = output(result)
    assert "Traceback" not in text and "INTERNALERROR" not in text, text


def first_run(pytester: pytest.Pytester, *args: str) -> tuple[Path, dict]:
    """One passing run of job ``a`` (roc_auc 0.9): its history file and line."""
    make(pytester, {"train_a.py": job('{"roc_auc": 0.9}')})
    run(pytester, *args).assert_outcomes(passed=1)
    path = pytester.path / HISTORY
    return path, json.loads(path.read_text().splitlines()[0])


def append(path: Path, text: str) -> None:
    with open(path, "a") as f:
        f.write(text + "\n")


# -- history.jsonl ----------------------------------------------------------------------------
@pytest.mark.parametrize("metrics, problem", [
    ([0.9], "'metrics' is a list, not an object*"),
    ("0.9", "'metrics' is a string, not an object*"),
    ({"roc_auc": HUGE}, "holds a 400-digit integer*"),
], ids=["list", "string", "huge-int"])
def test_a_bad_history_line_is_skipped_with_a_warning(pytester: pytest.Pytester, metrics,
                                                      problem: str) -> None:
    path, line = first_run(pytester)
    append(path, json.dumps(dict(line, metrics=metrics)))  # the job's last passing run
    result = run(pytester)
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines([f"*history.jsonl line 2*{problem}; line skipped*"])
    result.stdout.fnmatch_lines(["a * passed * roc_auc +0 vs last run*"])  # line 1 is used
    assert_no_traceback(result)


@pytest.mark.parametrize("args", [("--collect-only",), ()], ids=["collect-only", "run"])
def test_a_history_line_nested_too_deep_is_skipped(pytester: pytest.Pytester, args) -> None:
    path, _ = first_run(pytester)
    append(path, '{"job": "a", "outcome": "passed", "metrics": ' + DEEP + "}")
    result = run(pytester, *args)
    assert result.ret == pytest.ExitCode.OK, output(result)
    result.stdout.fnmatch_lines(["*history.jsonl line 2 is nested deeper than 100 levels*"])
    assert_no_traceback(result)


def test_a_history_line_over_the_size_limit_is_skipped(pytester: pytest.Pytester,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    path, line = first_run(pytester)
    append(path, json.dumps(dict(line, story="x" * 5000)))
    monkeypatch.setattr(results, "MAX_JSON_BYTES", 4096)
    result = run(pytester, "--collect-only")
    assert result.ret == pytest.ExitCode.OK, output(result)
    result.stdout.fnmatch_lines(["*history.jsonl line 2 is longer than 4096 bytes*"])


# -- the baseline -----------------------------------------------------------------------------
@pytest.mark.parametrize("change, problem", [
    ({"metrics": [0.9]}, "'metrics' is a list, not an object*"),
    ({"argv": 5}, "'argv' is a number, not a list of strings"),
    ({"metrics": {"roc_auc": HUGE}}, "'metrics' entry 'roc_auc' is a 400-digit integer*"),
    ({"duration_s": float("nan")}, "'duration_s' is NaN, not a finite number"),
], ids=["metrics-list", "argv-number", "huge-int", "nan"])
def test_a_bad_baseline_entry_is_a_usage_error_naming_it(pytester: pytest.Pytester, change,
                                                         problem: str) -> None:
    first_run(pytester, "--save-baseline")
    path = pytester.path / "training-baseline.json"
    data = json.loads(path.read_text())
    data["jobs"]["a"].update(change)
    path.write_text(json.dumps(data, indent=2))
    result = run(pytester, "--compare")
    assert result.ret == pytest.ExitCode.USAGE_ERROR, output(result)
    result.stderr.fnmatch_lines([f"*training-baseline.json: the entry of job 'a': {problem}; "
                                 f"fix or remove that entry*"])
    assert_no_traceback(result)


def test_a_baseline_nested_too_deep_is_a_usage_error(pytester: pytest.Pytester) -> None:
    make(pytester, {"train_a.py": job('{"roc_auc": 0.9}'),
                    "training-baseline.json": '{"jobs": {"a": {"metrics": ' + DEEP + "}}}"})
    result = run(pytester, "--compare")
    assert result.ret == pytest.ExitCode.USAGE_ERROR, output(result)
    result.stderr.fnmatch_lines(["*training-baseline.json is nested deeper than 100 levels "
                                 "(line 1); not a readable baseline file*--save-baseline*"])
    assert_no_traceback(result)


# -- metrics.json -----------------------------------------------------------------------------
RAW_JOB = """\
import os
text = {text}
open(os.path.join(os.environ["TRAINING_OUTPUT_DIR"], "metrics.json"), "w").write(text)
"""


@pytest.mark.parametrize("text, problem", [
    ("'{\"metrics\": {\"roc_auc\": 0.9}, \"x\": ' + '[' * 200000 + ']' * 200000 + '}'",
     "is nested deeper than 100 levels (line 1)"),
    ("'{\"metrics\": {\"roc_auc\": 0.9, \"n\": 1' + '0' * 399 + '}}'",
     "holds a 400-digit integer, over the limit of 20 digits (line 1)"),
], ids=["deep", "huge-int"])
def test_a_malformed_metrics_json_is_a_warning(pytester: pytest.Pytester, text: str,
                                               problem: str) -> None:
    make(pytester, {"train_a.py": RAW_JOB.format(text=text)})
    result = run(pytester)
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines([f"*training job 'a': *metrics.json {problem}*",
                                 "a * passed * metrics.json malformed*"])
    assert_no_traceback(result)


def test_a_metrics_json_over_the_size_limit_is_too_large(pytester: pytest.Pytester,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(results, "MAX_JSON_BYTES", 1000)
    text = "'{\"metrics\": {\"roc_auc\": 0.9}, \"pad\": \"' + 'x' * 2000 + '\"}'"
    make(pytester, {"train_a.py": RAW_JOB.format(text=text)})
    result = run(pytester)
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*metrics.json is too large (over 1000 bytes, the limit)*"])


def test_a_skipped_jobs_bad_metrics_json_is_a_warning(pytester: pytest.Pytester) -> None:
    first_run(pytester)
    (pytester.path / "training-results/a/metrics.json").write_text('{"metrics": ' + DEEP + "}")
    result = run(pytester, "--skip-unchanged")
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines(["*metrics.json is nested deeper than 100 levels*not used*"])
    assert_no_traceback(result)


# -- fingerprint.json -------------------------------------------------------------------------
@pytest.mark.parametrize("rewrite, problem", [
    (lambda fp: json.dumps(dict(fp, files=list(fp["files"]))), ": 'files' is a list, not an*"),
    (lambda fp: '{"sha256": "%s", "files": %s}' % (fp["sha256"], DEEP),
     " is nested deeper than 100 levels (line 1)"),
], ids=["files-list", "deep"])
def test_a_bad_fingerprint_json_is_a_warning(pytester: pytest.Pytester, rewrite,
                                             problem: str) -> None:
    first_run(pytester)
    path = pytester.path / "training-results/a/fingerprint.json"
    path.write_text(rewrite(json.loads(path.read_text())))
    (pytester.path / "train_a.py").write_text(job('{"roc_auc": 0.8}'))  # changed since
    result = run(pytester, "--collect-only")
    assert result.ret == pytest.ExitCode.OK, output(result)
    result.stdout.fnmatch_lines([
        "*a: changed since * UTC: what changed is unknown*",
        f"*fingerprint.json{problem}; not used*",
    ])
    assert_no_traceback(result)


# -- fuzzing every reader ---------------------------------------------------------------------
hypothesis = pytest.importorskip("hypothesis", reason="pip install -e '.[test]'")
st = hypothesis.strategies

JSON = st.recursive(
    st.none() | st.booleans() | st.floats() | st.integers(min_value=-(10 ** 30),
                                                          max_value=10 ** 30)
    | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner,
                                                                max_size=4),
    max_leaves=20,
)
#: Documents shaped like the files, with random values where each key is expected.
KEYS = ["job", "outcome", "metrics", "primary_metric", "argv", "commit", "time", "duration_s",
        "synthetic", "fingerprint", "jobs", "sha256", "files", "env", "packages", "data"]
SHAPED = st.dictionaries(st.sampled_from(KEYS), JSON | st.dictionaries(
    st.sampled_from(["a", "roc_auc", "x"]), JSON, max_size=3), max_size=8)


def texts() -> st.SearchStrategy[bytes]:
    def dump(doc) -> bytes:
        return json.dumps(doc).encode()

    nested = st.integers(0, 3000).map(lambda n: ("[" * n + "]" * n).encode())
    return (JSON.map(dump) | SHAPED.map(dump) | st.binary(max_size=200) | nested
            | SHAPED.map(lambda d: dump(d)[: max(1, len(dump(d)) // 2)]))


def clean(value) -> bool:
    """Only JSON values with finite numbers and modest integers."""
    if isinstance(value, dict):
        return all(isinstance(k, str) and clean(v) for k, v in value.items())
    if isinstance(value, list):
        return all(clean(v) for v in value)
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, int) and not isinstance(value, bool):
        return len(str(abs(value))) <= schema.MAX_INT_DIGITS
    return value is None or isinstance(value, (str, bool))


@hypothesis.settings(max_examples=200, deadline=None,
                     suppress_health_check=[hypothesis.HealthCheck.function_scoped_fixture])
@hypothesis.given(data=texts())
def test_every_reader_warns_or_returns_a_clean_value(tmp_path: Path, data: bytes) -> None:
    (tmp_path / "metrics.json").write_bytes(data)
    (tmp_path / "history.jsonl").write_bytes(data + b"\n" + data)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        got = results.read_metrics(tmp_path)
        assert got is not None and clean(got.metrics) and clean(got.document)
        assert all(math.isfinite(v) for v in got.metrics.values())
        doc = results.read_json_object(tmp_path / "metrics.json")
        assert doc is None or clean(doc)
        for entry in store.read_history(tmp_path / "history.jsonl"):
            assert schema.history_entry(entry) is None and clean(entry)
            store.metric_phrase(entry)  # what the features do with a line
        fp = fingerprint.read_fingerprint(tmp_path / "metrics.json")
        if fp is not None:
            fingerprint.describe_change(fp, fp)
        try:
            ref = baseline.read_baseline(tmp_path / "metrics.json", "metrics.json")
        except pytest.UsageError as exc:
            assert "\n" not in str(exc) and "metrics.json" in str(exc)
        else:
            assert clean(ref)
            baseline.expected_durations(ref)
    for warning in caught:
        assert issubclass(warning.category, schema.TrainingFileWarning), warning
        assert "\n" not in str(warning.message) and str(tmp_path) in str(warning.message)
