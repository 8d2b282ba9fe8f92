"""What a session says about its jobs before and after running them: the header line, the
``--collect-only`` listing (each job's exact command, flags, resources, notes, its last known
cost, and the session's) and the line after a selection that matched no job."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

import pytest

from training_plugin import aggregate, provenance, store
from training_plugin.collect.items import TrainingItem, executor_of
from training_plugin.collect.pipeline import state_of
from training_plugin.executors.base import cost_cell, format_bytes, format_duration

if TYPE_CHECKING:  # pragma: no cover
    from training_plugin.collect.pipeline import CollectState

#: The line after a session that selected no job (-k / -m matched nothing).
MSG_NO_MATCH = "training: no job matched {what}; job ids: {ids}"
MSG_NO_SCRIPTS = "training: no training scripts ({glob}) found under {where}"
#: ``--collect-only``: the matching files that are not collected.
MSG_NOT_SCRIPTS = ("not scripts (no entry point): {count} {files}, e.g. {examples} "
                   "(training_require_entry_point = false collects them)")
#: ``--collect-only``: the count of cells.
MSG_CELLS = "sweep: {cells} cell{s} of {jobs} job{js} ({per_job})"
#: ``--collect-only``: the configurations (cells that differ only in the seed), each a testcase.
MSG_CONFIGURATIONS = ("configurations: {count}, each a testcase of its own after its cells: "
                      "{names}")
#: How many configurations that line names.
CONFIGURATION_EXAMPLES = 5
#: How many not-scripts the line names.
NOT_SCRIPT_EXAMPLES = 3
#: ``--collect-only``: a job's cost in its last passing run (history.jsonl).
MSG_COST = "cost: {cost} (its last passing run, {when})"
#: ``--collect-only``: the selected jobs' cost, from their last passing runs.
MSG_COST_TOTAL = ("cost: about {cpu} CPU, peak {peak} (the largest job's) for {known} of "
                  "{total} job{s}, from their last passing runs in {history}")
#: ... and the jobs with no known cost.
MSG_COST_UNKNOWN = "; cost unknown for {count} (no passing run with a cost): {names}"


def last_cost(config: pytest.Config, job_id: str) -> tuple[dict[str, Any], str] | None:
    """A job's cost in its last passing run and when that ran, from the history as the
    session read it at start (``store.last_passing``: read once); None when unknown."""
    entry = store.last_passing(config).get(job_id)
    cost = entry.get("cost") if entry else None
    if not isinstance(cost, dict) or not cost_cell(cost):
        return None
    return cost, provenance.when(entry)


def _examples(names: list[str], limit: int) -> str:
    """The first ``limit`` of ``names``, comma-separated, then ", ..." when there are more."""
    return ", ".join(names[:limit]) + (", ..." if len(names) > limit else "")


def cost_total(config: pytest.Config, ids: list[str],
               known: dict[str, dict[str, Any]]) -> list[str]:
    """The session's cost: CPU seconds added up over the jobs, the largest job's peak (jobs
    that run at once under ``-n`` or ``--ray`` add up theirs); none when no job's is known.
    ``known``: the cost of each job of ``ids`` that has one (``last_cost``)."""
    if not known:
        return []
    cpu = sum(float(c.get("cpu_s") or 0) for c in known.values())
    peak = max(float(c.get("peak_bytes") or 0) for c in known.values())
    line = MSG_COST_TOTAL.format(
        cpu=format_duration(cpu), peak=format_bytes(peak) if peak else "unknown",
        known=len(known), total=len(ids), s="" if len(ids) == 1 else "s",
        history=store.history_path(config))
    unknown = [job for job in ids if job not in known]
    if unknown:
        line += MSG_COST_UNKNOWN.format(count=len(unknown),
                                        names=_examples(unknown, NOT_SCRIPT_EXAMPLES))
    return [line]


def not_scripts(state: CollectState) -> list[str]:
    """The one line on matching files without an entry point (none when there are none)."""
    names = state.not_scripts
    if not names:
        return []
    files = "file" if len(names) == 1 else "files"
    return [MSG_NOT_SCRIPTS.format(count=len(names), files=files,
                                   examples=_examples(names, NOT_SCRIPT_EXAMPLES))]


def header(state: CollectState) -> list[str]:
    """How many jobs, from where, output to where."""
    specs = [spec for group in state.specs.values() for spec in group]
    count = len({spec.job for spec in specs})
    cells = sum(1 for spec in specs if spec.cell)
    where = ", ".join(state.roots) or "."
    jobs = f"{count} jobs ({cells} cells)" if cells else f"{count} jobs"
    return [f"training: {jobs} from {where}; output: {state.settings.output_dir}"]


def jobs(config: pytest.Config, items: list[pytest.Item]) -> list[str]:
    """``--collect-only``: per job its command, flags, resources, placement, notes and last
    known cost; then the cells and the session's cost."""
    lines: list[str] = []
    ids: list[str] = []
    costs: dict[str, dict[str, Any]] = {}  # job -> its last known cost
    executor = None
    for item in items:
        if not isinstance(item, TrainingItem):
            continue
        spec = item.spec
        cluster = spec.settings.cluster
        if cluster and executor is None:
            executor = executor_of(config)
        lines.append(f"job {spec.id}: {spec.command}")
        if spec.qualified:
            lines.append(f"    id: qualified by folder (another script is also named "
                         f"{os.path.basename(spec.relpath)})")
        lines.append(f"    flags: {spec.parser.describe()}")
        if cluster or spec.resources != {"cpus": 1}:
            asked = ", ".join(f"{k}={v}" for k, v in spec.resources.items())
            lines.append(f"    resources: {asked}")
        if executor is not None:
            lines.append(f"    runs on: {executor.placement(item.job_run())}")
        for note in (*spec.sweep_notes, *spec.notes):
            lines.append(f"    note: {note}")
        if spec.missing_required:
            lines.append(f"    WILL FAIL: {spec.missing_message()}")
        cost = last_cost(config, spec.id)
        if cost is not None:
            costs[spec.id] = cost[0]
            lines.append(f"    {MSG_COST.format(cost=cost_cell(cost[0]), when=cost[1])}")
        ids.append(spec.id)
    lines += cell_count(items)
    lines += cost_total(config, ids, costs)
    state = state_of(config)
    if state is not None and lines:  # without jobs, ``no_match`` says it
        lines += not_scripts(state)
    return lines


