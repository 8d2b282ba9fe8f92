"""The HTML report: pytest-html extras for every training job, and the session's header.

Active only with pytest-html's ``--html FILE``; without it nothing here is registered and
neither pytest-html's API nor Pillow is imported.

In the process that runs a job (the controller, an xdist worker, or the controller under
``--ray``), ``pytest_runtest_makereport`` turns the job's record, its ``metrics.json``, its
``figures/`` and ``<output-dir>/history.jsonl`` into one HTML extra on the call report
(``report.extras``, which pytest-html reads) and a small JSON-able digest
(``report.training_html``); both travel with the report to the controller.  There, the
pytest-html hooks add the metric / data / node columns, the session header (when, commit,
counts, total time, where the jobs ran) with a table of every job at a glance, and keep only
the tail of each ``train.log`` in the report (the whole log stays on disk).
"""

from __future__ import annotations

import base64
import datetime as dt
import html
import io
import math
import shlex
import subprocess
import time
from collections import Counter
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import pytest

from training_plugin import results

#: The name the report plugin object is registered under.
NAME = "training_plugin.report"
#: Report attribute carrying a job's digest for the controller (JSON-able; travels under -n).
REPORT_ATTR = "training_html"
#: Where a job leaves images for the report (inside its output directory).
FIGURES_DIR = "figures"
#: Image types embedded from ``figures/``, by suffix.
FIGURE_TYPES = {".png": "image/png", ".svg": "image/svg+xml", ".jpg": "image/jpeg",
                ".jpeg": "image/jpeg"}
#: Raster figures are downscaled to fit this many pixels on their longer side.
MAX_FIGURE_PX = 640
#: At most this many figures per job are embedded (the others are named).
MAX_FIGURES = 24
#: A figure still larger than this (bytes, after downscaling) is named, not embedded.
MAX_FIGURE_BYTES = 600_000
#: Earlier runs shown in a job's trend plot (the current run comes on top).
TREND_RUNS = 20
#: Lines of ``train.log`` kept in the report's log panel (failed jobs also get a tail).
LOG_TAIL_LINES = 40
#: Lines of the log shown with a failed job's story.
STORY_LOG_LINES = 30
#: The order in which known metrics are listed (others follow alphabetically).
METRIC_ORDER = ("roc_auc", "accuracy", "balanced_accuracy", "f1_macro", "sensitivity",
                "specificity", "ppv", "npv", "brier", "calibration_slope",
                "calibration_intercept", "rmse", "mae", "r2")
#: Columns of the candidate models table at most.
MAX_MODEL_COLUMNS = 6


def add_options(group: pytest.OptionGroup, parser: pytest.Parser) -> None:
    """No options: the report is pytest-html's ``--html FILE`` (``--self-contained-html``)."""


def add_ini(parser: pytest.Parser) -> None:
    """No ini keys (pytest-html's own, e.g. ``render_collapsed``, apply)."""


def configure(config: pytest.Config) -> None:
    """Register the report plugin when pytest-html writes a report (``--html``)."""
    if not config.getoption("htmlpath", None) or not config.pluginmanager.hasplugin("html"):
        return
    if config.pluginmanager.get_plugin(NAME) is None:
        config.pluginmanager.register(HtmlReport(config), NAME)


# ---------------------------------------------------------------------------------------------
# small formatting helpers
# ---------------------------------------------------------------------------------------------
def esc(value: Any) -> str:
    """HTML-escaped text of ``value``."""
    return html.escape(str(value), quote=True)


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def fmt(value: Any) -> str:
    """A metric value for people: 4 significant digits, thousands without decimals."""
    number = _number(value)
    if number is None:
        return "-" if value is None else esc(value)
    if abs(number) >= 10_000:
        return f"{number:,.0f}"
    return f"{number:.4g}" if abs(number) >= 1e-4 or number == 0 else f"{number:.2e}"


def fmt_spread(value: Any) -> str:
    """A standard deviation: 2 significant digits."""
    number = _number(value)
    return "-" if number is None else f"{number:.2g}"


def fmt_delta(value: Any) -> str:
    """A signed change."""
    number = _number(value)
    if number is None:
        return "-"
    return "±0" if number == 0 else f"{number:+.3g}"


