"""Configurations and their aggregates (pure logic; scipy for the t quantile).

The cells of a job that differ only in the seed form one *configuration*: ``brain_mri[lr_0.001]``
(``brain_mri`` itself when the seed is all that varies).  Per configuration and metric: ``n``,
the mean, the sd (ddof=1), min, max and a t-based 95% interval of the mean; and which seeds
failed.  The figures come from the cells that ended with metrics (passed, or skipped with the
metrics of their last passing run); a cell that failed, errored or never ran is a failed seed.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

#: The parameter that tells repeats apart.
SEED = "seed"
#: The confidence level of the interval of the mean.
LEVEL = 0.95
#: Outcomes whose metrics count (a skipped cell carries its last passing run's metrics).
COUNTED = ("passed", "skipped")


def _is_seed(name: str) -> bool:
    return name.lstrip("-").replace("_", "-") == SEED


@dataclass(frozen=True)
class Stats:
    """One metric of one configuration over its seeds."""

    n: int
    mean: float
    sd: float | None  #: ddof=1; None for n < 2
    min: float
    max: float
    ci95: tuple[float, float] | None  #: t-based interval of the mean; None for n < 2
    values: dict[str, float] = field(default_factory=dict)  #: seed (as text) -> value

    def to_json(self) -> dict[str, Any]:
        """JSON-able form (``summary.json`` ``configurations``)."""
        return {"n": self.n, "mean": self.mean, "sd": self.sd, "min": self.min,
                "max": self.max, "ci95": list(self.ci95) if self.ci95 else None,
                "values": dict(self.values)}


def t_quantile(level: float, dof: int) -> float:
    """The two-sided ``level`` quantile of Student's t with ``dof`` degrees of freedom."""
    from scipy import stats  # heavy: imported only when a configuration has two seeds

    return float(stats.t.ppf(0.5 + level / 2, dof))


def stats_of(values: Sequence[float], seeds: Sequence[str] | None = None) -> Stats:
    """n, mean, sd (ddof=1), min, max and the 95% interval of the mean of ``values``."""
    if not values:
        raise ValueError("no values")
    n = len(values)
    mean = statistics.fmean(values)
    sd = statistics.stdev(values) if n > 1 else None
    ci = None
    if sd is not None:
        half = t_quantile(LEVEL, n - 1) * sd / math.sqrt(n)
        ci = (mean - half, mean + half)
    keys = list(seeds) if seeds is not None else [str(i) for i in range(n)]
    return Stats(n, mean, sd, min(values), max(values), ci, dict(zip(keys, values)))


@dataclass
class Configuration:
    """The cells of one job that differ only in the seed."""

    id: str  #: ``<job>[<params without seed>]``, or the job id
    job: str
    nodeid: str  #: ``<script>::<id>``, the node id its own testcase gets
    script: str
    params: dict[str, Any]  #: the cell parameters other than the seed
    cells: list[str] = field(default_factory=list)  #: the cells' node ids, in order
    seeds: list[str] = field(default_factory=list)  #: every seed, as text
    failed_seeds: list[str] = field(default_factory=list)
    primary_metric: str | None = None
    metrics: dict[str, Stats] = field(default_factory=dict)
    table: dict[str, Any] = field(default_factory=dict)  #: the job's job-table entry
    #: cells whose figures come from an earlier session (``--lf``), by node id
    kept: list[str] = field(default_factory=list)

    @property
    def n(self) -> int:
        """Seeds with figures (the primary metric's count, else the largest)."""
        if self.primary_metric in self.metrics:
            return self.metrics[self.primary_metric].n
        return max((s.n for s in self.metrics.values()), default=0)

    def to_json(self) -> dict[str, Any]:
        """JSON-able form (``summary.json`` ``configurations``)."""
        return {"id": self.id, "job": self.job, "nodeid": self.nodeid, "params": self.params,
                "cells": list(self.cells), "seeds": list(self.seeds),
                "failed_seeds": list(self.failed_seeds), "kept": list(self.kept),
                "primary_metric": self.primary_metric,
                "metrics": {k: v.to_json() for k, v in self.metrics.items()}}

    def properties(self) -> list[tuple[str, object]]:
        """JUnit properties: ``n``, ``<metric>.mean/.sd/.ci95_low/.ci95_high``, failed seeds."""
        props: list[tuple[str, object]] = [("configuration", self.id), ("n", self.n)]
        for name, s in self.metrics.items():
            props.append((f"{name}.mean", round(s.mean, 6)))
            if s.sd is not None and s.ci95 is not None:
                props += [(f"{name}.sd", round(s.sd, 6)), (f"{name}.ci95_low", round(s.ci95[0], 6)),
                          (f"{name}.ci95_high", round(s.ci95[1], 6))]
        if self.failed_seeds:
            props.append(("failed_seeds", ",".join(self.failed_seeds)))
        return props


