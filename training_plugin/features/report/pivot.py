"""The configurations of a sweep as a pivot: configurations x metrics.

One table per session: a row per configuration (cells that differ only in the seed,
``training_plugin.aggregate``), its job, only the parameters that vary as columns, ``n``, and
per metric the mean ± sd; each seed's value shows on hover or focus (a list under the mean,
and the value's ``title``).  Per job, the best configuration by its primary metric's
direction is marked.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from training_plugin import aggregate
from training_plugin.features.report.format import (
    esc,
    fmt,
    lower_is_better,
    metric_order,
)


def varying(confs: list[aggregate.Configuration]) -> list[str]:
    """The parameters (other than the seed) with more than one value among ``confs``."""
    names: list[str] = []
    for conf in confs:
        names += [n for n in conf.params if n not in names]
    return [n for n in names if len({repr(c.params.get(n)) for c in confs}) > 1]


def best_of(confs: list[aggregate.Configuration]) -> set[str]:
    """Per job, the id of the configuration with the best mean of its primary metric."""
    best: dict[str, tuple[float, str]] = {}
    for conf in confs:
        name = conf.primary_metric
        stats = conf.metrics.get(name or "")
        if stats is None:
            continue
        score = -stats.mean if lower_is_better(name or "", conf.table.get("direction")) \
            else stats.mean
        if conf.job not in best or score > best[conf.job][0]:
            best[conf.job] = (score, conf.id)
    return {conf_id for _, conf_id in best.values()}


def _cell(stats: aggregate.Stats | None) -> str:
    """The mean ± sd; each seed's value in the ``title`` and in a list that shows while the
    pointer is over the cell or the cell has the focus (``style.css``)."""
    if stats is None:
        return "<td>-</td>"
    values = [f"seed {k}: {fmt(v)}" for k, v in stats.values.items()]
    spread = f" ± {fmt(stats.sd)}" if stats.sd is not None else ""
    listed = "".join(f"<li>{esc(v)}</li>" for v in values)
    return (f'<td class="tp-pivot-value" tabindex="0" title="{esc(", ".join(values))}">'
            f'{fmt(stats.mean)}{esc(spread)}<ul class="tp-seeds">{listed}</ul></td>')


def pivot_html(records: Iterable[Any]) -> str:
    """The pivot of the configurations of ``records`` ("" when there are none)."""
    confs = aggregate.configurations(records)
    if not confs:
        return ""
    params = varying(confs)
    names: list[str] = []
    for conf in confs:
        names += [n for n in conf.metrics if n not in names]
    primary = next((c.primary_metric for c in confs if c.primary_metric), None)
    names = metric_order(names, primary)
    best = best_of(confs)
    head = "".join(f"<th>{esc(h)}</th>" for h in ["configuration", "job", *params, "n",
                                                   *names])
    rows = []
    for conf in confs:
        mark = ' class="tp-best"' if conf.id in best else ""
        star = " ★ best" if conf.id in best else ""
        failed = (f' <span class="tp-failed-seeds">failed seeds: '
                  f'{esc(", ".join(conf.failed_seeds))}</span>' if conf.failed_seeds else "")
        cells = [f"<td>{esc(conf.id)}{star}{failed}</td>", f"<td>{esc(conf.job)}</td>",
                 *(f"<td>{esc(conf.params.get(p, '-'))}</td>" for p in params),
                 f"<td>{conf.n}/{len(conf.seeds)}</td>",
                 *(_cell(conf.metrics.get(n)) for n in names)]
        rows.append(f"<tr{mark}>{''.join(cells)}</tr>")
    return (f'<div class="tp-pivot"><h2>Configurations ({len(confs)})</h2>'
            f'<table class="tp-pivot-table"><thead><tr>{head}</tr></thead>'
            f'<tbody>{"".join(rows)}</tbody></table>'
            "<p>mean ± sd over the seeds; hover a value (or tab to it) for each seed's</p></div>")
