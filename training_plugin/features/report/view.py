"""One job in the report (``JobView``): its HTML extra and the digest that the controller
shows in the job's row and the session header, built from the job's ``JobRecord`` where
the job ran."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from training_plugin import schema, store
from training_plugin.features.report.figures import FIGURES_DIR, figures_html
from training_plugin.features.report.format import (
    attempts_text, cost_html, delta_html, esc, fmt, fmt_duration, fmt_spread,
    lower_is_better, metric_order, number, short_hash, synthetic_badge,
)
from training_plugin.features.report.trend import trend_points, trend_svg
from training_plugin.results import METRICS_FILE, JobRecord
from training_plugin.run.logs import log_tail

#: Lines of the log shown with a failed job's story.
STORY_LOG_LINES = 30
#: Columns of the candidate models table at most.
MAX_MODEL_COLUMNS = 6


def spread(doc: Mapping[str, Any], name: str) -> float | None:
    """The spread (standard deviation across folds) of metric ``name``, where the job gives
    one: ``metrics_std``, a ``<name>_std`` metric, or the best model's ``<name>_std``."""
    for table, key in ((doc.get("metrics_std"), name), (doc.get("metrics"), f"{name}_std")):
        value = number(table.get(key)) if isinstance(table, Mapping) else None
        if value is not None:
            return value
    models = doc.get("models")
    best = doc.get("best_model")
    if isinstance(models, Mapping) and isinstance(models.get(best), Mapping):
        return number(models[best].get(f"{name}_std"))
    return None


def interval(doc: Mapping[str, Any], name: str) -> tuple[float, float] | None:
    """The interval of metric ``name`` (``metrics_ci`` or ``<name>_ci``), or None."""
    table = doc.get("metrics_ci")
    value = table.get(name) if isinstance(table, Mapping) else None
    if value is None:
        value = doc.get(f"{name}_ci")
    if isinstance(value, (list, tuple)) and len(value) == 2:
        lo, hi = number(value[0]), number(value[1])
        if lo is not None and hi is not None:
            return lo, hi
    return None