def _cell_text(params: dict[str, Any]) -> str:
    return "-".join(f"{k}_{_text(v)}" for k, v in params.items())


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return repr(value) if isinstance(value, float) else str(value)


def _without(cell: str, part: str, params: dict[str, Any]) -> str:
    """The cell's name without its seed part (the cell's own spelling of the other values)."""
    if cell.startswith(part + "-"):
        return cell[len(part) + 1:]
    if cell.endswith("-" + part):
        return cell[:-len(part) - 1]
    if f"-{part}-" in cell:
        return cell.replace(f"-{part}-", "-", 1)
    return _cell_text(params)


def configuration_of(record: Any) -> tuple[str, dict[str, Any], str] | None:
    """(configuration id, its parameters, the seed as text) of a cell whose parameters hold
    a seed; None for a plain job or a cell without a seed."""
    params = dict(getattr(record, "params", None) or {})
    if not getattr(record, "cell", None):
        return None
    seeds = [k for k in params if _is_seed(k)]
    if not seeds:
        return None
    seed = params.pop(seeds[0])
    job = record.job or record.id
    if params:
        return f"{job}[{_without(record.cell, f'{seeds[0]}_{_text(seed)}', params)}]", \
            params, _text(seed)
    return job, params, _text(seed)


def configurations(records: Iterable[Any]) -> list[Configuration]:
    """The configurations of ``records`` (``JobRecord``s with their final ``outcome``), in
    the order their first cell appears; only those with at least two seeds."""
    found: dict[str, Configuration] = {}
    values: dict[str, dict[str, list[tuple[str, float]]]] = {}
    for record in records:
        key = configuration_of(record)
        if key is None:
            continue
        config_id, params, seed = key
        conf = found.get(config_id)
        if conf is None:
            conf = found[config_id] = Configuration(
                id=config_id, job=record.job or record.id,
                nodeid=f"{record.script}::{config_id}", script=record.script, params=params,
                table=dict(record.table or {}))
            values[config_id] = {}
        conf.cells.append(record.nodeid)
        conf.seeds.append(seed)
        if getattr(record, "kept", False):
            conf.kept.append(record.nodeid)
        if record.outcome not in COUNTED or not record.metrics:
            conf.failed_seeds.append(seed)
            continue
        conf.primary_metric = conf.primary_metric or record.primary_metric
        for name, value in record.metrics.items():
            values[config_id].setdefault(name, []).append((seed, float(value)))
    out = []
    for config_id, conf in found.items():
        if len(conf.seeds) < 2:
            continue
        for name, pairs in values[config_id].items():
            conf.metrics[name] = stats_of([v for _, v in pairs], [s for s, _ in pairs])
        out.append(conf)
    return out


def describe(conf: Configuration, metric: str | None = None) -> str:
    """``roc_auc 0.8123 ± 0.0100 sd, 95% CI [0.7875, 0.8371], n=3``."""
    name = metric or conf.primary_metric
    if name is None or name not in conf.metrics:
        return "no figures"
    s = conf.metrics[name]
    text = f"{name} {s.mean:.4f}"
    if s.sd is not None and s.ci95 is not None:
        text += f" ± {s.sd:.4f} sd, 95% CI [{s.ci95[0]:.4f}, {s.ci95[1]:.4f}]"
    return text + f", n={s.n}"


# -- against a baseline with repeats ---------------------------------------------------------
#: The significance level of the one-sided Welch test.
ALPHA = 0.05


def baseline_entry(conf: Configuration) -> dict[str, Any]:
    """What ``--save-baseline`` keeps of a configuration: n, mean, sd and each seed's value
    per metric."""
    return {"nodeid": conf.nodeid, "params": dict(conf.params), "primary_metric":
            conf.primary_metric, "metrics": {
                name: {"n": s.n, "mean": s.mean, "sd": s.sd, "values": dict(s.values)}
                for name, s in conf.metrics.items()}}


def entry_problem(entry: Any) -> str | None:
    """Why a saved configuration cannot be compared with, or None."""
    if not isinstance(entry, dict) or not isinstance(entry.get("metrics"), dict):
        return "is not an object with 'metrics'"
    for name, m in entry["metrics"].items():
        values = m.get("values") if isinstance(m, dict) else None
        if not isinstance(values, dict) or not values or not all(
                isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
                for v in values.values()):
            return f"metric {name!r} has no 'values' (seed -> finite number)"
    return None


@dataclass(frozen=True)
class Comparison:
    """A configuration's mean against the baseline's for one metric."""

    key: str
    mean: float
    n: int
    ref_mean: float
    ref_n: int
    drop: float  #: how far it moved the wrong way (> 0: worse)
    beyond: bool  #: the drop exceeds the tolerance
    t: float | None  #: Welch's t (now - baseline), when both sides have >= 2 seeds
    p: float | None  #: its one-sided p value

    @property
    def tested(self) -> bool:
        """Whether the Welch test applied (both sides have at least 2 seeds)."""
        return self.p is not None

    @property
    def significant(self) -> bool:
        """Whether the drop is unlikely to be seed noise (p < ALPHA)."""
        return self.p is not None and self.p < ALPHA

    @property
    def regressed(self) -> bool:
        """Beyond the tolerance and (where testable) significant."""
        return self.beyond and (self.significant or not self.tested)

    @property
    def noise(self) -> bool:
        """Beyond the tolerance but not significant: a warning, never a failure."""
        return self.beyond and self.tested and not self.significant