def fmt_duration(seconds: Any) -> str:
    """``42.0 s``, ``3 min 05 s``, ``1 h 02 min``."""
    number = _number(seconds)
    if number is None:
        return "-"
    if number < 60:
        return f"{number:.1f} s"
    minutes, secs = divmod(int(round(number)), 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def lower_is_better(name: str, config: Any = None) -> bool:
    """Whether a smaller value of metric ``name`` is better: the gates' rule (the job table's
    ``direction``, then the known metric names), so the report and the gates agree."""
    from training_plugin.features import gates

    return gates.direction(name, config) == "lower"


def metric_order(names: Iterable[str], primary: str | None = None) -> list[str]:
    """Metric names: the primary first, then the known ones in their order, then the rest."""
    names = list(dict.fromkeys(names))
    known = {name: i for i, name in enumerate(METRIC_ORDER)}
    names.sort(key=lambda n: (n != primary, known.get(n, len(known)), n))
    return names


# ---------------------------------------------------------------------------------------------
# what a job left: metrics.json, spread, figures, history
# ---------------------------------------------------------------------------------------------
def spread(doc: Mapping[str, Any], name: str) -> float | None:
    """The spread (standard deviation across folds) of metric ``name``, where the job gives
    one: ``metrics_std``, a ``<name>_std`` metric, or the best model's ``<name>_std``."""
    for table, key in ((doc.get("metrics_std"), name), (doc.get("metrics"), f"{name}_std")):
        value = _number(table.get(key)) if isinstance(table, Mapping) else None
        if value is not None:
            return value
    models = doc.get("models")
    best = doc.get("best_model")
    if isinstance(models, Mapping) and isinstance(models.get(best), Mapping):
        return _number(models[best].get(f"{name}_std"))
    return None


def interval(doc: Mapping[str, Any], name: str) -> tuple[float, float] | None:
    """The interval of metric ``name`` (``metrics_ci`` or ``<name>_ci``), or None."""
    table = doc.get("metrics_ci")
    value = table.get(name) if isinstance(table, Mapping) else None
    if value is None:
        value = doc.get(f"{name}_ci")
    if isinstance(value, (list, tuple)) and len(value) == 2:
        lo, hi = _number(value[0]), _number(value[1])
        if lo is not None and hi is not None:
            return lo, hi
    return None


def downscale(path: Path, max_px: int = MAX_FIGURE_PX) -> tuple[bytes, str, int, int]:
    """The bytes, MIME type and size of a raster figure, downscaled to ``max_px`` and
    re-encoded (256-colour PNG, or JPEG for photographs) when that is smaller."""
    from PIL import Image

    raw = path.read_bytes()
    with Image.open(io.BytesIO(raw)) as image:
        image.load()
        fmt_in = image.format
        width, height = image.size
        resized = max(width, height) > max_px
        if resized:
            image.thumbnail((max_px, max_px), Image.Resampling.LANCZOS)
        candidates: list[tuple[bytes, str]] = []
        if not resized and fmt_in in ("PNG", "JPEG"):
            candidates.append((raw, "image/png" if fmt_in == "PNG" else "image/jpeg"))
        rgba = image.convert("RGBA")
        buffer = io.BytesIO()
        rgba.quantize(256, method=Image.Quantize.FASTOCTREE).save(buffer, "PNG", optimize=True)
        candidates.append((buffer.getvalue(), "image/png"))
        if fmt_in == "JPEG" or (resized and fmt_in != "PNG"):
            buffer = io.BytesIO()
            image.convert("RGB").save(buffer, "JPEG", quality=85, optimize=True)
            candidates.append((buffer.getvalue(), "image/jpeg"))
        data, mime = min(candidates, key=lambda c: len(c[0]))
        return data, mime, image.size[0], image.size[1]


def figure_files(folder: Path, since: float | None) -> tuple[list[Path], list[str]]:
    """The figures in ``folder`` (sorted by name) written at or after ``since`` (epoch s;
    None: all), and the names of the older ones, which an earlier run left."""
    try:
        files = sorted(p for p in folder.iterdir()
                       if p.suffix.lower() in FIGURE_TYPES and p.is_file())
    except OSError:
        return [], []
    if since is None:
        return files, []
    fresh, stale = [], []
    for path in files:
        try:
            (fresh if path.stat().st_mtime >= since else stale).append(path)
        except OSError:
            pass
    return fresh, [p.name for p in stale]


def figure_html(path: Path) -> tuple[str, int]:
    """An ``<img>`` (data URI) with caption for one figure, and the bytes embedded; a note
    instead when the file cannot be read or stays too large."""
    caption = f"<figcaption>{esc(path.stem.replace('_', ' '))}</figcaption>"
    try:
        if path.suffix.lower() == ".svg":
            data, mime, size = path.read_bytes(), "image/svg+xml", ""
        else:
            data, mime, width, height = downscale(path)
            size = f' width="{width}" height="{height}"'
    except Exception as exc:  # a broken figure is named in the report, never fatal
        return (f'<figure class="tp-fig tp-fig-bad"><div>{esc(path.name)} could not be read: '
                f"{esc(type(exc).__name__)}: {esc(exc)}</div>{caption}</figure>", 0)
    if len(data) > MAX_FIGURE_BYTES:
        return (f'<figure class="tp-fig tp-fig-bad"><div>{esc(path.name)} is '
                f"{len(data) // 1024} KiB even when downscaled; not embedded</div>"
                f"{caption}</figure>", 0)
    uri = f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"
    return (f'<figure class="tp-fig"><img src="{uri}"{size} alt="{esc(path.name)}" '
            f'title="{esc(path.name)}">{caption}</figure>', len(uri))


def trend_points(history: list[dict[str, Any]], metric: str | None,
                 current: float | None) -> list[dict[str, Any]]:
    """The trend of ``metric``: the last earlier runs that report it, then this run."""
    if not metric:
        return []
    points = []
    for entry in history:
        metrics = entry.get("metrics")
        value = _number(metrics.get(metric)) if isinstance(metrics, Mapping) else None
        if value is None:
            continue
        commit = entry.get("commit")
        points.append({"value": value, "time": str(entry.get("time") or ""),
                       "commit": str(commit)[:10] if commit else "", "current": False})
    points = points[-TREND_RUNS:]
    if current is not None:
        points.append({"value": current, "time": "this run", "commit": "", "current": True})
    return points


def trend_svg(points: list[dict[str, Any]], metric: str, lower_better: bool,
              width: int = 300, height: int = 110, small: bool = False) -> str:
    """An inline SVG line plot of ``points`` (hover a point for its run)."""
    if len(points) < 2:
        return ""
    values = [p["value"] for p in points]
    lo, hi = min(values), max(values)
    if hi - lo < 1e-12:
        lo, hi = lo - 0.5 * (abs(lo) or 1) * 0.01, hi + 0.5 * (abs(hi) or 1) * 0.01
    left, right, top, bottom = (4, 4, 4, 4) if small else (46, 10, 10, 22)
    plot_w, plot_h = width - left - right, height - top - bottom
    step = plot_w / (len(points) - 1)

    def xy(i: int, v: float) -> tuple[float, float]:
        return left + i * step, top + (hi - v) / (hi - lo) * plot_h

    coords = [xy(i, v) for i, v in enumerate(values)]
    parts = [f'<svg class="tp-trend" xmlns="http://www.w3.org/2000/svg" width="{width}" '
             f'height="{height}" viewBox="0 0 {width} {height}" role="img" '
             f'aria-label="{esc(metric)} over the last {len(points)} runs">']
    if not small:
        parts.append(f'<line x1="{left}" y1="{top}" x2="{left}" y2="{top + plot_h}" '
                     'stroke="#bbb"/>')
        parts.append(f'<line x1="{left}" y1="{top + plot_h}" x2="{left + plot_w}" '
                     f'y2="{top + plot_h}" stroke="#bbb"/>')
        for value, y in ((hi, top + 4), (lo, top + plot_h)):
            parts.append(f'<text x="{left - 4}" y="{y:.1f}" text-anchor="end" font-size="10" '
                         f'fill="#555">{fmt(value)}</text>')
        parts.append(f'<text x="{left}" y="{height - 6}" font-size="10" fill="#555">'
                     f'{len(points) - 1} earlier run{"s" if len(points) > 2 else ""}</text>')
        parts.append(f'<text x="{left + plot_w}" y="{height - 6}" font-size="10" fill="#555" '
                     f'text-anchor="end">{esc(metric)} ({"lower" if lower_better else "higher"}'
                     " is better)</text>")
    path = " ".join(f"{x:.1f},{y:.1f}" for x, y in coords)
    parts.append(f'<polyline points="{path}" fill="none" stroke="#1565c0" '
                 f'stroke-width="{1.2 if small else 1.6}"/>')
    for point, (x, y) in zip(points, coords):
        label = f"{point['time']} {point['commit']}: {fmt(point['value'])}".strip()
        colour = "#e65100" if point["current"] else "#1565c0"
        radius = (2.2 if small else 4) if point["current"] else (1.2 if small else 2.6)
        parts.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="{radius}" fill="{colour}">'
                     f"<title>{esc(label)}</title></circle>")
    parts.append("</svg>")
    return "".join(parts)


