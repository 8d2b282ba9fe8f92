"""Pytest hooks for running training jobs side by side: thread budget, GPUs, longest-first order,
an xdist scheduler, remembered durations, live progress and the pytest-timeout integration.

P1's plugin registers this module in ``pytest_configure`` with
``config.pluginmanager.register(parallel, "training_plugin.parallel")``; the helpers live in
``budget.py``, ``scheduler.py``, ``progress.py`` and ``runner.py``.
"""

from __future__ import annotations

import os
import sys
from typing import Any

import pytest

from training_plugin.budget import (  # noqa: F401 - the interface P1 codes against
    BUDGET_VAR,
    GPUS_ENV,
    THREAD_VARS,
    gpus_for_worker,
    job_environment,
    shared_gpu_warning,
    threads_per_job,
    visible_gpus,
    worker_count,
)
from training_plugin.progress import Progress
from training_plugin.scheduler import (
    load_durations,
    order_items,
    save_durations,
)

#: Effective timeout of a training item (float | None), set by ``pytest_timeout_set_timer``.
TIMEOUT_KEY = pytest.StashKey["float | None"]()
#: Report attribute naming a training job's log (travels with the report from xdist workers).
REPORT_LOG_ATTR = "training_log"


def is_training_item(item: pytest.Item) -> bool:
    """Whether ``item`` is a training job (P1's TrainingItem, carrying a job spec)."""
    try:
        from training_plugin.jobs import TrainingItem
    except ImportError:
        TrainingItem = None  # noqa: N806
    if TrainingItem is not None and isinstance(item, TrainingItem):
        return True
    spec = getattr(item, "spec", None)
    return spec is not None and hasattr(spec, "log_path")


def _is_controller(config: pytest.Config) -> bool:
    return not hasattr(config, "workerinput")


# -- order and scheduling ----------------------------------------------------------------------

#: workerinput key carrying the controller's snapshot of the remembered durations.
WORKERINPUT_DURATIONS = "training_plugin_durations"


def session_durations(config: pytest.Config) -> dict[str, float]:
    """The remembered durations this session orders by: the controller's snapshot on xdist
    workers (so every worker sorts identically even if the cache changes meanwhile), else the
    cache."""
    workerinput = getattr(config, "workerinput", None)
    if workerinput is not None and WORKERINPUT_DURATIONS in workerinput:
        return dict(workerinput[WORKERINPUT_DURATIONS])
    return load_durations(config)


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Training items longest first by remembered duration (identical on every xdist worker)."""
    order_items(items, session_durations(config), is_training_item)


@pytest.hookimpl(optionalhook=True, tryfirst=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """Under ``--dist load`` (what ``-n`` means), hand out items one job at a time in the
    collection's longest-first order; other --dist modes keep xdist's scheduler."""
    if config.getvalue("dist") != "load":
        return None
    from training_plugin.xdist_scheduler import LongestFirstScheduling

    return LongestFirstScheduling(config, log)


# -- reports: log path for the progress display, durations for the next run -----------------

@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """Mark training reports with the job's log path (serialised by xdist with the report)."""
    report = yield
    if is_training_item(item):
        setattr(report, REPORT_LOG_ATTR, str(item.spec.log_path))  # type: ignore[attr-defined]
    return report


class SessionState:
    """Per-session state of the controller (registered as a plugin in pytest_configure, like
    junitxml's LogXML): the live progress line and the durations measured in this run."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.measured: dict[str, float] = {}
        self.progress: Progress | None = None
        self.old_sigterm: Any = None
        self.durations = load_durations(config)  # read once, before any worker starts

    @pytest.hookimpl(optionalhook=True)
    def pytest_configure_node(self, node: Any) -> None:
        """xdist: hand every worker the same snapshot of the remembered durations."""
        node.workerinput[WORKERINPUT_DURATIONS] = self.durations

    def pytest_sessionstart(self, session: pytest.Session) -> None:
        """SIGTERM interrupts the session like Ctrl-C (reports and JUnit XML are still
        written); with a TTY and verbosity >= 0, start the live progress line."""
        config = self.config
        if config.getoption("collectonly", False):
            return  # nothing runs
        from training_plugin import runner

        # SIGTERM ends the session like Ctrl-C: with -n, xdist then tears the workers down
        # (their reapers kill the job trees) and the summary and JUnit XML are still written.
        self.old_sigterm = runner.interrupt_on_sigterm()
        if config.get_verbosity() < 0:
            return
        reporter = config.pluginmanager.get_plugin("terminalreporter")
        if reporter is None or not reporter.isatty():
            return
        try:
            terminal_fd = os.dup(reporter._tw._file.fileno())
        except (AttributeError, OSError, ValueError):
            terminal_fd = None
        self.progress = Progress(reporter._tw, fd=terminal_fd)
        self.progress.start()

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        """Start/stop progress entries; collect the call durations of training jobs."""
        log_path = getattr(report, REPORT_LOG_ATTR, None)
        if self.progress is not None:
            if log_path is not None and report.when == "setup" and report.passed:
                self.progress.job_started(report.nodeid, log_path)
            elif report.when == "call" or report.failed:
                self.progress.job_finished(report.nodeid)
        if log_path is not None and report.when == "call":
            self.measured[report.nodeid] = report.duration

    def pytest_runtest_logfinish(self, nodeid: str) -> None:
        """Whatever happened, the job no longer runs."""
        if self.progress is not None:
            self.progress.job_finished(nodeid)

    @pytest.hookimpl(tryfirst=True)
    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        """Stop the progress line; remember this run's durations for the next one."""
        if self.old_sigterm is not None:
            from training_plugin import runner

            runner.restore_sigterm(self.old_sigterm)
            self.old_sigterm = None
        if self.progress is not None:
            self.progress.stop()
            if self.progress.fd is not None:
                os.close(self.progress.fd)
            self.progress = None
        save_durations(self.config, self.measured)


_STATE_NAME = "training_plugin.parallel.state"


def pytest_configure(config: pytest.Config) -> None:
    """Controller: register the session state; warn once when xdist workers share GPUs."""
    if not _is_controller(config):
        return
    config.pluginmanager.register(SessionState(config), _STATE_NAME)
    message = shared_gpu_warning(config)
    if message:
        config.issue_config_time_warning(pytest.PytestWarning(message), stacklevel=2)


def pytest_unconfigure(config: pytest.Config) -> None:
    """Unregister the session state; stop this process's reaper (kills anything running)."""
    state = config.pluginmanager.get_plugin(_STATE_NAME)
    if state is not None:
        config.pluginmanager.unregister(state, _STATE_NAME)
    runner = sys.modules.get("training_plugin.runner")  # loaded only if a job ran
    if runner is not None:
        runner.shutdown()


# -- pytest-timeout ----------------------------------------------------------------------------

@pytest.hookimpl(optionalhook=True, tryfirst=True)
def pytest_timeout_set_timer(item: pytest.Item, settings: Any) -> bool | None:
    """Training items: keep pytest-timeout's resolved timeout (marker > --timeout > ini) for the
    runner, which kills the job's process tree; install no SIGALRM/thread timer."""
    if not is_training_item(item):
        return None
    item.stash[TIMEOUT_KEY] = settings.timeout
    return True


@pytest.hookimpl(optionalhook=True, tryfirst=True)
def pytest_timeout_cancel_timer(item: pytest.Item) -> bool | None:
    """Training items have no pytest-timeout timer to cancel."""
    if not is_training_item(item):
        return None
    return True
