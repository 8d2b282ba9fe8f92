"""The session's training summary: the terminal table and ``<output-dir>/summary.json``.

``SummaryCollector`` lives on the controller only (owned by the session object).  It builds
everything from test reports, so it works unchanged under xdist: each training item's report
carries its ``JobRecord`` (``results.record_of``).
"""

from __future__ import annotations

import errno
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from training_plugin import aggregate, safefs, store
from training_plugin.collect.attempts import attempts_phrase
from training_plugin.executors.base import cost_cell
from training_plugin.results import SUMMARY_FILE, JobRecord, record_of, write_json_atomic

#: The outcome in summary.json of a selected job that never started (an interrupted session).
NOT_RUN = "not run"
#: A suggested job-table ``memory`` is the peak plus this share, rounded up to ``MEMORY_STEP``.
MEMORY_MARGIN = 0.25
MEMORY_STEP = 256 * 2**20
#: Under the table: a job-table ``memory`` for each job that has none (its peak + 25%).
MSG_SUGGEST_MEMORY = "training: memory for the job table (peak + 25%): {value}"
#: Under the table: the jobs by outcome, infrastructure errors apart from the jobs' failures.
MSG_COUNTS = "training: {counts}"


def suggested_memory(peak: float) -> str:
    """A job-table ``memory`` for a job whose peak was ``peak`` bytes: peak + 25%, rounded up
    to 256 MiB, written as the table takes it ("1.5GiB", "768MiB")."""
    value = max(1, -(-int(peak * (1 + MEMORY_MARGIN)) // MEMORY_STEP)) * MEMORY_STEP
    return f"{value / 2**30:g}GiB" if value >= 2**30 else f"{value // 2**20}MiB"


@dataclass
class _Entry:
    nodeid: str
    record: JobRecord
    outcome: str = "passed"
    duration_s: float = 0.0


def configuration_row(conf: aggregate.Configuration) -> tuple[str, ...]:
    """A configuration's row under its cells: its id, seeds with figures, its aggregate."""
    notes = [f"failed seeds: {', '.join(conf.failed_seeds)}"] if conf.failed_seeds else []
    if conf.kept:
        notes.append(f"{len(conf.kept)} of {len(conf.cells)} cells kept from the last run")
    return (f"  {conf.id}", f"mean of {conf.n}/{len(conf.seeds)}", "",
            aggregate.describe(conf), "", "; ".join(notes))


def job_duration(report: pytest.TestReport) -> float:
    """How long a job ran: the item's call time, except on a cluster (``node`` "ray:..."),
    where the jobs run at once and an item only waits for its own: there, the job's run time
    as its node measured it."""
    record = record_of(report)
    if record is not None and str(record.node or "").startswith("ray:"):
        if isinstance(record.run_duration_s, (int, float)):
            return float(record.run_duration_s)
    return report.duration


class SummaryCollector:
    """Collects training reports; writes the terminal table and ``summary.json`` (controller).

    Owned by the session object, which feeds it every training report (``add``)."""

    def __init__(self, output_dir: Path, collect_only: bool = False) -> None:
        self.output_dir = output_dir
        self.collect_only = collect_only
        self.entries: dict[str, _Entry] = {}
        self.summary_path: Path | None = None
        self.interrupted = False  #: the session ended on Ctrl-C or SIGTERM
        #: what could not be written (shown under the table)
        self.problems: list[str] = []
        self._last: dict[str, dict[str, Any]] | None = None  #: cell id -> last history line

    def add(self, report: pytest.TestReport) -> JobRecord | None:
        """Keep the outcome, duration and record of a training report; return the job's
        record so far, with ``outcome`` and ``duration_s`` filled in."""
        record = record_of(report)
        if record is None:
            return None
        entry = self.entries.get(report.nodeid)
        if entry is None:
            entry = self.entries[report.nodeid] = _Entry(report.nodeid, record)
        else:
            entry.record = record
        if report.when == "call":
            entry.duration_s = job_duration(report)
            entry.outcome = report.outcome
        elif report.outcome != "passed" and entry.outcome == "passed":
            entry.outcome = "error" if report.failed else report.outcome
            if record.attempts:  # it ran: an infrastructure failure (an error, see session)
                entry.duration_s = job_duration(report)
        if report.skipped and record.story is None:
            longrepr = report.longrepr
            if isinstance(longrepr, tuple) and len(longrepr) == 3:
                record.story = str(longrepr[2]).removeprefix("Skipped: ")
        record.outcome = entry.outcome
        record.duration_s = round(entry.duration_s, 3)
        record.nodeid = report.nodeid
        return record

    def add_record(self, nodeid: str, record: JobRecord, outcome: str) -> JobRecord:
        """Keep a job that sent no final report: ``interrupted``, ``error`` (its xdist worker
        crashed) or ``NOT_RUN``."""
        record.outcome = outcome
        record.nodeid = nodeid
        entry = self.entries.get(nodeid)
        if entry is None:
            self.entries[nodeid] = _Entry(nodeid, record, outcome, record.duration_s or 0.0)
        else:
            entry.record, entry.outcome = record, outcome
        return record

    def rows(self) -> list[dict[str, Any]]:
        """One summary.json entry per job, sorted by node id."""
        out = []
        for entry in sorted(self.entries.values(), key=lambda e: e.nodeid):
            rec = entry.record
            primary = rec.primary_metric
            metrics = rec.metrics or {}
            out.append(
                {
                    "id": rec.id,
                    "job": rec.job or rec.id,
                    "cell": rec.cell,
                    "params": dict(rec.params or {}),
                    "nodeid": entry.nodeid,
                    "outcome": entry.outcome,
                    "duration_s": round(entry.duration_s, 3),
                    "command": shlex.join(rec.argv or []),
                    "argv": list(rec.argv or []),
                    "metrics": metrics,
                    "primary_metric": (
                        {"name": primary, "value": metrics.get(primary)} if primary else None
                    ),
                    "synthetic": rec.synthetic,
                    "metrics_error": rec.metrics_error,
                    "result": rec.result,
                    "node": rec.node,
                    "story": rec.story,
                    "notes": list(rec.notes or []),
                    "extra": dict(rec.extra or {}),
                    "log": rec.log,
                    "cost": rec.cost,
                    "infrastructure": rec.infrastructure,
                    "attempt": rec.attempt,
                    "attempts": list(rec.attempts or []),
                    "suggested_memory": _suggestion(rec),
                }
            )
        return out

    def configurations(self) -> list[aggregate.Configuration]:
        """The configurations of the swept jobs (cells that differ only in the seed)."""
        records = []
        for entry in sorted(self.entries.values(), key=lambda e: e.nodeid):
            entry.record.outcome = entry.outcome
            records.append(entry.record)
        if aggregate.missing_cells(records):  # --lf, -k: the other cells from their last run
            if self._last is None:
                lines = store.read_history(self.output_dir / store.HISTORY_FILE, lambda m: None)
                self._last = {str(e.get("job")): e for e in lines}
            records = aggregate.with_kept(records, self._last)
        return aggregate.configurations(records)

    def write(self) -> None:
        """Write ``<output-dir>/summary.json`` when any job was selected; a write that fails
        (a full disk, a link at summary.json) is kept in ``problems``, not raised."""
        if not self.entries or self.collect_only:
            return
        path = self.output_dir / SUMMARY_FILE
        try:
            self.output_dir.mkdir(parents=True, exist_ok=True)
            write_json_atomic(path, {"interrupted": self.interrupted, "counts": self.counts(),
                                     "jobs": self.rows(),
                                     "configurations": [c.to_json()
                                                        for c in self.configurations()]},
                              indent=2)
        except OSError as exc:
            why = (safefs.MSG_NO_SPACE.format(path=self.output_dir) if exc.errno == errno.ENOSPC
                   else exc.strerror or str(exc))
            self.problems.append(f"cannot write {path}: {why}")
            return
        self.summary_path = path

    def terminal(self, tr: Any) -> None:
        """The table: job, outcome, duration, primary metric, where it ran, notes."""
        if not self.entries:
            self.warnings(tr)
            return
        rows = self.rows()
        tr.write_sep("=", "training summary")
        show_node = any(row["node"] not in (None, "local") for row in rows)
        table = [("job", "outcome", "cost", "duration", "primary metric",
                  "node" if show_node else "", "")]
        after: dict[str, list[aggregate.Configuration]] = {}
        for conf in self.configurations():
            ran = [c for c in conf.cells if c not in conf.kept]
            after.setdefault(max(ran or conf.cells), []).append(conf)
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
            flags.extend(_failure_notes(row))
            table.append(
                (str(row["id"]), row["outcome"], cost_cell(row["cost"]),
                 f"{row['duration_s']:.1f} s", metric,
                 str(row["node"] or "-") if show_node else "", "; ".join(flags))
            )
            table += [(*r[:2], "", *r[2:]) for r in map(configuration_row,
                                                         after.get(row["nodeid"], ()))]
        widths = [max(len(r[i]) for r in table) for i in range(6)]
        for r in table:
            cells = [r[0].ljust(widths[0]), r[1].ljust(widths[1]), r[2].ljust(widths[2]),
                     r[3].rjust(widths[3]), r[4].ljust(widths[4])]
            if show_node:
                cells.append(r[5].ljust(widths[5]))
            tr.write_line("  ".join([*cells, r[6]]).rstrip())
        suggestions = _memory_suggestions(rows)
        if suggestions:
            tr.write_line(MSG_SUGGEST_MEMORY.format(value=", ".join(suggestions)))
        counts = self.counts()
        if counts.get("error"):
            tr.write_line(MSG_COUNTS.format(counts=", ".join(
                f"{n} {_counted(outcome)}" for outcome, n in sorted(counts.items()))))
        if self.summary_path is not None:
            tr.write_line(f"summary: {self.summary_path}")
        self.warnings(tr)

    def counts(self) -> dict[str, int]:
        """Jobs by outcome: "error" (infrastructure failures, crashed workers) apart from
        "failed" (the jobs' own failures)."""
        counts: dict[str, int] = {}
        for entry in self.entries.values():
            counts[entry.outcome] = counts.get(entry.outcome, 0) + 1
        return counts

    def warnings(self, tr: Any) -> None:
        """What could not be written in this session (summary.json, baseline, fingerprints)."""
        for problem in [*self.problems, *safefs.failed_writes(tr.config)]:
            tr.write_line(f"training: warning: {problem}", yellow=True)


def _counted(outcome: str) -> str:
    return {"failed": "failed (the jobs' own)", "error": "error (infrastructure)"}.get(
        outcome, outcome)


def _suggestion(rec: JobRecord) -> str | None:
    """A ``memory`` value for a job that has none in the job table: its peak plus a margin."""
    peak = (rec.cost or {}).get("peak_bytes")
    if not isinstance(peak, (int, float)) or not peak or (rec.table or {}).get("memory"):
        return None
    return suggested_memory(peak)


def _memory_suggestions(rows: list[dict[str, Any]]) -> list[str]:
    """One ``memory`` suggestion per job (the job table is per job): the largest peak of its
    cells that ran, plus the margin."""
    peaks: dict[str, float] = {}
    for row in rows:
        if row["suggested_memory"] and row["outcome"] != "skipped":
            job = row["job"] or row["id"]
            peaks[job] = max(peaks.get(job, 0), row["cost"]["peak_bytes"])
    return [f'{job} = "{suggested_memory(peak)}"' for job, peak in peaks.items()]


def _failure_notes(row: dict[str, Any]) -> list[str]:
    """An error's infrastructure cause; the attempts of a retried job."""
    notes = []
    if row["outcome"] == "error" and row["infrastructure"]:
        notes.append(f"infrastructure: {row['infrastructure']}")
    tries = attempts_phrase(row["attempts"] or [], passed=row["outcome"] == "passed")
    return [*notes, tries] if tries else notes