# ---------------------------------------------------------------------------------------------
# one job: its digest (for the controller) and its HTML extra
# ---------------------------------------------------------------------------------------------
def short_hash(value: Any) -> str:
    """The first 16 hex digits of a hash, the whole one on hover."""
    return f'<code title="{esc(value)}">{esc(str(value)[:16])}…</code>'


def synthetic_badge(big: bool = False) -> str:
    """The SYNTHETIC badge."""
    cls = "tp-synthetic tp-synthetic-big" if big else "tp-synthetic"
    return (f'<span class="{cls}" title="trained and scored on generated data: the figures '
            'say nothing about real patients">SYNTHETIC</span>')


def delta_html(delta: Mapping[str, Any] | None, short: bool = False) -> str:
    """A change against the baseline or the last run, coloured by whether it is better
    (``short``: without "vs ...", for a table whose header says it)."""
    if not delta or _number(delta.get("delta")) is None:
        return ""
    value = float(delta["delta"])
    lower = delta.get("direction") == "lower"
    better = (value < 0) if lower else (value > 0)
    cls = ("tp-regressed" if delta.get("regressed") else
           "tp-better" if better else "tp-same" if value == 0 else "tp-worse")
    arrow = "▲" if value > 0 else "▼" if value < 0 else "="
    against = "baseline" if delta.get("against") == "baseline" else "last run"
    flag = " REGRESSED" if delta.get("regressed") else ""
    text = f"{arrow} {fmt_delta(value)}" + ("" if short else f" vs {esc(against)}") + flag
    return (f'<span class="tp-delta {cls}" title="{esc(fmt(delta.get("reference")))} in the '
            f'{esc(against)}">{text}</span>')


