"""Quality gates: a job passes only when it exits 0 and its metrics are within bounds.

The job table's ``min = { roc_auc = 0.88 }`` / ``max = { rmse = 0.35 }`` and the ini defaults
``training_min`` / ``training_max`` (one ``metric = bound`` a line, for every job; the job table
wins per metric).  A value beyond its bound, a gated metric the job did not write, or no
metrics.json at all fails the item with a one-line story naming the job, the metric, the
value, the bound and where the bound is written.  Metric keys may be dotted
(``training_plugin.metrics``).
"""

from __future__ import annotations

from typing import Any

import pytest

from training_plugin import aggregate, store
from training_plugin.metrics import bound_lines, fmt, lookup
from training_plugin.pytest_compat import is_controller
from training_plugin.verdict import log_verdict

NAME = "training_plugin.gates"
MEAN_NAME = "training_plugin.gates.configurations"


def add_ini(parser: pytest.Parser) -> None:
    """``training_min``, ``training_max``."""
    parser.addini("training_min", "quality gate for every job: metric = lowest allowed value, "
                  "one a line (the job table's min wins per metric)", type="linelist", default=[])
    parser.addini("training_max", "quality gate for every job: metric = highest allowed "
                  "value, one a line (the job table's max wins per metric)", type="linelist",
                  default=[])


def pytest_addoption(parser: pytest.Parser) -> None:
    """No options; the ini keys."""
    add_ini(parser)


def document_of(metrics: Any) -> tuple[dict[str, Any] | None, str | None]:
    """The job's whole metrics.json as the item read it (``JobMetrics.document``), or
    (None, why not)."""
    if metrics is None:
        return None, "the job wrote no metrics.json"
    if metrics.document is None:
        return None, metrics.error or "metrics.json cannot be read"
    return metrics.document, None


