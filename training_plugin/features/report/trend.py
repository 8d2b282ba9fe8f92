"""A job's trend: its primary metric over the last runs in ``history.jsonl`` and this one, as
an inline SVG line plot."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from training_plugin.features.report.format import esc, fmt, number

#: Earlier runs shown in a job's trend plot (the current run comes on top).
TREND_RUNS = 20


def trend_points(history: list[dict[str, Any]], metric: str | None,
                 current: float | None) -> list[dict[str, Any]]:
    """The trend of ``metric``: the last earlier runs that report it, then this run."""
    if not metric:
        return []
    points = []
    for entry in history:
        metrics = entry.get("metrics")
        value = number(metrics.get(metric)) if isinstance(metrics, Mapping) else None
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