def cell_count(items: list[pytest.Item]) -> list[str]:
    """``--collect-only``: how many cells of how many swept jobs (none without a sweep)."""
    cells: dict[str, int] = {}
    seeds: dict[str, int] = {}  # configuration -> its cells
    for item in items:
        if isinstance(item, TrainingItem) and item.spec.cell:
            cells[item.spec.job] = cells.get(item.spec.job, 0) + 1
            conf = aggregate.configuration_of(item.spec)
            if conf is not None:
                seeds[conf[0]] = seeds.get(conf[0], 0) + 1
    if not cells:
        return []
    per_job = ", ".join(f"{job} {n}" for job, n in cells.items())
    total = sum(cells.values())
    lines = [MSG_CELLS.format(cells=total, s="" if total == 1 else "s", jobs=len(cells),
                              js="" if len(cells) == 1 else "s", per_job=per_job)]
    confs = [f"{c} ({n} seeds)" for c, n in seeds.items() if n > 1]
    if confs:
        lines.append(MSG_CONFIGURATIONS.format(
            count=len(confs), names=_examples(confs, CONFIGURATION_EXAMPLES)))
    return lines


def no_match(config: pytest.Config, state: CollectState, terminalreporter: Any) -> None:
    """When nothing was selected, say which job ids exist (or that none were found)."""
    ids = state.ids
    if not ids:
        where = ", ".join(state.roots) or "."
        terminalreporter.write_line(
            MSG_NO_SCRIPTS.format(glob=config.getini("training_glob"), where=where)
        )
        for line in not_scripts(state):
            terminalreporter.write_line(f"training: {line}")
        return
    selection = []
    if config.getoption("keyword"):
        selection.append(f"-k {config.getoption('keyword')!r}")
    if config.getoption("markexpr"):
        selection.append(f"-m {config.getoption('markexpr')!r}")
    what = " ".join(selection) or "the selection"
    terminalreporter.write_line(MSG_NO_MATCH.format(what=what, ids=", ".join(ids)))