class JobView:
    """Everything the report shows about one job, gathered where the job ran."""

    def __init__(self, config: pytest.Config, record: JobRecord, outcome: str,
                 started: float | None) -> None:
        self.config = config
        self.record = record
        self.outcome = outcome
        self.id = record.id
        self.output_dir = Path(record.output_dir)
        #: the job table's metric directions
        direction = record.table.get("direction")
        self.directions: Mapping[str, str] = direction if isinstance(direction, Mapping) else {}
        # metrics.json as the item read it: this run's; for a skipped job, its last run's
        has_metrics = bool(record.metrics) or outcome == "skipped"
        self.doc: dict[str, Any] = (record.document or {}) if has_metrics else {}
        self.metrics: dict[str, float] = {
            k: float(v) for k, v in (record.metrics or {}).items() if number(v) is not None
        }
        self.primary = record.primary_metric or None
        self.extra: Mapping[str, Any] = record.extra if isinstance(record.extra, Mapping) else {}
        comparison = self.extra.get("comparison")
        self.comparison = comparison if isinstance(comparison, Mapping) else None
        data = self.doc.get("data")
        self.data: Mapping[str, Any] = data if isinstance(data, Mapping) else {}
        self.synthetic = record.synthetic
        if self.synthetic is None and isinstance(self.data.get("synthetic"), bool):
            self.synthetic = self.data["synthetic"]
        self.started = started
        self.trend_metric: str | None = None

    # -- facts --------------------------------------------------------------------------------
    def lower(self, name: str) -> bool:
        """Whether a smaller value of metric ``name`` is better for this job."""
        return lower_is_better(name, self.directions)

    def compared(self, name: str) -> dict[str, Any] | None:
        """The comparison entry of metric ``name`` (with ``against``), or None."""
        if not self.comparison:
            return None
        entry = (self.comparison.get("metrics") or {}).get(name)
        if not isinstance(entry, Mapping):
            return None
        return {**entry, "against": self.comparison.get("against")}

    def trend(self) -> list[dict[str, Any]]:
        """The primary metric over the last runs (history.jsonl) and this one."""
        history = store.entries_by_job(self.config).get(self.id, [])
        metric = self.primary
        if metric is None:
            for entry in reversed(history):
                if isinstance(entry.get("primary_metric"), str):
                    metric = entry["primary_metric"]
                    break
        current = self.metrics.get(metric) if metric and self.outcome != "skipped" else None
        self.trend_metric = metric
        return trend_points(history, metric, current)

    def digest(self, trend: list[dict[str, Any]]) -> dict[str, Any]:
        """What the controller shows in the job's row and in the session header."""
        primary = None
        if self.primary and self.primary in self.metrics:
            primary = {"name": self.primary, "value": self.metrics[self.primary],
                       "std": spread(self.doc, self.primary), "lower": self.lower(self.primary)}
        return {
            "id": self.id,
            "outcome": self.outcome,
            "primary": primary,
            "delta": self.compared(self.primary) if self.primary else None,
            "synthetic": self.synthetic,
            "source": self.data.get("source"),
            "node": self.record.node,
            "duration_s": self.record.run_duration_s,
            "story": self.record.story,
            "trend": [p["value"] for p in trend],
            "trend_metric": self.trend_metric,
        }

    # -- HTML ---------------------------------------------------------------------------------
    def headline(self) -> str:
        """The primary metric, its spread and its change, big."""
        if not (self.primary and self.primary in self.metrics):
            return ""
        value = self.metrics[self.primary]
        std = spread(self.doc, self.primary)
        ci = interval(self.doc, self.primary)
        parts = [f'<span class="tp-primary-name">{esc(self.primary)}</span> '
                 f'<span class="tp-primary-value">{fmt(value)}</span>']
        if std is not None:
            parts.append(f' <span class="tp-spread">± {fmt_spread(std)}</span>')
        if ci is not None:
            parts.append(f' <span class="tp-ci">95% CI {fmt(ci[0])}–{fmt(ci[1])}</span>')
        if self.doc.get("best_model"):
            parts.append(f' <span class="tp-muted">best model: {esc(self.doc["best_model"])}'
                         "</span>")
        parts.append(" " + delta_html(self.compared(self.primary)))
        return '<div class="tp-headline">' + "".join(parts) + "</div>"

    def failure_html(self) -> str:
        """On failure (and on an infrastructure error): the story and the log tail."""
        if self.outcome not in ("failed", "error"):
            return ""
        story = self.record.story or "the job failed (see the log below)"
        path = Path(self.record.log)
        linked = schema.link_problem(path, self.output_dir) if os.path.lexists(path) else None
        tail = "" if linked else log_tail(path, STORY_LOG_LINES)
        log = (f"<pre class=\"tp-log\">{esc(tail)}</pre>" if tail
               else f'<div class="tp-muted">({esc(linked)}; not shown)</div>' if linked
               else '<div class="tp-muted">(the log is empty)</div>')
        return ('<div class="tp-story"><div class="tp-story-title">Why it failed</div>'
                f'<div class="tp-story-text">{esc(story)}</div>'
                f'<div class="tp-muted">last {STORY_LOG_LINES} lines of '
                f'{esc(self.record.log)}:</div>{log}</div>')

    def metrics_table(self) -> str:
        """Every metric, with its spread, interval and change where known."""
        names = [n for n in self.metrics if not n.endswith("_std")]
        if not names:
            return ""
        names = metric_order(names, self.primary)
        has_sd = any(spread(self.doc, n) is not None for n in names)
        has_ci = any(interval(self.doc, n) for n in names)
        comparison = self.comparison
        head = ["metric", "value"] + (["± sd"] if has_sd else []) + (["95% CI"] if has_ci else [])
        if comparison:
            against = "baseline" if comparison.get("against") == "baseline" else "last run"
            head += [esc(against), "change"]
        rows = []
        for name in names:
            cells = [esc(name), fmt(self.metrics[name])]
            if has_sd:
                cells.append(fmt_spread(spread(self.doc, name)))
            if has_ci:
                ci = interval(self.doc, name)
                cells.append(f"{fmt(ci[0])}–{fmt(ci[1])}" if ci else "")
            cls = ' class="tp-primary-row"' if name == self.primary else ""
            if comparison:
                entry = self.compared(name)
                cells += [fmt(entry.get("reference")) if entry else "",
                          delta_html(entry, short=True) if entry else ""]
                if entry and entry.get("regressed"):
                    cls = ' class="tp-regressed-row"'
            rows.append(f"<tr{cls}>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
        note = self.doc.get("primary_metric_note")
        spread_note = esc(note) if note else "± sd: spread across folds" if has_sd else ""
        return ('<section class="tp-box"><h4>Metrics</h4><table class="tp-table"><thead><tr>'
                + "".join(f"<th>{h}</th>" for h in head) + "</tr></thead><tbody>"
                + "".join(rows) + "</tbody></table>"
                + (f'<div class="tp-muted">{spread_note}</div>' if spread_note else "")
                + "</section>")

    def models_table(self) -> str:
        """The candidate models the job compared, best first."""
        models = self.doc.get("models")
        if not isinstance(models, Mapping) or len(models) < 2:
            return ""
        numeric: dict[str, dict[str, float]] = {}
        for model, values in models.items():
            if isinstance(values, Mapping):
                numeric[str(model)] = {k: float(v) for k, v in values.items()
                                       if number(v) is not None}
        columns = metric_order({k for v in numeric.values() for k in v
                                if not k.endswith("_std")}, self.primary)[:MAX_MODEL_COLUMNS]
        if not columns:
            return ""
        key = columns[0]
        lower = self.lower(key.removeprefix("inner_"))
        order = sorted(numeric, key=lambda m: (key not in numeric[m],
                                               (1 if lower else -1) * numeric[m].get(key, 0)))
        best = self.doc.get("best_model")
        rows = []
        for model in order:
            values = numeric[model]
            cells = [esc(model) + (" ★" if model == best else "")]
            for col in columns:
                if col not in values:
                    cells.append("")
                    continue
                std = values.get(f"{col}_std")
                cells.append(fmt(values[col]) + (f' <span class="tp-muted">± {fmt_spread(std)}'
                                                 "</span>" if std is not None else ""))
            cls = ' class="tp-best-row"' if model == best else ""
            rows.append(f"<tr{cls}>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
        return ('<section class="tp-box"><h4>Candidate models</h4><table class="tp-table">'
                "<thead><tr><th>model</th>" + "".join(f"<th>{esc(c)}</th>" for c in columns)
                + "</tr></thead><tbody>" + "".join(rows) + "</tbody></table>"
                '<div class="tp-muted">★ the model the job reports</div></section>')

    def run_table(self) -> str:
        """Data source, duration, node, settings and the exact command."""
        rec = self.record
        rows: list[tuple[str, str]] = []
        if self.data:
            source = esc(self.data.get("source") or "-")
            if self.synthetic:
                source = synthetic_badge() + " " + source
            rows.append(("data", source))
            shape = [f"{self.data[k]:,} {k}" for k in ("rows", "features")
                     if isinstance(self.data.get(k), int)]
            if shape:
                rows.append(("", esc(" × ".join(shape))))
            if self.data.get("sha256"):
                rows.append(("data sha256", short_hash(self.data["sha256"])))
        elif self.synthetic:
            rows.append(("data", synthetic_badge()))
        settings = [f"{k} {self.doc[k]}" for k in ("folds", "repeats", "epochs", "seed")
                    if self.doc.get(k) is not None]
        if settings:
            rows.append(("settings", esc(", ".join(settings))))
        rows.append(("duration", esc(fmt_duration(rec.run_duration_s))))
        cost = cost_html(rec.cost)
        if cost:
            rows.append(("cost", cost))
        if rec.node:
            rows.append(("node", esc(rec.node)))
        if rec.result and rec.result != "ok":
            rows.append(("ended", esc(rec.result)))
        tries = attempts_text(rec.attempts)
        if tries:
            rows.append(("attempts", f'<span class="tp-attempts">{esc(tries)}</span>'))
        fingerprint = self.extra.get("fingerprint")
        if isinstance(fingerprint, Mapping) and fingerprint.get("sha256"):
            rows.append(("fingerprint", short_hash(fingerprint["sha256"])))
        rows.append(("command", f'<code class="tp-command">{esc(rec.command)}</code>'))
        rows.append(("outputs", f"<code>{esc(self.output_dir)}</code>"))
        body = "".join(f"<tr><th>{k}</th><td>{v}</td></tr>" for k, v in rows)
        return (f'<section class="tp-box tp-run"><h4>Run</h4><table class="tp-kv">{body}</table>'
                "</section>")

    def notes_html(self) -> str:
        """Notes from the plugins, and a malformed metrics.json."""
        notes = [str(n) for n in self.record.notes or []]
        if self.record.metrics_error:
            notes.append(str(self.record.metrics_error))
        if self.outcome == "skipped":
            notes.append("skipped: " + str(self.record.story or "")
                         + (" (metrics and figures from its last run)" if self.doc else ""))
        if not notes:
            return ""
        return ('<ul class="tp-notes">' + "".join(f"<li>{esc(n)}</li>" for n in notes) + "</ul>")

    def trend_html(self, trend: list[dict[str, Any]]) -> str:
        """The trend plot, where earlier runs exist."""
        metric = self.trend_metric
        svg = trend_svg(trend, metric or "", self.lower(metric or ""))
        if not svg:
            return ""
        return f'<section class="tp-box"><h4>Trend: {esc(metric)}</h4>{svg}</section>'

    def figures_since(self) -> float | None:
        """When this run's figures began (epoch s): older files in ``figures/`` were left by
        an earlier run.  Measured back from this run's metrics.json, written on the clock of
        the node that drew the figures (under ``--ray`` a job may also have started before its
        item); without one, from the start of the item.  None (all are shown) for a skipped job,
        whose folder holds its last run."""
        if self.outcome == "skipped":
            return None
        duration = number(self.record.run_duration_s) or 0.0
        if self.doc:
            try:
                return (self.output_dir / METRICS_FILE).stat().st_mtime - duration - 2
            except OSError:
                pass
        return None if self.started is None else self.started - duration - 2

    def html(self, trend: list[dict[str, Any]]) -> str:
        """The job's extra: banner, headline, failure, tables, trend, figures."""
        banner = ""
        if self.synthetic:
            banner = (f'<div class="tp-banner">{synthetic_badge(big=True)} data: '
                      f'{esc(self.data.get("source") or "generated")} — these results say '
                      "nothing about real patients</div>")
        figures, _ = figures_html(self.output_dir / FIGURES_DIR, self.figures_since(),
                                  self.output_dir)
        boxes = "".join([self.metrics_table(), self.models_table(), self.run_table(),
                         self.trend_html(trend)])
        title = (f'<div class="tp-job-title"><span class="tp-job-name">{esc(self.id)}</span> '
                 f'<span class="tp-outcome tp-outcome-{esc(self.outcome)}">{esc(self.outcome)}'
                 f'</span> <span class="tp-muted">{esc(self.record.script)}</span></div>')
        return (f'<div class="tp-job" data-job="{esc(self.id)}">{title}{banner}{self.headline()}'
                f'{self.failure_html()}{self.notes_html()}<div class="tp-boxes">{boxes}</div>'
                f"{figures}</div>")