class Gates:
    """Checks each finished job's metrics against its bounds (where the job ran)."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.error: pytest.UsageError | None = None
        try:
            self.ini_min = bound_lines(config.getini("training_min"), "training_min")
            self.ini_max = bound_lines(config.getini("training_max"), "training_max")
        except pytest.UsageError as exc:
            self.error = exc
            self.ini_min = self.ini_max = {}

    @pytest.hookimpl(tryfirst=True)
    def pytest_sessionstart(self, session: pytest.Session) -> None:
        """A bad ini value is a usage error before anything runs."""
        if self.error is not None and is_controller(self.config):
            raise self.error

    def pytest_unconfigure(self, config: pytest.Config) -> None:
        """Unregister."""
        config.pluginmanager.unregister(self, NAME)

    def _ini_name(self) -> str:
        inipath = self.config.inipath
        return inipath.name if inipath else "ini"

    def gates_of(self, spec: Any) -> list[tuple[str, str, float, str]]:
        """(min|max, key, bound, where it is written) for a job."""
        table = spec.config
        pyproject = f"pyproject.toml [tool.training_plugin.jobs.{spec.job}]"
        found: list[tuple[str, str, float, str]] = []
        for kind, ini_bounds in (("min", self.ini_min), ("max", self.ini_max)):
            own = dict(getattr(table, kind, None) or {})
            for key, bound in own.items():
                found.append((kind, key, bound, f"{pyproject} {kind}"))
            for key, bound in ini_bounds.items():
                if key not in own:
                    found.append((kind, key, bound, f"{self._ini_name()} training_{kind}"))
        return found

    def pytest_training_job_finished(self, item: Any, result: Any) -> None:
        """Fail the item for every bound its metrics break; gated nested keys travel with the
        result (``extra["nested_metrics"]``) so that a baseline keeps them."""
        if item.spec.siblings:  # the cells of its configuration (aggregates after --lf, -k)
            result.extra["siblings"] = dict(item.spec.siblings)
        if result.run is None or not result.run.ok:
            return
        spec = item.spec
        doc, problem = document_of(result.metrics)
        nested: dict[str, float] = {}
        for kind, key, bound, where in self.gates_of(spec):
            word = "minimum" if kind == "min" else "maximum"
            if doc is None:
                result.fail(f"job {spec.id!r}: gate {key} {word} {fmt(bound)} ({where}): "
                            f"{problem}")
                continue
            value, missing = lookup(doc, key)
            if value is None:
                result.fail(f"job {spec.id!r}: gate {key} {word} {fmt(bound)} ({where}): "
                            f"{missing}")
                continue
            if "." in key:
                nested[key] = value
            if (kind == "min" and value < bound) or (kind == "max" and value > bound):
                side = "below" if kind == "min" else "above"
                result.fail(f"job {spec.id!r}: {key} {fmt(value)} is {side} the {word} "
                            f"{fmt(bound)} ({where})")
            else:
                result.properties.append((f"gate.{kind}.{key}", bound))
        if nested:
            result.extra.setdefault("nested_metrics", {}).update(nested)


class MeanGates:
    """A testcase per configuration (cells that differ only in the seed), after the run loop,
    on the controller: its aggregates as JUnit properties, failed by a ``min_mean`` /
    ``max_mean`` gate of the job table (``training_plugin.verdict``)."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.records: dict[str, Any] = {}
        self.failures: list[str] = []

    def pytest_unconfigure(self, config: pytest.Config) -> None:
        """Unregister."""
        config.pluginmanager.unregister(self, MEAN_NAME)

    def pytest_training_job_report(self, config: pytest.Config, report: Any, record: Any) -> None:
        """Keep each cell's final record."""
        if record.cell:
            self.records[record.nodeid] = record

    @pytest.hookimpl(wrapper=True)
    def pytest_runtestloop(self, session: pytest.Session) -> Any:
        """Once the cells have run: one made testcase per configuration."""
        result = yield
        if is_controller(self.config) and self.records and not session.shouldstop:
            confs = aggregate.configurations(kept(self.config, self.records))
            session.testscollected += len(confs)  # the terminal's progress counts them
            for conf in confs:
                stories = mean_gate_failures(conf)
                self.failures += stories
                log_verdict(self.config, conf.nodeid, conf.script, failed=bool(stories),
                            story="\n".join(stories) or None, properties=conf.properties())
        return result

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        """Each failed configuration gate, one line."""
        for story in self.failures:
            terminalreporter.write_line(f"training: {story}", red=True)


def kept(config: pytest.Config, records: dict[str, Any]) -> list[Any]:
    """This session's cells and the other cells of their configurations from their last run
    in the history (``--lf``, ``-k``)."""
    cells = [records[k] for k in sorted(records)]
    if not aggregate.missing_cells(cells):
        return cells
    return aggregate.with_kept(cells, {k: v[-1] for k, v in store.entries_by_job(config).items()})


def mean_gate_failures(conf: aggregate.Configuration) -> list[str]:
    """The stories of the ``min_mean`` / ``max_mean`` gates a configuration breaks."""
    where = f"pyproject.toml [tool.training_plugin.jobs.{conf.job}]"
    stories = []
    for kind in ("min_mean", "max_mean"):
        for key, bound in dict(conf.table.get(kind) or {}).items():
            word = "minimum" if kind == "min_mean" else "maximum"
            stats = conf.metrics.get(key)
            if stats is None:
                stories.append(f"configuration {conf.id!r}: gate {key} {word} mean {fmt(bound)} "
                               f"({where} {kind}): no seed wrote {key}")
                continue
            if (kind == "min_mean" and stats.mean < bound) or (
                    kind == "max_mean" and stats.mean > bound):
                side = "below" if kind == "min_mean" else "above"
                stories.append(
                    f"configuration {conf.id!r}: {key} mean {fmt(stats.mean)} over {stats.n} "
                    f"seeds is {side} the {word} mean {fmt(bound)} ({where} {kind})")
    return stories


def pytest_configure(config: pytest.Config) -> None:
    """Register the gates plugin object (every session: gates come from the job table)."""
    config.pluginmanager.register(Gates(config), NAME)
    config.pluginmanager.register(MeanGates(config), MEAN_NAME)