class JobView:
    """Everything the report shows about one job, gathered where the job ran."""

    def __init__(self, item: Any, record: Mapping[str, Any], outcome: str,
                 started: float | None) -> None:
        spec = item.spec
        self.spec = spec
        self.record = dict(record)
        self.outcome = outcome
        self.id = str(record.get("id") or spec.id)
        self.output_dir = Path(record.get("output_dir") or spec.output_dir)
        self.table = getattr(spec, "config", None)  #: the job-table entry (metric directions)
        # metrics.json: this run's; for a skipped job, the last run's (it was not moved aside)
        has_metrics = bool(record.get("metrics")) or outcome == "skipped"
        self.doc = ((results.read_json_object(self.output_dir / "metrics.json") or {})
                    if has_metrics else {})
        self.metrics: dict[str, float] = {
            k: float(v) for k, v in (record.get("metrics") or {}).items() if _number(v) is not None
        }
        self.primary = record.get("primary_metric") or None
        self.extra = record.get("extra") if isinstance(record.get("extra"), Mapping) else {}
        comparison = self.extra.get("comparison")
        self.comparison = comparison if isinstance(comparison, Mapping) else None
        data = self.doc.get("data")
        self.data = data if isinstance(data, Mapping) else {}
        self.synthetic = record.get("synthetic")
        if self.synthetic is None and isinstance(self.data.get("synthetic"), bool):
            self.synthetic = self.data["synthetic"]
        self.started = started
        self.trend_metric: str | None = None
        self.config = item.config

    # -- facts --------------------------------------------------------------------------------
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
        from training_plugin.features import history as history_mod

        history = history_mod.entries_by_job(self.config).get(self.id, [])
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
                       "std": spread(self.doc, self.primary),
                       "lower": lower_is_better(self.primary, self.table)}
        return {
            "id": self.id,
            "outcome": self.outcome,
            "primary": primary,
            "delta": self.compared(self.primary) if self.primary else None,
            "synthetic": self.synthetic,
            "source": self.data.get("source"),
            "node": self.record.get("node"),
            "duration_s": self.record.get("run_duration_s"),
            "story": self.record.get("story"),
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
        """On failure: the story and the log tail."""
        if self.outcome != "failed":
            return ""
        from training_plugin import runner

        story = self.record.get("story") or "the job failed (see the log below)"
        tail = runner.log_tail(Path(self.record.get("log") or self.spec.log_path),
                               STORY_LOG_LINES)
        log = (f"<pre class=\"tp-log\">{esc(tail)}</pre>" if tail
               else '<div class="tp-muted">(the log is empty)</div>')
        return ('<div class="tp-story"><div class="tp-story-title">Why it failed</div>'
                f'<div class="tp-story-text">{esc(story)}</div>'
                f'<div class="tp-muted">last {STORY_LOG_LINES} lines of '
                f'{esc(self.record.get("log") or self.spec.log_path)}:</div>{log}</div>')

    def metrics_table(self) -> str:
        """Every metric, with its spread, interval and change where known."""
        names = [n for n in self.metrics if not n.endswith("_std")]
        if not names:
            return ""
        names = metric_order(names, self.primary)
        has_sd = any(spread(self.doc, n) is not None for n in names)
        has_ci = any(interval(self.doc, n) for n in names)
        has_cmp = bool(self.comparison)
        head = ["metric", "value"] + (["± sd"] if has_sd else []) + (["95% CI"] if has_ci else [])
        if has_cmp:
            against = "baseline" if self.comparison.get("against") == "baseline" else "last run"
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
            if has_cmp:
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
                                       if _number(v) is not None}
        columns = metric_order({k for v in numeric.values() for k in v
                                if not k.endswith("_std")}, self.primary)[:MAX_MODEL_COLUMNS]
        if not columns:
            return ""
        key = columns[0]
        lower = lower_is_better(key.removeprefix("inner_"), self.table)
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
        rows.append(("duration", esc(fmt_duration(rec.get("run_duration_s")))))
        if rec.get("node"):
            rows.append(("node", esc(rec["node"])))
        if rec.get("result") and rec["result"] != "ok":
            rows.append(("ended", esc(rec["result"])))
        fingerprint = self.extra.get("fingerprint")
        if isinstance(fingerprint, Mapping) and fingerprint.get("sha256"):
            rows.append(("fingerprint", short_hash(fingerprint["sha256"])))
        command = rec.get("command") or list(self.spec.argv)
        rows.append(("command", f'<code class="tp-command">{esc(shlex.join(command))}</code>'))
        rows.append(("outputs", f"<code>{esc(self.output_dir)}</code>"))
        body = "".join(f"<tr><th>{k}</th><td>{v}</td></tr>" for k, v in rows)
        return (f'<section class="tp-box tp-run"><h4>Run</h4><table class="tp-kv">{body}</table>'
                "</section>")

    def notes_html(self) -> str:
        """Notes from the plugins, and a malformed metrics.json."""
        notes = [str(n) for n in self.record.get("notes") or []]
        if self.record.get("metrics_error"):
            notes.append(str(self.record["metrics_error"]))
        if self.outcome == "skipped":
            notes.append("skipped: " + str(self.record.get("story") or "")
                         + (" (metrics and figures from its last run)" if self.doc else ""))
        if not notes:
            return ""
        return ('<ul class="tp-notes">' + "".join(f"<li>{esc(n)}</li>" for n in notes) + "</ul>")

    def trend_html(self, trend: list[dict[str, Any]]) -> str:
        """The trend plot, where earlier runs exist."""
        metric = self.trend_metric
        svg = trend_svg(trend, metric or "", lower_is_better(metric or "", self.table))
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
        duration = _number(self.record.get("run_duration_s")) or 0.0
        if self.doc:
            try:
                return (self.output_dir / "metrics.json").stat().st_mtime - duration - 2
            except OSError:
                pass
        return None if self.started is None else self.started - duration - 2

    def figures_html(self) -> tuple[str, int]:
        """Every figure of ``figures/`` written by this run, embedded; and the bytes."""
        fresh, stale = figure_files(self.output_dir / FIGURES_DIR, self.figures_since())
        if not fresh and not stale:
            return "", 0
        parts, total = [], 0
        for path in fresh[:MAX_FIGURES]:
            text, size = figure_html(path)
            parts.append(text)
            total += size
        notes = []
        if len(fresh) > MAX_FIGURES:
            notes.append(f"{len(fresh) - MAX_FIGURES} more figures not embedded: "
                         + ", ".join(p.name for p in fresh[MAX_FIGURES:]))
        if stale:
            notes.append(f"not shown, left by an earlier run: {', '.join(stale)}")
        note = "".join(f'<div class="tp-muted">{esc(n)}</div>' for n in notes)
        return (f'<section class="tp-figures"><h4>Figures</h4><div class="tp-fig-grid">'
                f'{"".join(parts)}</div>{note}</section>', total)

    def html(self, trend: list[dict[str, Any]]) -> str:
        """The job's extra: banner, headline, failure, tables, trend, figures."""
        banner = ""
        if self.synthetic:
            banner = (f'<div class="tp-banner">{synthetic_badge(big=True)} data: '
                      f'{esc(self.data.get("source") or "generated")} — these results say '
                      "nothing about real patients</div>")
        figures, _ = self.figures_html()
        boxes = "".join([self.metrics_table(), self.models_table(), self.run_table(),
                         self.trend_html(trend)])
        script = self.record.get("script") or getattr(self.spec, "relpath", "")
        title = (f'<div class="tp-job-title"><span class="tp-job-name">{esc(self.id)}</span> '
                 f'<span class="tp-outcome tp-outcome-{esc(self.outcome)}">{esc(self.outcome)}'
                 f'</span> <span class="tp-muted">{esc(script)}</span></div>')
        return (f'<div class="tp-job" data-job="{esc(self.id)}">{title}{banner}{self.headline()}'
                f'{self.failure_html()}{self.notes_html()}<div class="tp-boxes">{boxes}</div>'
                f"{figures}</div>")


