"""``HtmlReport``: the report's plugin object (registered only with pytest-html's ``--html``).

Where a job runs, its ``pytest_runtest_makereport`` wrapper turns the job's record into one
HTML extra on the call report (``report.extras``) and a JSON-able digest (``REPORT_ATTR``);
both travel with the report to the controller.  There, the pytest-html hooks add the metric,
data and node columns, the session header and keep only the tail of each ``train.log``.
"""

from __future__ import annotations

import datetime as dt
import time
from typing import Any

import pytest

from training_plugin import results
from training_plugin.features.report.format import esc
from training_plugin.features.report.pivot import pivot_html
from training_plugin.features.report.header import data_cell, primary_cell, session_html, style
from training_plugin.features.report.view import JobView
from training_plugin.results import JobRecord

#: The name the report plugin object is registered under.
NAME = "training_plugin.report"
#: Report attribute carrying a job's digest for the controller (JSON-able; travels under -n).
REPORT_ATTR = "training_html"
#: Lines of ``train.log`` kept in the report's log panel (failed jobs also get a tail).
LOG_TAIL_LINES = 40


class HtmlReport:
    """The pytest-html side of training_plugin (see the module docstring)."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.started = time.time()
        self.started_utc = dt.datetime.now(dt.timezone.utc)
        self.jobs: dict[str, dict[str, Any]] = {}  # nodeid -> digest (controller)
        self.records: dict[str, JobRecord] = {}  # nodeid -> final record (controller)
        self.interrupted: dict[str, JobRecord] = {}  # nodeid -> record (controller)

    # -- where the job runs -------------------------------------------------------------------
    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(self, item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
        """The job's extra and digest, on its call report (they travel with it); a job lost
        to an infrastructure failure is an error, whose report the session marks "setup"."""
        report = yield
        record = results.record_of(report) if call.when == "call" else None
        if record is None:
            return report
        try:
            outcome = "error" if report.when == "setup" else report.outcome
            view = JobView(item.config, record, outcome, getattr(report, "start", call.start))
            trend = view.trend()
            content = view.html(trend)
            digest = view.digest(trend)
        except Exception as exc:  # the report never breaks a run; it says what went wrong
            content = (f'<div class="tp-job"><div class="tp-story">the report could not show '
                       f"this job: {esc(type(exc).__name__)}: {esc(exc)}</div></div>")
            digest = {"id": record.id, "outcome": report.outcome}
        from pytest_html import extras

        report.extras = [*getattr(report, "extras", []), extras.html(content)]
        setattr(report, REPORT_ATTR, digest)
        return report

    # -- the controller -----------------------------------------------------------------------
    def pytest_training_job_report(self, config: pytest.Config, report: pytest.TestReport,
                                   record: JobRecord) -> None:
        """Keep each job's record and digest for the session header."""
        self.records[report.nodeid] = record
        self.interrupted.pop(report.nodeid, None)
        digest = getattr(report, REPORT_ATTR, None)
        if isinstance(digest, dict):
            self.jobs[report.nodeid] = digest

    def pytest_training_job_interrupted(self, config: pytest.Config, record: JobRecord) -> None:
        """A job that started and never finished: named in the session header."""
        if record.nodeid not in self.records:
            self.interrupted[record.nodeid] = record

    @pytest.hookimpl(optionalhook=True)
    def pytest_html_report_title(self, report: Any) -> None:
        """Title; every row expanded (figures visible) unless ``render_collapsed`` is set to
        something other than pytest-html's default ("passed")."""
        report.title = f"Training report: {self.config.rootpath.name}"
        if self.config.getini("render_collapsed") == "passed":
            report.set_data("renderCollapsed", [])

    @pytest.hookimpl(optionalhook=True)
    def pytest_html_results_table_header(self, cells: list[str]) -> None:
        """Primary metric, data and node columns after the test id."""
        cells[2:2] = ['<th>Primary metric</th>', "<th>Data</th>", "<th>Node</th>"]

    @pytest.hookimpl(optionalhook=True)
    def pytest_html_results_table_row(self, report: Any, cells: list[str]) -> None:
        """The job's primary metric (spread, change), the SYNTHETIC badge, its node."""
        digest = getattr(report, REPORT_ATTR, None)
        if not isinstance(digest, dict):
            digest = None
        node = (digest or {}).get("node") or ""
        cells[2:2] = [f'<td class="col-metric">{primary_cell(digest) if digest else ""}</td>',
                      f'<td class="col-data">{data_cell(digest)}</td>',
                      f'<td class="col-node">{esc(node)}</td>']

    @pytest.hookimpl(optionalhook=True)
    def pytest_html_results_table_html(self, report: Any, data: list[str]) -> None:
        """Keep the last lines of a job's ``train.log`` in the report (the file has all)."""
        if not isinstance(getattr(report, REPORT_ATTR, None), dict):
            return
        for i, section in enumerate(data):
            head, sep, body = section.partition("\n")
            if "train.log" not in head or not sep:
                continue
            lines = body.splitlines()
            if len(lines) <= LOG_TAIL_LINES:
                continue
            record = results.record_of(report)
            where = f"; the whole log: {record.log}" if record is not None and record.log else ""
            cut = f"[{len(lines) - LOG_TAIL_LINES} earlier lines not shown{esc(where)}]"
            data[i] = "\n".join([head, cut, *lines[-LOG_TAIL_LINES:]])

    @pytest.hookimpl(optionalhook=True)
    def pytest_html_results_summary(self, prefix: list[str], summary: list[str],
                                    postfix: list[str], session: pytest.Session) -> None:
        """The session header (when, commit, counts, time, where) and every job at a glance."""
        prefix.append(style())
        unfinished = self.unfinished(session)
        if not self.records and not unfinished:
            return
        prefix.append(session_html(
            self.config, self.started_utc.strftime("%Y-%m-%d %H:%M:%S UTC"),
            time.time() - self.started, self.records, self.jobs, unfinished))
        prefix.append(pivot_html(self.records[k] for k in sorted(self.records)))

    def unfinished(self, session: pytest.Session) -> list[str]:
        """Ids of the selected jobs without a final report, in the session's order: those
        that started and were interrupted (``pytest_training_job_interrupted``) and those
        that never started (e.g. after ``-x``)."""
        from training_plugin.collect.items import TrainingItem

        ids = []
        for item in session.items:
            if item.nodeid in self.records:
                continue
            record = self.interrupted.get(item.nodeid)
            if record is not None:
                ids.append(record.id)
            elif isinstance(item, TrainingItem):
                ids.append(item.spec.id)
        return ids
