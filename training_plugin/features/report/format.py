"""Small HTML formatters of the report: escaping, numbers, durations, badges, changes, a
job's cost (``cost_cell``, the summary's cell) and its attempts."""

from __future__ import annotations

import html
import math
from collections.abc import Iterable, Mapping
from typing import Any

from training_plugin import metrics
from training_plugin.collect.attempts import attempts_phrase
from training_plugin.executors.base import cost_cell, format_bytes

#: The order in which known metrics are listed (others follow alphabetically).
METRIC_ORDER = ("roc_auc", "accuracy", "balanced_accuracy", "f1_macro", "sensitivity",
                "specificity", "ppv", "npv", "brier", "calibration_slope",
                "calibration_intercept", "rmse", "mae", "r2")


def esc(value: Any) -> str:
    """HTML-escaped text of ``value``."""
    return html.escape(str(value), quote=True)


def number(value: Any) -> float | None:
    """``value`` as a float when it is a finite int or float (not a bool), else None."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def fmt(value: Any) -> str:
    """A metric value for people: 4 significant digits, thousands without decimals."""
    value_ = number(value)
    if value_ is None:
        return "-" if value is None else esc(value)
    if abs(value_) >= 10_000:
        return f"{value_:,.0f}"
    return f"{value_:.4g}" if abs(value_) >= 1e-4 or value_ == 0 else f"{value_:.2e}"


def fmt_spread(value: Any) -> str:
    """A standard deviation: 2 significant digits."""
    value_ = number(value)
    return "-" if value_ is None else f"{value_:.2g}"


def fmt_delta(value: Any) -> str:
    """A signed change."""
    value_ = number(value)
    if value_ is None:
        return "-"
    return "±0" if value_ == 0 else f"{value_:+.3g}"


def fmt_duration(seconds: Any) -> str:
    """``42.0 s``, ``3 min 05 s``, ``1 h 02 min``."""
    value = number(seconds)
    if value is None:
        return "-"
    if value < 60:
        return f"{value:.1f} s"
    minutes, secs = divmod(int(round(value)), 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def lower_is_better(name: str, overrides: Mapping[str, str] | None = None) -> bool:
    """Whether a smaller value of metric ``name`` is better (``overrides``: the job table's
    ``direction``), by the rule the gates use (``training_plugin.metrics.direction``)."""
    return metrics.direction(name, overrides) == "lower"


def metric_order(names: Iterable[str], primary: str | None = None) -> list[str]:
    """Metric names: the primary first, then the known ones in their order, then the rest."""
    names = list(dict.fromkeys(names))
    known = {name: i for i, name in enumerate(METRIC_ORDER)}
    names.sort(key=lambda n: (n != primary, known.get(n, len(known)), n))
    return names


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
    if not delta or number(delta.get("delta")) is None:
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


def attempts_text(attempts: list[dict[str, Any]] | None) -> str:
    """"passed on attempt 2 (attempt 1: killed by SIGKILL ...)" from a record's ``attempts``
    (``collect.attempts.attempts_phrase``); "" for a job that took one attempt."""
    return attempts_phrase([a for a in attempts or [] if isinstance(a, Mapping)]) or ""


def cost_html(cost: Mapping[str, Any] | None) -> str:
    """A job's cost, compact ("cpu 2m10s, peak 1.2 GiB", the summary's cell), with the wall
    time, how the peak was measured and the memory limit on hover; "" when not measured."""
    text = cost_cell(dict(cost)) if isinstance(cost, Mapping) else ""
    if not text:
        return ""
    facts = [f"wall {fmt_duration(cost.get('wall_s'))}"]
    if cost.get("peak_method"):
        facts.append(f"peak: {cost['peak_method']}")
    if cost.get("memory_limit"):
        facts.append(f"limit {format_bytes(cost['memory_limit'])} ({cost.get('limit_method')})")
    return f'<span class="tp-cost" title="{esc("; ".join(facts))}">{esc(text)}</span>'