# ---------------------------------------------------------------------------------------------
# the session: header and overview
# ---------------------------------------------------------------------------------------------
def git_commit(config: pytest.Config) -> str | None:
    """The session's commit (as in the run history), shortened, with ``+ uncommitted
    changes`` when the checkout is dirty; None outside a git checkout."""
    from training_plugin.features import history

    sha = history.session_facts(config)["commit"]
    if sha is None:
        return None
    try:
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               cwd=config.rootpath, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return sha[:10]
    return sha[:10] + (" + uncommitted changes"
                       if dirty.returncode == 0 and dirty.stdout.strip() else "")


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


STYLE = """<style>
.tp-synthetic{display:inline-block;background:#c62828;color:#fff;font-weight:700;
  padding:1px 7px;border-radius:3px;letter-spacing:.06em;font-size:12px}
.tp-synthetic-big{font-size:15px;padding:3px 10px}
.tp-banner{background:#ffebee;border:2px solid #c62828;color:#b71c1c;padding:8px 12px;
  margin:6px 0 10px;font-size:14px;border-radius:4px}
.tp-job{font-family:Helvetica,Arial,sans-serif;font-size:13px;padding:4px 2px 10px}
.tp-job-title{border-bottom:2px solid #1565c0;margin:2px 0 8px;padding-bottom:3px}
.tp-job-name{font-size:18px;font-weight:700}
.tp-outcome{display:inline-block;padding:1px 7px;border-radius:3px;font-size:12px;
  font-weight:700;color:#fff;background:#777;vertical-align:2px}
.tp-outcome-passed{background:#2e7d32}.tp-outcome-failed{background:#c62828}
.tp-outcome-skipped{background:#f9a825;color:#000}
.tp-headline{font-size:15px;margin:4px 0 8px}
.tp-primary-name{color:#555}.tp-primary-value{font-size:22px;font-weight:700}
.tp-spread,.tp-ci,.tp-muted{color:#666;font-size:12px}
.tp-delta{display:inline-block;padding:1px 6px;border-radius:3px;font-size:12px;
  font-weight:600;white-space:nowrap}
.tp-better{background:#e8f5e9;color:#1b5e20}.tp-worse{background:#fff3e0;color:#e65100}
.tp-same{background:#eee;color:#444}.tp-regressed{background:#c62828;color:#fff}
.tp-story{border-left:5px solid #c62828;background:#fff5f5;padding:8px 12px;margin:6px 0}
.tp-story-title{font-weight:700;color:#b71c1c;margin-bottom:3px}
.tp-story-text{font-size:14px;margin-bottom:6px;white-space:pre-wrap}
.tp-log{background:#272822;color:#f8f8f2;padding:6px 8px;max-height:260px;overflow:auto;
  font-size:11px;white-space:pre-wrap;margin:4px 0 0}
.tp-notes{margin:4px 0 8px;padding-left:18px;color:#6d4c41}
.tp-boxes{display:flex;flex-wrap:wrap;gap:12px;align-items:flex-start}
.tp-box{border:1px solid #ddd;border-radius:4px;padding:6px 10px;background:#fafafa;
  max-width:100%}
.tp-box h4,.tp-figures h4{margin:2px 0 6px;font-size:13px;color:#333}
.tp-table{border-collapse:collapse}
.tp-table th,.tp-table td{padding:2px 8px;text-align:right;border-bottom:1px solid #eee;
  font-size:12px;white-space:nowrap}
.tp-table th:first-child,.tp-table td:first-child{text-align:left}
.tp-primary-row td{font-weight:700}.tp-best-row{background:#e3f2fd}
.tp-regressed-row{background:#ffebee}
.tp-kv th{text-align:left;color:#666;font-weight:400;padding:1px 10px 1px 0;
  vertical-align:top;white-space:nowrap;font-size:12px}
.tp-kv td{font-size:12px;padding:1px 0}
.tp-run{max-width:470px}.tp-command{word-break:break-all;font-size:11px}
.tp-figures{margin-top:10px}
.tp-fig-grid{display:flex;flex-wrap:wrap;gap:10px;align-items:flex-start}
.tp-fig{margin:0;border:1px solid #ddd;background:#fff;padding:4px;border-radius:4px}
.tp-fig img{display:block;max-width:min(100%,480px);height:auto}
.tp-fig figcaption{text-align:center;color:#555;font-size:12px;padding-top:2px}
.tp-fig-bad div{color:#b71c1c;max-width:300px;padding:8px}
.tp-session{border:1px solid #ccc;border-radius:4px;padding:8px 12px;margin:6px 0 10px;
  background:#fcfcfc}
.tp-session h3{margin:0 0 6px}
.tp-session .tp-kv th,.tp-session .tp-kv td{font-size:13px}
.tp-count-failed{color:#c62828;font-weight:700}.tp-count-passed{color:#2e7d32;font-weight:700}
.tp-overview{border-collapse:collapse;margin-top:8px}
.tp-overview th,.tp-overview td{padding:3px 10px;border-bottom:1px solid #e5e5e5;
  text-align:left;font-size:13px;vertical-align:middle}
.tp-overview tr.tp-o-failed td:first-child{border-left:4px solid #c62828}
.tp-overview tr.tp-o-passed td:first-child{border-left:4px solid #2e7d32}
.tp-overview tr.tp-o-skipped td:first-child{border-left:4px solid #f9a825}
.tp-overview .tp-story-cell{color:#b71c1c;max-width:420px;font-size:12px}
td.col-metric,td.col-data,td.col-node{font-size:13px}
</style>"""