def welch(now: Sequence[float], ref: Sequence[float], way: str) -> tuple[float | None,
                                                                             float | None]:
    """Welch's t of ``now`` against ``ref`` and its one-sided p value for "worse" (lower
    when higher is better); (None, None) when a side has fewer than 2 values or no spread."""
    if len(now) < 2 or len(ref) < 2:
        return None, None
    if statistics.pvariance(now) == 0 and statistics.pvariance(ref) == 0:
        return None, None
    from scipy import stats  # heavy: imported only for a comparison of repeats

    result = stats.ttest_ind(list(now), list(ref), equal_var=False,
                             alternative="less" if way == "higher" else "greater")
    return float(result.statistic), float(result.pvalue)


def compare(key: str, now: Stats, ref_values: Sequence[float], way: str,
            allowed: float) -> Comparison:
    """``now`` against the baseline's seeds ``ref_values`` for a metric whose better
    ``way`` is "higher" or "lower"; ``allowed``: the tolerance in the metric's units."""
    ref_mean = statistics.fmean(ref_values)
    drop = (ref_mean - now.mean) if way == "higher" else (now.mean - ref_mean)
    t, p = welch(list(now.values.values()), list(ref_values), way)
    return Comparison(key, now.mean, now.n, ref_mean, len(ref_values), drop, drop > allowed,
                      t, p)


def comparison_story(conf: Configuration, c: Comparison, where: str, tolerance: str) -> str:
    """``job 'diabetes': roc_auc mean 0.871 over 5 seeds is 0.030 below the baseline's 0.901
    over 5 seeds (Welch t = -3.1, p = 0.007; training-baseline.json, commit abc1234);
    tolerance 0.02``."""
    who = f"job {conf.id!r}" if conf.id == conf.job else f"configuration {conf.id!r}"
    side = "below" if c.mean < c.ref_mean else "above"
    test = f"Welch t = {c.t:.1f}, p = {c.p:.2g}; " if c.tested else (
        "too few seeds for a Welch test; " if min(c.n, c.ref_n) < 2 else "")
    return (f"{who}: {c.key} mean {c.mean:.3f} over {c.n} seeds is {abs(c.mean - c.ref_mean):.3f}"
            f" {side} the baseline's {c.ref_mean:.3f} over {c.ref_n} seeds ({test}{where}); "
            f"tolerance {tolerance}")


# -- cells kept from an earlier session (--lf, -k) -------------------------------------------
def missing_cells(records: Iterable[Any]) -> dict[str, tuple[Any, Any]]:
    """The cells of this session's configurations that did not run in it: cell id ->
    (a record of a cell that ran, to copy, its seed).  A cell names its configuration's cells
    in ``extra["siblings"]`` (cell id -> seed)."""
    records = list(records)
    seen = {r.id for r in records}
    missing: dict[str, tuple[Any, Any]] = {}
    for record in records:
        siblings = (record.extra or {}).get("siblings") if record.cell else None
        if isinstance(siblings, dict):
            for cell_id, seed in siblings.items():
                if cell_id not in seen and cell_id not in missing:
                    missing[cell_id] = (record, seed)
    return missing


def kept_record(template: Any, cell_id: str, seed: Any, entry: dict[str, Any]) -> Any:
    """A cell's record from its last history line, in the shape of ``template`` (a cell of
    its configuration), marked ``kept``."""
    seed_name = next((k for k in template.params if _is_seed(k)), SEED)
    cell = cell_id[cell_id.index("[") + 1:-1] if "[" in cell_id else cell_id
    metrics = entry.get("metrics")
    return SimpleNamespace(
        id=cell_id, nodeid=entry.get("nodeid") or f"{template.script}::{cell_id}",
        script=template.script, job=template.job, cell=cell,
        params={**template.params, seed_name: seed}, outcome=entry.get("outcome"),
        metrics=metrics if isinstance(metrics, dict) else {},
        primary_metric=entry.get("primary_metric"), table=template.table, kept=True)


def with_kept(records: Iterable[Any], last: dict[str, dict[str, Any]]) -> list[Any]:
    """``records`` and, for each cell of their configurations that did not run, its record
    from ``last`` (cell id -> its last history line), where it has one."""
    records = list(records)
    kept = [kept_record(template, cell_id, seed, last[cell_id])
            for cell_id, (template, seed) in missing_cells(records).items() if cell_id in last]
    return sorted(records + kept, key=lambda r: r.nodeid)
