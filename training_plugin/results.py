"""Results: reading a job's metrics.json, JUnit properties, the session summary.

``SummaryCollector`` lives on the controller only (owned by the session object).  It builds
everything from test reports, so it works unchanged under xdist: each training item's report
carries a JSON-able ``training_job`` record (see ``TrainingItem.record``).
"""

from __future__ import annotations

import json
import math
import os
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

METRICS_FILE = "metrics.json"
SUMMARY_FILE = "summary.json"
#: Name of the attribute a training item's reports carry (a JSON-able dict).
REPORT_ATTR = "training_job"


@dataclass(frozen=True)
class JobMetrics:
    """What a job's metrics.json says (or why it could not be read)."""

    metrics: dict[str, float] = field(default_factory=dict)
    primary_metric: str | None = None
    synthetic: bool | None = None
    error: str | None = None  #: a malformed metrics.json, described
    #: The whole file as parsed (nested objects too), when it is a JSON object; gates and
    #: baseline comparisons read nested keys from it.  Not part of ``to_json``.
    document: dict[str, Any] | None = field(default=None, repr=False, compare=False)

    @property
    def primary_value(self) -> float | None:
        """The value of the primary metric, when present."""
        return self.metrics.get(self.primary_metric) if self.primary_metric else None

    def to_json(self) -> dict[str, Any]:
        """JSON-able form."""
        return {
            "metrics": dict(self.metrics),
            "primary_metric": self.primary_metric,
            "synthetic": self.synthetic,
            "metrics_error": self.error,
        }


def read_metrics(output_dir: Path) -> JobMetrics | None:
    """Read ``output_dir/metrics.json``; None when the job wrote none.

    A malformed file is reported in ``JobMetrics.error``, never raised.
    """
    path = Path(output_dir) / METRICS_FILE
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        return JobMetrics(error=f"cannot read {path}: {exc}")
    try:
        data = json.loads(text)
    except ValueError as exc:
        return JobMetrics(error=f"{path} is not valid JSON: {exc}")
    if not isinstance(data, dict):
        return JobMetrics(error=f"{path}: expected a JSON object, got {type(data).__name__}")
    problems: list[str] = []
    raw = data.get("metrics")
    metrics: dict[str, float] = {}
    if not isinstance(raw, dict):
        problems.append("'metrics' is missing or not an object")
    else:
        for name, value in raw.items():
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                problems.append(f"metric {name!r} is not a number ({value!r})")
            elif not math.isfinite(value):
                problems.append(f"metric {name!r} is not finite ({value!r})")
            else:
                metrics[str(name)] = float(value)
    primary = data.get("primary_metric")
    if primary is not None and not isinstance(primary, str):
        problems.append("'primary_metric' is not a string")
        primary = None
    if primary is not None and primary not in metrics:
        problems.append(f"primary metric {primary!r} is not among the metrics")
    synthetic = None
    info = data.get("data")
    if isinstance(info, dict) and isinstance(info.get("synthetic"), bool):
        synthetic = info["synthetic"]
    error = f"{path}: " + "; ".join(problems) if problems else None
    return JobMetrics(metrics=metrics, primary_metric=primary, synthetic=synthetic, error=error,
                      document=data)


