"""Baselines of repeats: ``--save-baseline`` keeps each configuration's n, mean, sd and seeds;
``--compare`` against such a baseline compares means and counts a drop as a regression only
when it is beyond the tolerance **and** significant by a one-sided Welch t-test at alpha 0.05
(when both sides have at least 2 seeds; with fewer, the tolerance alone decides).  A drop
beyond the tolerance that is not significant is a warning in the summary, never a failure.

Each compared configuration is a testcase of its own, ``<script>::<configuration>::baseline``
(``training_plugin.verdict``); while the baseline has a cell's configuration, the cell itself
is compared for the notes only, never failed: one seed says nothing against the noise.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from training_plugin import aggregate, store
from training_plugin.metrics import describe_tolerance, direction, tolerance_amount
from training_plugin.pytest_compat import is_controller
from training_plugin.verdict import log_verdict

NAME = "training_plugin.baseline.repeats"
#: The key of the configurations in a baseline file.
SECTION = "configurations"
#: A change this small is float noise, never a regression.
EPSILON = 1e-9


def covered(reference: dict[str, Any], spec: Any) -> bool:
    """Whether the reference has the configuration of this cell (then the configuration's
    testcase decides, not the cell)."""
    key = aggregate.configuration_of(spec)
    return key is not None and key[0] in (reference.get(SECTION) or {})


def check_section(data: dict[str, Any]) -> str | None:
    """Why a baseline file's configurations cannot be used, or None."""
    section = data.get(SECTION, {})
    if not isinstance(section, dict):
        return f"{SECTION!r} is not an object"
    for name, entry in section.items():
        problem = aggregate.entry_problem(entry)
        if problem:
            return f"the configuration {name!r} {problem}"
    return None


class Repeats:
    """The configurations of a session against a baseline's (controller)."""

    def __init__(self, config: pytest.Config, baseline: Any) -> None:
        self.config = config
        self.baseline = baseline  #: the feature's ``Baseline`` (reference, tolerances)
        self.records: dict[str, Any] = {}
        self.warnings: list[str] = []
        self.failures: list[str] = []

    def pytest_unconfigure(self, config: pytest.Config) -> None:
        """Unregister."""
        config.pluginmanager.unregister(self, NAME)

    def pytest_training_job_report(self, config: pytest.Config, report: Any, record: Any) -> None:
        """Keep each cell's final record."""
        if record.cell:
            self.records[record.nodeid] = record

    def configurations(self) -> list[aggregate.Configuration]:
        """This session's configurations, with the cells of theirs that did not run in it from
        their last run in the history (``--lf``, ``-k``)."""
        cells = [self.records[k] for k in sorted(self.records)]
        if aggregate.missing_cells(cells):
            last = {k: v[-1] for k, v in store.entries_by_job(self.config).items()}
            cells = aggregate.with_kept(cells, last)
        return aggregate.configurations(cells)

    def saved(self) -> dict[str, Any]:
        """``--save-baseline``: this session's configurations with figures, keyed by id."""
        return {c.id: aggregate.baseline_entry(c) for c in self.configurations() if c.metrics}

    def merged(self, data: Any) -> dict[str, Any]:
        """A baseline file's configurations with this session's in place (others kept)."""
        old = data.get(SECTION) if isinstance(data, dict) else None
        return {**(old if isinstance(old, dict) else {}), **self.saved()}

    @pytest.hookimpl(wrapper=True)
    def pytest_runtestloop(self, session: pytest.Session) -> Any:
        """Once the cells have run: a testcase per configuration the baseline has."""
        result = yield
        reference = self.baseline.reference
        section = reference.get(SECTION) or {}
        if not (is_controller(self.config) and section and reference.get("failing")) \
                or session.shouldstop:
            return result
        confs = [c for c in self.configurations() if c.id in section]
        session.testscollected += len(confs)  # the terminal's progress counts them
        for conf in confs:
            stories, props = self.compare(conf, section[conf.id], reference)
            self.failures += stories
            log_verdict(self.config, f"{conf.nodeid}::baseline", conf.script,
                        failed=bool(stories), story="\n".join(stories) or None,
                        properties=props)
        return result

    def compare(self, conf: aggregate.Configuration, entry: dict[str, Any],
                reference: dict[str, Any]) -> tuple[list[str], list[tuple[str, object]]]:
        """The regression stories and JUnit properties of one configuration."""
        where = str(reference.get("source"))
        if reference.get("commit"):
            where += f", commit {str(reference['commit'])[:7]}"
        spec = SimpleNamespace(id=conf.job, config=SimpleNamespace(
            tolerance=conf.table.get("tolerance"), direction=conf.table.get("direction")))
        stories: list[str] = []
        props: list[tuple[str, object]] = []
        for key, saved in sorted(entry["metrics"].items()):
            way = direction(key, conf.table.get("direction"))
            now = conf.metrics.get(key)
            if way is None or now is None:
                continue
            values = [float(v) for v in saved["values"].values()]
            tol, tol_from = self.baseline.tolerance(spec, key)
            ref_mean = sum(values) / len(values)
            c = aggregate.compare(key, now, values, way, tolerance_amount(tol, ref_mean) + EPSILON)
            story = aggregate.comparison_story(
                conf, c, where, f"{describe_tolerance(tol, ref_mean)} ({tol_from})")
            props += [(f"baseline.{key}.mean", round(c.ref_mean, 6)),
                      (f"delta.{key}.mean", round(c.mean - c.ref_mean, 10))]
            if c.p is not None:
                props.append((f"welch.{key}.p", round(c.p, 6)))
            if c.regressed:
                stories.append(story)
            elif c.noise:
                self.warnings.append(f"{story}; not significant at alpha "
                                     f"{aggregate.ALPHA}: not a regression")
                props.append((f"warning.{key}", "drop beyond tolerance, not significant"))
        return stories, props

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        """Each regression of a mean, and each drop that is not significant, one line."""
        for story in self.failures:
            terminalreporter.write_line(f"training: {story}", red=True)
        for warning in self.warnings:
            terminalreporter.write_line(f"training: warning: {warning}", yellow=True)
