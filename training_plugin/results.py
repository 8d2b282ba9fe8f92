"""Results of a job: its metrics.json (``JobMetrics``), what the finished hook gets
(``JobResult``), a skip (``JobSkip``) and the typed record that travels with its report
(``JobRecord``).

A training item's reports carry its record as a JSON-able dict under ``REPORT_ATTR`` (so it
survives xdist's report serialization); :func:`record_of` gives it back as a ``JobRecord``.
Every consumer downstream of the item (summary, history, baseline, HTML report, MLflow) reads
that record instead of re-reading files or re-deriving ids.
"""

from __future__ import annotations

import math
import shlex
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from training_plugin import safefs, schema


METRICS_FILE = "metrics.json"
SUMMARY_FILE = "summary.json"
#: Name of the attribute a training item's reports carry (a JSON-able dict).
REPORT_ATTR = "training_job"
#: The outcomes a record can have.
OUTCOMES = ("passed", "failed", "skipped", "error", "interrupted")
#: The largest JSON file the plugin parses (metrics.json, baselines, fingerprints): a bigger
#: one is "too large" and is not read.
MAX_JSON_BYTES = 32 * 1024 * 1024


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
        data = schema.load(path, max_bytes=MAX_JSON_BYTES)
    except FileNotFoundError:
        return None
    except schema.BadFile as exc:  # unreadable, too large, too deep, not JSON, huge numbers
        return JobMetrics(error=str(exc))
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
    """A JSON object from ``path``, or None (missing, unreadable, not an object).  A file
    that is there but bad (a symbolic link, too large, too deep, not JSON) is a ``schema``
    warning too; a link at ``path`` is never followed (the files of a job's folder)."""
    try:
        data = schema.load(path, max_bytes=MAX_JSON_BYTES, follow=False)
    except FileNotFoundError:
        return None
    except schema.BadFile as exc:
        schema.warn(f"{exc}; not used")
        return None
    return data if isinstance(data, dict) else None


def write_json_atomic(path: Path, data: Any, **dumps: Any) -> None:
    """Write ``data`` as JSON (plus a newline) to ``path`` through a temporary file and
    ``os.replace``: a reader sees the old file or the new one, never half of one.  Never
    through a link (``safefs.UnsafePath``); a failed write leaves no temporary file."""
    safefs.write_json_atomic(Path(path), data, **dumps)


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
class JobRecord:
    """What is known of one job run, built where it ran and carried by its reports.

    ``outcome`` and ``duration_s`` are final once the controller has the job's final report
    (``pytest_training_job_report``); on the worker side they are the item's view so far.
    """

    id: str
    nodeid: str
    script: str  #: relative to rootdir (posix)
    argv: list[str]  #: the command: ``[python, script, args...]``
    resolved_argv: list[str]  #: argv as it decides the result (see ``collect.argv``)
    output_dir: str
    log: str
    outcome: str = "passed"  #: one of ``OUTCOMES``
    duration_s: float = 0.0
    result: str | None = None  #: "ok", or how the process ended ("exit code 2" ...)
    node: str | None = None  #: where it ran ("local", "local:gw0", "ray:10.0.0.2")
    run_duration_s: float | None = None  #: the process's own run time
    metrics: dict[str, float] = field(default_factory=dict)
    primary_metric: str | None = None
    synthetic: bool | None = None
    metrics_error: str | None = None
    #: the whole metrics.json as the item parsed it (None: none, or not a JSON object)
    document: dict[str, Any] | None = None
    story: str | None = None  #: why it failed, was skipped or was interrupted
    notes: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)
    #: the job's job-table entry, JSON-able (``collect.table.JobConfig.to_json``)
    table: dict[str, Any] = field(default_factory=dict)
    #: what the last attempt cost (``executors.base.JobCost.to_json``), None: not measured
    cost: dict[str, Any] | None = None
    #: the cause of an infrastructure failure (the job's outcome is then "error")
    infrastructure: str | None = None
    attempt: int = 1  #: the attempt that ended the job (1 + the retries it took)
    #: every attempt: {attempt, result, infrastructure, returncode, duration_s, node, log, cost}
    attempts: list[dict[str, Any]] = field(default_factory=list)
    job: str | None = None  #: the job's id (a cell's ``id`` is ``<job>[<cell>]``)
    cell: str | None = None  #: the cell's name (``lr_0.001-seed_2``), None for a plain job
    params: dict[str, Any] = field(default_factory=dict)  #: a cell's parameters

    @property
    def command(self) -> str:
        """The command, shell-quoted."""
        return shlex.join(self.argv)

    def to_json(self) -> dict[str, Any]:
        """JSON-able form (what the reports carry)."""
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> JobRecord:
        """The record from its JSON-able form (unknown keys are ignored)."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


def record_of(report: Any) -> JobRecord | None:
    """The ``JobRecord`` a training item's report carries, or None for other reports."""
    data = getattr(report, REPORT_ATTR, None)
    if not isinstance(data, dict):
        return None
    try:
        return JobRecord.from_json(data)
    except TypeError:  # a report from another version of the plugin
        return None
