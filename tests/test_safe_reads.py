"""Every file the plugin reads is validated (training_plugin.schema): a bad history line,
metrics.json, fingerprint.json or manifest is a one-line warning naming the file and line, a
bad baseline entry is a usage error naming the entry; never a traceback.  Reports and MLflow
skip symlinked files."""

from __future__ import annotations

import html
import json
import math
import os
import warnings
from pathlib import Path

import pytest
from report_jobs import embedded_images, extra_html, job_entry, report_data
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
    line = f"*training-baseline.json: the entry of job 'a': {problem}; fix or remove that entry*"
    result.stderr.fnmatch_lines([line])
    assert_no_traceback(result)


def test_a_baseline_nested_too_deep_is_a_usage_error(pytester: pytest.Pytester) -> None:
    make(pytester, {"train_a.py": job('{"roc_auc": 0.9}'),
                    "training-baseline.json": '{"jobs": {"a": {"metrics": ' + DEEP + "}}}"})
    result = run(pytester, "--compare")
    assert result.ret == pytest.ExitCode.USAGE_ERROR, output(result)
    result.stderr.fnmatch_lines([("*training-baseline.json is nested deeper than 100 levels "
                                  "(line 1); not a readable baseline file*--save-baseline*")])
    assert_no_traceback(result)


def test_saving_over_a_baseline_nested_too_deep_warns_and_writes_a_fresh_one(
        pytester: pytest.Pytester) -> None:
    """--save-baseline merges into the file it finds; one it cannot read is named in a
    warning and replaced by this session's jobs, never a traceback at session end."""
    make(pytester, {"train_a.py": job('{"roc_auc": 0.9}'),
                    "training-baseline.json": '{"jobs": {"a": {"metrics": ' + DEEP + "}}}"})
    result = run(pytester, "--save-baseline")
    assert result.ret == pytest.ExitCode.OK, output(result)
    assert_no_traceback(result)
    result.stdout.fnmatch_lines(["*training-baseline.json: not merged into the new baseline*"])
    saved = json.loads((pytester.path / "training-baseline.json").read_text())
    assert saved["jobs"]["a"]["metrics"] == {"roc_auc": 0.9}