@dataclass
class JobResult:
    """What ``pytest_training_job_finished`` receives: how the job ended and what it wrote.

    Plugins on that hook may fail the item (``fail``), add JUnit properties, summary notes
    and JSON-able ``extra`` facts (see ``hookspecs.py``).
    """

    spec: Any  #: the job's ``JobSpec``
    run: Any  #: the executor's ``RunResult``
    metrics: JobMetrics | None = None
    failures: list[str] = field(default_factory=list)
    properties: list[tuple[str, object]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """The job exited 0 in time and no plugin failed it."""
        return bool(self.run is not None and self.run.ok and not self.failures)

    def fail(self, story: str) -> None:
        """Fail the item with this one-line story (the job's outputs are kept)."""
        self.failures.append(story)


@dataclass
class JobSkip:
    """What ``pytest_training_skip_job`` returns to skip a job: the reason shown to the user
    and the metrics to report in its place (e.g. those of its last passing run)."""

    reason: str
    metrics: JobMetrics | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def read_json_object(path: Path) -> dict[str, Any] | None:
    """A JSON object from ``path``, or None (missing, unreadable, not an object)."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError, UnicodeDecodeError):
        return None
    return data if isinstance(data, dict) else None


def write_json_atomic(path: Path, data: Any, **dumps: Any) -> None:
    """Write ``data`` as JSON (plus a newline) to ``path`` through a temporary file and
    ``os.replace``: a reader sees the old file or the new one, never half of one."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, **dumps) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def junit_properties(metrics: JobMetrics | None) -> list[tuple[str, object]]:
    """``item.user_properties`` entries: flat metrics, primary metric, data.synthetic."""
    if metrics is None:
        return []
    props: list[tuple[str, object]] = [(name, value) for name, value in metrics.metrics.items()]
    if metrics.primary_metric is not None:
        props.append(("primary_metric", metrics.primary_metric))
    if metrics.synthetic is not None:
        props.append(("data.synthetic", "true" if metrics.synthetic else "false"))
    if metrics.error:
        props.append(("metrics_error", metrics.error))
    return props


@dataclass
class _Entry:
    nodeid: str
    record: dict[str, Any]
    outcome: str = "passed"
    duration_s: float = 0.0


def job_duration(report: pytest.TestReport) -> float:
    """How long a job ran: the item's call time, except on a cluster (``node`` "ray:..."),
    where the jobs run at once and an item only waits for its own: there, the job's run time
    as its node measured it."""
    record = getattr(report, REPORT_ATTR, None)
    if isinstance(record, dict) and str(record.get("node") or "").startswith("ray:"):
        run = record.get("run_duration_s")
        if isinstance(run, (int, float)):
            return float(run)
    return report.duration


class SummaryCollector:
    """Collects training reports; writes the terminal table and ``summary.json`` (controller).

    Owned by the session object, which feeds it every training report (``add``)."""

    def __init__(self, config: pytest.Config, output_dir: Path) -> None:
        self.config = config
        self.output_dir = output_dir
        self.entries: dict[str, _Entry] = {}
        self.summary_path: Path | None = None

    def add(self, report: pytest.TestReport) -> dict[str, Any] | None:
        """Keep the outcome, duration and record of a training report; return the job's
        record so far, with ``outcome`` and ``duration_s`` filled in."""
        record = getattr(report, REPORT_ATTR, None)
        if not isinstance(record, dict):
            return None
        entry = self.entries.get(report.nodeid)
        if entry is None:
            entry = self.entries[report.nodeid] = _Entry(report.nodeid, dict(record))
        else:
            entry.record.update(record)
        if report.when == "call":
            entry.duration_s = job_duration(report)
            entry.outcome = report.outcome
        elif report.outcome != "passed" and entry.outcome == "passed":
            entry.outcome = "error" if report.failed else report.outcome
        if report.skipped and "story" not in entry.record:
            longrepr = report.longrepr
            if isinstance(longrepr, tuple) and len(longrepr) == 3:
                entry.record["story"] = str(longrepr[2]).removeprefix("Skipped: ")
        entry.record["outcome"] = entry.outcome
        entry.record["duration_s"] = round(entry.duration_s, 3)
        entry.record["nodeid"] = report.nodeid
        return entry.record

    def rows(self) -> list[dict[str, Any]]:
        """One summary.json entry per job, sorted by node id."""
        out = []
        for entry in sorted(self.entries.values(), key=lambda e: e.nodeid):
            rec = entry.record
            primary = rec.get("primary_metric")
            metrics = rec.get("metrics") or {}
            out.append(
                {
                    "id": rec.get("id"),
                    "nodeid": entry.nodeid,
                    "outcome": entry.outcome,
                    "duration_s": round(entry.duration_s, 3),
                    "command": shlex.join(rec.get("command") or []),
                    "argv": rec.get("command") or [],
                    "metrics": metrics,
                    "primary_metric": (
                        {"name": primary, "value": metrics.get(primary)} if primary else None
                    ),
                    "synthetic": rec.get("synthetic"),
                    "metrics_error": rec.get("metrics_error"),
                    "result": rec.get("result"),
                    "node": rec.get("node"),
                    "story": rec.get("story"),
                    "notes": rec.get("notes") or [],
                    "extra": rec.get("extra") or {},
                    "log": rec.get("log"),
                }
            )
        return out

    def write(self) -> None:
        """Write ``<output-dir>/summary.json`` when any job ran."""
        if not self.entries or self.config.getoption("collectonly"):
            return
        self.output_dir.mkdir(parents=True, exist_ok=True)
        path = self.output_dir / SUMMARY_FILE
        write_json_atomic(path, {"jobs": self.rows()}, indent=2)
        self.summary_path = path

    def terminal(self, tr: Any) -> None:
        """The table: job, outcome, duration, primary metric, where it ran, notes."""
        if not self.entries:
            return
        rows = self.rows()
        tr.write_sep("=", "training summary")
        show_node = any(row["node"] not in (None, "local") for row in rows)
        table = [("job", "outcome", "duration", "primary metric", "node" if show_node else "",
                  "")]
        for row in rows:
            primary = row["primary_metric"]
            value = primary and primary["value"]
            metric = f"{primary['name']}={value:.4f}" if primary and value is not None else "-"
            flags = ["SYNTHETIC data"] if row["synthetic"] else []
            if row["metrics_error"]:
                flags.append("metrics.json malformed")
            elif row["outcome"] == "passed" and not row["metrics"]:
                flags.append("no metrics.json")
            if row["outcome"] == "skipped" and row["story"]:
                flags.append(row["story"])
            flags.extend(row["notes"])
            table.append(
                (str(row["id"]), row["outcome"], f"{row['duration_s']:.1f} s", metric,
                 str(row["node"] or "-") if show_node else "", "; ".join(flags))
            )
        widths = [max(len(r[i]) for r in table) for i in range(5)]
        for r in table:
            cells = [r[0].ljust(widths[0]), r[1].ljust(widths[1]), r[2].rjust(widths[2]),
                     r[3].ljust(widths[3])]
            if show_node:
                cells.append(r[4].ljust(widths[4]))
            tr.write_line("  ".join([*cells, r[5]]).rstrip())
        if self.summary_path is not None:
            tr.write_line(f"summary: {self.summary_path}")
