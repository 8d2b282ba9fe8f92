"""Run history: one line per job run in ``<output-dir>/history.jsonl``, append-only.

The controller appends a line for every job in ``pytest_training_job_report`` (so it is the only
writer, also under ``-n``), and at session end an ``"interrupted"`` line for every job that
started and never finished (``pytest_training_job_interrupted``).  Reading the file, and the
one-``os.write`` append, live in ``training_plugin.store``.

Line format (JSON): ``time`` (ISO-8601 UTC), ``session``, ``commit``, ``job``, ``nodeid``,
``outcome`` (passed / failed / skipped / error / interrupted), ``metrics`` (flat),
``primary_metric``, ``duration_s``, ``node``, ``fingerprint`` (sha256 or null), ``argv``,
``story``, ``synthetic``, ``attempt`` (1, 2, ...), ``cost`` (wall_s, cpu_s, peak_bytes,
peak_method, memory_limit, limit_method, gpus, gpu_s; null when not measured),
``infrastructure`` (the cause of an infrastructure failure, else null).  A job retried after an
infrastructure failure (``--retries``) has one line per attempt: the earlier ones ``"error"``.
"""

from __future__ import annotations

import pytest

from training_plugin import provenance, store
from training_plugin.pytest_compat import is_controller
from training_plugin.results import JobRecord

NAME = "training_plugin.history"


def add_ini(parser: pytest.Parser) -> None:
    """No ini keys."""


def pytest_addoption(parser: pytest.Parser) -> None:
    """No options: the history is always kept (not under ``--collect-only``)."""


class History:
    """Writes the history on the controller."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config

    def pytest_training_job_report(self, config: pytest.Config, report: pytest.TestReport,
                                   record: JobRecord) -> None:
        """One history line for the job."""
        self.write(record, record.outcome or report.outcome)

    def pytest_training_job_interrupted(self, config: pytest.Config, record: JobRecord) -> None:
        """A job that started but never finished (Ctrl-C, a crashed worker): ``interrupted``."""
        self.write(record, "interrupted")

    def pytest_unconfigure(self, config: pytest.Config) -> None:
        """Unregister."""
        config.pluginmanager.unregister(self, NAME)

    def write(self, record: JobRecord, outcome: str) -> None:
        """Append the lines of one job run: one per earlier attempt, then its last."""
        for attempt in (record.attempts or [])[:-1]:
            self.append(record, "error", {
                "attempt": attempt.get("attempt"), "cost": attempt.get("cost"),
                "duration_s": attempt.get("duration_s"), "node": attempt.get("node"),
                "metrics": {}, "story": attempt.get("result"),
                "infrastructure": attempt.get("result"), "log": attempt.get("log")})
        self.append(record, outcome, {})

    def append(self, record: JobRecord, outcome: str, overrides: dict) -> None:
        """Append one line (``overrides``: an earlier attempt's own figures)."""
        facts = provenance.session_facts(self.config)
        fingerprint = (record.extra or {}).get("fingerprint")
        entry = {
            "time": provenance.now_iso(),
            "session": facts["session"],
            "commit": facts["commit"],
            "job": record.id,
            "nodeid": record.nodeid,
            "outcome": outcome,
            "metrics": record.metrics or {},
            "primary_metric": record.primary_metric,
            "duration_s": record.duration_s,
            "node": record.node,
            "fingerprint": fingerprint.get("sha256") if isinstance(fingerprint, dict) else None,
            "argv": list(record.argv or []),
            "story": record.story,
            "synthetic": record.synthetic,
            "cell": record.cell,  # a sweep's cell: "job" is then the cell's id
            "params": dict(record.params or {}),
            "attempt": record.attempt,
            "cost": record.cost,
            "infrastructure": record.infrastructure,
            **overrides,
        }
        if outcome == "interrupted":
            entry["metrics"] = {}
            entry["story"] = "interrupted before the job finished"
        path = store.history_path(self.config)
        try:
            store.append_line(path, entry)
        except OSError as exc:
            reporter = self.config.pluginmanager.get_plugin("terminalreporter")
            if reporter is not None:
                reporter.write_line(f"training: cannot append to {path}: {exc}")


def pytest_configure(config: pytest.Config) -> None:
    """Register the history writer on the controller (not under ``--collect-only``); read the
    last passing runs before any job of this session is written."""
    if not is_controller(config):
        return
    store.last_passing(config)
    if config.getoption("collectonly", False):
        return
    config.pluginmanager.register(History(config), NAME)
