"""The HTML report feature: pytest-html extras for every training job, and the session's
header.

Active only with pytest-html's ``--html FILE``; without it nothing here is registered and
neither pytest-html's API nor Pillow is imported.

In the process that runs a job (the controller, an xdist worker, or the controller under
``--ray``), the job's ``JobRecord`` (its metrics.json as the item parsed it), its
``figures/`` and ``<output-dir>/history.jsonl`` become one HTML extra on the call report and a
small JSON-able digest; both travel with the report to the controller.  There, the
pytest-html hooks add the metric / data / node columns, the session header (when, commit,
counts, total time, where the jobs ran) with a table of every job at a glance, and keep only
the tail of each ``train.log`` in the report (the whole log stays on disk).

Modules: ``format`` (formatters), ``figures`` (embedded images), ``trend`` (the trend plot),
``view`` (one job), ``header`` (the session box; ``style.css``), ``plugin`` (``HtmlReport``).
"""

from __future__ import annotations

import pytest

from training_plugin.features.report.plugin import NAME, REPORT_ATTR, HtmlReport

__all__ = ["NAME", "REPORT_ATTR", "HtmlReport", "add_ini"]


def add_ini(parser: pytest.Parser) -> None:
    """No ini keys (pytest-html's own, e.g. ``render_collapsed``, apply)."""


def pytest_addoption(parser: pytest.Parser) -> None:
    """No options: the report is pytest-html's ``--html FILE`` (``--self-contained-html``)."""
    add_ini(parser)


def pytest_configure(config: pytest.Config) -> None:
    """Register the report plugin when pytest-html writes a report (``--html``)."""
    if not config.getoption("htmlpath", None) or not config.pluginmanager.hasplugin("html"):
        return
    if config.pluginmanager.get_plugin(NAME) is None:
        config.pluginmanager.register(HtmlReport(config), NAME)


def pytest_unconfigure(config: pytest.Config) -> None:
    """Unregister the report plugin."""
    plugin = config.pluginmanager.get_plugin(NAME)
    if plugin is not None:
        config.pluginmanager.unregister(plugin, NAME)
