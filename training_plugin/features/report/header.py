"""The session header of the report: when, commit, counts, total time, where the jobs ran,
and a table of every job at a glance (built on the controller from the jobs' records and
digests)."""

from __future__ import annotations

import shlex
from collections import Counter
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Any

import pytest

from training_plugin import provenance
from training_plugin.executors.base import session_cost
from training_plugin.features.report.format import (
    attempts_text, cost_html, delta_html, esc, fmt, fmt_duration, fmt_spread, synthetic_badge,
)
from training_plugin.features.report.trend import trend_svg
from training_plugin.results import JobRecord

#: The report's style sheet (package data beside this module).
STYLE_FILE = "style.css"


def style() -> str:
    """The ``<style>`` element of the report."""
    css = resources.files(__package__).joinpath(STYLE_FILE).read_text(encoding="utf-8")
    return f"<style>\n{css}</style>"


def commit_text(config: pytest.Config) -> str | None:
    """The session's commit (as in the run history), shortened, with ``+ uncommitted
    changes`` when the checkout is dirty; None outside a git checkout."""
    sha = provenance.session_facts(config)["commit"]
    if sha is None:
        return None
    dirty = provenance.git_dirty(Path(config.rootpath))
    return sha[:10] + (" + uncommitted changes" if dirty else "")


def primary_cell(digest: Mapping[str, Any] | None) -> str:
    """The primary metric of a job, its spread and change (one table cell's content)."""
    primary = (digest or {}).get("primary")
    if not primary:
        return '<span class="tp-muted">-</span>'
    std = primary.get("std")
    text = (f'<span class="tp-muted">{esc(primary["name"])}</span> '
            f'<b>{fmt(primary["value"])}</b>')
    if std is not None:
        text += f' <span class="tp-muted">± {fmt_spread(std)}</span>'
    delta = delta_html(digest.get("delta"))
    return text + (f"<br>{delta}" if delta else "")


def data_cell(digest: Mapping[str, Any] | None) -> str:
    """The data cell: the SYNTHETIC badge, or "real"."""
    synthetic = (digest or {}).get("synthetic")
    if synthetic:
        return synthetic_badge()
    return '<span class="tp-muted">real</span>' if synthetic is False else ""


def session_html(config: pytest.Config, started_utc: str, total_s: float,
                 records: Mapping[str, JobRecord], digests: Mapping[str, Mapping[str, Any]],
                 unfinished: list[str]) -> str:
    """The "Training session" box: ``records`` and ``digests`` by node id (the jobs that
    reported), ``unfinished`` the ids of the jobs that did not run or finish."""
    outcomes = Counter(r.outcome for r in records.values())
    counts = []
    for name in ("passed", "failed", "error", "skipped"):
        if outcomes.get(name):
            counts.append(f'<span class="tp-count-{name}">{outcomes[name]} {name}</span>')
    if unfinished:
        counts.append(f'<span class="tp-count-failed">{len(unfinished)} did not run '
                      "or finish (the session stopped early): "
                      + esc(", ".join(unfinished)) + "</span>")
    nodes = Counter(str(r.node or "not started") for r in records.values()
                    if r.outcome != "skipped" or r.node)
    where = ", ".join(f"{esc(n)} ({c} job{'s' if c > 1 else ''})"
                      for n, c in sorted(nodes.items())) or "-"
    commit = commit_text(config)
    synthetic = sorted(d["id"] for d in digests.values() if d.get("synthetic"))
    job_time = sum(float(r.duration_s or 0) for r in records.values())
    rows = [
        ("started", esc(started_utc)),
        ("commit", f"<code>{esc(commit)}</code>" if commit else "unknown (not a git "
         "checkout)"),
        ("jobs", ", ".join(counts) + f" ({len(records) + len(unfinished)} in all)"),
        ("total time", f"{esc(fmt_duration(total_s))} (the jobs' own time added up: "
         f"{esc(fmt_duration(job_time))})"),
        ("ran on", where),
        ("command", "<code>" + esc(shlex.join(["pytest", *config.invocation_params.args]))
         + "</code>"),
    ]
    total = cost_total(records)
    if total:
        rows.append(("cost", total))
    if synthetic:
        rows.append(("synthetic data", synthetic_badge() + " " + esc(", ".join(synthetic))))
    body = "".join(f"<tr><th>{k}</th><td>{v}</td></tr>" for k, v in rows)
    return (f'<div class="tp-session"><h3>Training session</h3><table class="tp-kv">{body}'
            f"</table>{overview_html(records, digests)}</div>")


def cost_total(records: Mapping[str, JobRecord]) -> str:
    """The session's cost: CPU time added up over the jobs' attempts (saying how many were not
    measured), the largest peak of one job ("" when no job's cost was measured)."""
    total = session_cost(records.values())
    if total is None:
        return ""
    return f'<span class="tp-cost-total">{esc(total.phrase())}</span>'


def overview_html(records: Mapping[str, JobRecord],
                  digests: Mapping[str, Mapping[str, Any]]) -> str:
    """One line per job: outcome, primary metric, change, data, duration, cost, node, trend,
    and the story of a job that did not pass (of one that passed on a later attempt, its
    attempts)."""
    lines = []
    for nodeid, record in sorted(records.items(), key=lambda kv: str(kv[1].id)):
        digest = digests.get(nodeid) or {}
        outcome = str(record.outcome)
        primary = digest.get("primary") or {}
        points = digest.get("trend") or []
        spark = trend_svg([{"value": v, "time": "", "commit": "", "current":
                            i == len(points) - 1 and outcome == "passed"}
                           for i, v in enumerate(points)],
                          str(digest.get("trend_metric") or ""), bool(primary.get("lower")),
                          width=110, height=28, small=True)
        story = (record.story if outcome in ("failed", "error", "skipped")
                 else attempts_text(record.attempts))
        lines.append(
            f'<tr class="tp-o-{esc(outcome)}"><td><a href="#{esc(nodeid)}">'
            f"{esc(record.id)}</a></td><td>{esc(outcome)}</td>"
            f"<td>{primary_cell(digest) if digest else ''}</td><td>{data_cell(digest)}</td>"
            f'<td>{esc(fmt_duration(digest.get("duration_s") or record.duration_s))}</td>'
            f"<td>{cost_html(record.cost)}</td>"
            f'<td>{esc(record.node or "")}</td><td>{spark}</td>'
            f'<td class="tp-story-cell">{esc(story or "")}</td></tr>')
    head = "".join(f"<th>{h}</th>" for h in ("job", "outcome", "primary metric", "data",
                                              "duration", "cost", "node", "trend", ""))
    return (f'<table class="tp-overview"><thead><tr>{head}</tr></thead><tbody>'
            f'{"".join(lines)}</tbody></table>')