class HtmlReport:
    """The pytest-html side of training_plugin (see the module docstring)."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.started = time.time()
        self.started_utc = dt.datetime.now(dt.timezone.utc)
        self.jobs: dict[str, dict[str, Any]] = {}  # nodeid -> digest (controller)
        self.records: dict[str, dict[str, Any]] = {}  # nodeid -> record (controller)

    # -- where the job runs -------------------------------------------------------------------
    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(self, item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
        """The job's extra and digest, on its call report (they travel with it)."""
        report = yield
        from training_plugin.items import TrainingItem
        from training_plugin.results import REPORT_ATTR as RECORD_ATTR

        if report.when != "call" or not isinstance(item, TrainingItem):
            return report
        record = getattr(report, RECORD_ATTR, None)
        if not isinstance(record, dict):
            record = item.record(call.excinfo)
        try:
            view = JobView(item, record, report.outcome, getattr(report, "start", call.start))
            trend = view.trend()
            content = view.html(trend)
            digest = view.digest(trend)
        except Exception as exc:  # the report never breaks a run; it says what went wrong
            content = (f'<div class="tp-job"><div class="tp-story">the report could not show '
                       f"this job: {esc(type(exc).__name__)}: {esc(exc)}</div></div>")
            digest = {"id": item.spec.id, "outcome": report.outcome}
        from pytest_html import extras

        report.extras = [*getattr(report, "extras", []), extras.html(content)]
        setattr(report, REPORT_ATTR, digest)
        return report

    # -- the controller -----------------------------------------------------------------------
    def pytest_training_job_report(self, config: pytest.Config, report: pytest.TestReport,
                                   record: dict[str, Any]) -> None:
        """Keep each job's record and digest for the session header."""
        self.records[report.nodeid] = dict(record)
        digest = getattr(report, REPORT_ATTR, None)
        if isinstance(digest, dict):
            self.jobs[report.nodeid] = digest

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
            record = getattr(report, "training_job", None) or {}
            where = f"; the whole log: {record['log']}" if record.get("log") else ""
            cut = f"[{len(lines) - LOG_TAIL_LINES} earlier lines not shown{esc(where)}]"
            data[i] = "\n".join([head, cut, *lines[-LOG_TAIL_LINES:]])

    @pytest.hookimpl(optionalhook=True)
    def pytest_html_results_summary(self, prefix: list[str], summary: list[str],
                                    postfix: list[str], session: pytest.Session) -> None:
        """The session header (when, commit, counts, time, where) and every job at a glance."""
        prefix.append(STYLE)
        from training_plugin.items import TrainingItem

        unfinished = [item for item in session.items
                      if isinstance(item, TrainingItem) and item.nodeid not in self.records]
        if not self.records and not unfinished:
            return
        prefix.append(self.session_html(unfinished))

    def session_html(self, unfinished: list[Any]) -> str:
        """The "Training session" box."""
        outcomes = Counter(r.get("outcome", "passed") for r in self.records.values())
        counts = []
        for name in ("passed", "failed", "error", "skipped"):
            if outcomes.get(name):
                counts.append(f'<span class="tp-count-{name}">{outcomes[name]} {name}</span>')
        if unfinished:
            counts.append(f'<span class="tp-count-failed">{len(unfinished)} did not run '
                          "or finish (the session stopped early): "
                          + esc(", ".join(item.spec.id for item in unfinished)) + "</span>")
        nodes = Counter(str(r.get("node") or "not started") for r in self.records.values()
                        if r.get("outcome") != "skipped" or r.get("node"))
        where = ", ".join(f"{esc(n)} ({c} job{'s' if c > 1 else ''})"
                          for n, c in sorted(nodes.items())) or "-"
        commit = git_commit(self.config)
        synthetic = sorted(d["id"] for d in self.jobs.values() if d.get("synthetic"))
        total = time.time() - self.started
        job_time = sum(float(r.get("duration_s") or 0) for r in self.records.values())
        rows = [
            ("started", esc(self.started_utc.strftime("%Y-%m-%d %H:%M:%S UTC"))),
            ("commit", f"<code>{esc(commit)}</code>" if commit else "unknown (not a git "
             "checkout)"),
            ("jobs", ", ".join(counts) + f" ({len(self.records) + len(unfinished)} in all)"),
            ("total time", f"{esc(fmt_duration(total))} (the jobs' own time added up: "
             f"{esc(fmt_duration(job_time))})"),
            ("ran on", where),
            ("command", "<code>" + esc(shlex.join(["pytest", *self.config.invocation_params.args]))
             + "</code>"),
        ]
        if synthetic:
            rows.append(("synthetic data", synthetic_badge() + " " + esc(", ".join(synthetic))))
        body = "".join(f"<tr><th>{k}</th><td>{v}</td></tr>" for k, v in rows)
        return (f'<div class="tp-session"><h3>Training session</h3><table class="tp-kv">{body}'
                f"</table>{self.overview_html()}</div>")

    def overview_html(self) -> str:
        """One line per job: outcome, primary metric, change, data, duration, node, trend."""
        lines = []
        for nodeid, record in sorted(self.records.items(), key=lambda kv: str(kv[1].get("id"))):
            digest = self.jobs.get(nodeid) or {}
            outcome = str(record.get("outcome", ""))
            primary = digest.get("primary") or {}
            spark = trend_svg([{"value": v, "time": "", "commit": "", "current":
                                i == len(digest.get("trend") or []) - 1 and outcome == "passed"}
                               for i, v in enumerate(digest.get("trend") or [])],
                              str(digest.get("trend_metric") or ""), bool(primary.get("lower")),
                              width=110, height=28, small=True)
            story = record.get("story") if outcome in ("failed", "error", "skipped") else ""
            lines.append(
                f'<tr class="tp-o-{esc(outcome)}"><td><a href="#{esc(nodeid)}">'
                f'{esc(record.get("id"))}</a></td><td>{esc(outcome)}</td>'
                f"<td>{primary_cell(digest) if digest else ''}</td><td>{data_cell(digest)}</td>"
                f'<td>{esc(fmt_duration(digest.get("duration_s") or record.get("duration_s")))}'
                "</td>"
                f'<td>{esc(record.get("node") or "")}</td><td>{spark}</td>'
                f'<td class="tp-story-cell">{esc(story or "")}</td></tr>')
        head = "".join(f"<th>{h}</th>" for h in ("job", "outcome", "primary metric", "data",
                                                  "duration", "node", "trend", ""))
        return (f'<table class="tp-overview"><thead><tr>{head}</tr></thead><tbody>'
                f'{"".join(lines)}</tbody></table>')