def test_a_log_swapped_for_a_link_shows_nothing_of_its_target(pytester: pytest.Pytester) -> None:
    """A job that replaces its train.log with a link: the failure story's log tail never
    reads through the link."""
    secret = pytester.path / "secret.txt"
    secret.write_text("TOP-SECRET-LINE\n")
    make(pytester, {"train_a.py": (
        "import os, sys\n"
        "log = os.path.join(os.environ['TRAINING_OUTPUT_DIR'], 'train.log')\n"
        "os.remove(log)\n"
        f"os.symlink({str(secret)!r}, log)\n"
        "sys.exit(3)\n")})
    result = run(pytester)
    assert result.ret == pytest.ExitCode.TESTS_FAILED, output(result)
    assert "TOP-SECRET-LINE" not in output(result)
    assert secret.read_text() == "TOP-SECRET-LINE\n"


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
    (lambda fp: f'{{"sha256": "{fp["sha256"]}", "files": {DEEP}}}',
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


# -- links in a job's folder: the HTML report and MLflow never follow one ---------------------
MARKER = "SECRET-b6f1c2"
SVG = '<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"><!-- %s --></svg>'
#: A job that leaves links to files outside its folder where the report and MLflow look: a
#: figure, manifest.json, model.pt and (replacing the one the plugin writes) train.log.
LINKING_JOB = """\
import json, os, sys
out = os.environ["TRAINING_OUTPUT_DIR"]
os.makedirs(os.path.join(out, "figures"), exist_ok=True)
open(os.path.join(out, "figures", "plain.svg"), "w").write({plain!r})
for name in {links!r}:
    os.symlink({secret!r}, os.path.join(out, name))
json.dump({{"primary_metric": "roc_auc", "metrics": {{"roc_auc": 0.9}}}},
          open(os.path.join(out, "metrics.json"), "w"))
if {swap_log!r}:
    os.unlink(os.path.join(out, "train.log"))
    os.symlink({secret!r}, os.path.join(out, "train.log"))
sys.exit({code})
"""


@pytest.fixture
def secret(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A file outside the project, recent (so that it would count as this run's figure)."""
    path = tmp_path_factory.mktemp("outside") / "secret.svg"
    path.write_text(SVG % MARKER)
    return path


def linking_job(secret: Path, links: list[str], code: int = 0, swap_log: bool = False) -> str:
    return LINKING_JOB.format(plain=SVG % "plain", links=links, secret=str(secret),
                              swap_log=swap_log, code=code)


def regular_files_holding(root: Path, text: str) -> list[Path]:
    """Regular files below ``root`` (links not followed) that contain ``text``."""
    found = []
    for folder, _, files in os.walk(root):
        for name in files:
            path = Path(folder, name)
            if not path.is_symlink() and text.encode() in path.read_bytes():
                found.append(path)
    return found


def unchanged(secret: Path, before: os.stat_result) -> bool:
    after = secret.stat()
    return secret.read_text() == SVG % MARKER and after.st_mtime_ns == before.st_mtime_ns


@pytest.mark.parametrize("code", [0, 3], ids=["passed", "failed"])
def test_the_html_report_embeds_no_linked_figure_or_log(pytester: pytest.Pytester,
                                                        secret: Path, code: int) -> None:
    pytest.importorskip("pytest_html")
    before = secret.stat()
    swap = bool(code)  # a failed job's story shows its log: a linked one is named instead
    make(pytester, {"train_a.py": linking_job(secret, ["figures/x.svg"], code, swap_log=swap)})
    result = run(pytester, "--html=report.html", "--self-contained-html")
    result.assert_outcomes(passed=1 - bool(code), failed=bool(code))
    page = html.unescape((pytester.path / "report.html").read_text())
    body = extra_html(job_entry(report_data(pytester.path / "report.html"), "a"))
    embedded = b"".join(raw for _, raw in embedded_images(body))
    assert b"plain" in embedded  # the job's own figure is there
    assert MARKER not in body and MARKER.encode() not in embedded
    assert "x.svg is a symbolic link" in body
    if code:  # the job's extra names the linked log instead of showing its tail
        assert "train.log is a symbolic link" in body
    else:
        assert MARKER not in page
    assert unchanged(secret, before)


def test_a_skipped_jobs_report_embeds_no_linked_figure(pytester: pytest.Pytester,
                                                       secret: Path) -> None:
    pytest.importorskip("pytest_html")
    before = secret.stat()
    first_run(pytester)
    figures = pytester.path / "training-results/a/figures"
    figures.mkdir()
    (figures / "x.svg").symlink_to(secret)  # left in the folder after its last run
    outside = secret.with_name("metrics.json")  # and its metrics.json, a link out of it
    outside.write_text(json.dumps({"metrics": {"roc_auc": 0.9}, "data": {"source": MARKER}}))
    metrics = pytester.path / "training-results/a/metrics.json"
    metrics.unlink()
    metrics.symlink_to(outside)
    result = run(pytester, "--skip-unchanged", "--html=report.html", "--self-contained-html")
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines(["*metrics.json is a symbolic link, not followed; not used*"])
    page = html.unescape((pytester.path / "report.html").read_text())
    body = extra_html(job_entry(report_data(pytester.path / "report.html"), "a"))
    assert MARKER not in page and not embedded_images(body), body
    assert "x.svg is a symbolic link" in body
    assert unchanged(secret, before)


def test_mlflow_logs_no_linked_file(pytester: pytest.Pytester, secret: Path,
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("mlflow")
    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
    for name in ("MLFLOW_TRACKING_URI", "MLFLOW_EXPERIMENT_NAME", "PYTEST_ADDOPTS"):
        monkeypatch.delenv(name, raising=False)
    before = secret.stat()
    links = ["figures/x.svg", "manifest.json", "model.pt"]
    make(pytester, {"train_a.py": linking_job(secret, links, swap_log=True)})
    result = pytester.runpytest_subprocess("-p", "training_plugin", "-p", "no:randomly",
                                           "-p", "no:cacheprovider", "--mlflow")
    # (whether a job that swapped its train.log for a link passes is not this test's concern)
    assert result.ret in (pytest.ExitCode.OK, pytest.ExitCode.TESTS_FAILED), result.stdout
    result.stdout.fnmatch_lines(["*mlflow: 1 job run(s) logged*"])
    artifacts = pytester.path / "training-results" / "mlartifacts"
    names = {p.name for p in artifacts.rglob("*")}
    assert "plain.svg" in names and "metrics.json" in names
    assert not names & {"x.svg", "manifest.json", "model.pt", "train.log"}, names
    assert regular_files_holding(pytester.path, MARKER) == []
    for name in [*links, "train.log"]:
        result.stdout.fnmatch_lines([f"*{name} is a symbolic link*not logged*"])
    assert unchanged(secret, before)


# -- fuzzing every reader ---------------------------------------------------------------------
try:
    import hypothesis
    from hypothesis import strategies as st
except ImportError:  # the test extra is missing: only the fuzz test is skipped
    hypothesis = None

if hypothesis is None:
    def test_every_reader_warns_or_returns_a_clean_value() -> None:
        pytest.skip("hypothesis is not installed: pip install -e '.[test]'")
else:
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
