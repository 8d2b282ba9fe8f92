"""``TrainingSession``: the one plugin object of a session (registered in ``pytest_configure``).

It holds the session's state and implements the hooks of the run path: the executor choice
(local or Ray), longest-first order and the xdist scheduler, the pytest-timeout integration,
the job record on each report, the live progress line, remembered durations, the summary, and
the controller-side ``pytest_training_job_report`` call.  Features (gates, history, report
extras, tracking) are separate plugins on the hooks of ``hookspecs.py``.
"""

from __future__ import annotations

import os
from typing import Any

import pytest

from training_plugin import budget, items as items_mod, results
from training_plugin.items import TrainingItem
from training_plugin.progress import Progress
from training_plugin.pytest_compat import is_controller
from training_plugin.scheduler import known_durations, order_items, save_durations

#: Report attribute naming a training job's log (travels with the report from xdist workers).
REPORT_LOG_ATTR = "training_log"
#: workerinput key carrying the controller's snapshot of the remembered durations.
WORKERINPUT_DURATIONS = "training_plugin_durations"
#: The name the session object is registered under.
NAME = "training_plugin.session"
#: The name ``xdist_scheduler.py`` is registered under (``-p no:`` it for xdist's own
#: scheduler); kept here so that unregistering needs no import of xdist's schedulers.
XDIST_SCHEDULER_NAME = "training_plugin.xdist_scheduler"


def is_training_item(item: pytest.Item) -> bool:
    """Whether ``item`` is a training job."""
    return isinstance(item, TrainingItem)


class TrainingSession:
    """Per-session state and the run-path hooks (see the module docstring)."""

    def __init__(self, config: pytest.Config, output_dir: Any, ray_address: str | None) -> None:
        self.config = config
        self.ray_address = ray_address
        self.controller = is_controller(config)
        self.summary = results.SummaryCollector(config, output_dir) if self.controller else None
        self.measured: dict[str, float] = {}
        self.progress: Progress | None = None
        self.old_sigterm: Any = None
        # workers use the controller's snapshot; the controller reads them on first use (after
        # every plugin is configured: the baseline's expected durations come from gates)
        workerinput = getattr(config, "workerinput", None)
        self._durations: dict[str, float] | None = None
        if workerinput is not None and WORKERINPUT_DURATIONS in workerinput:
            self._durations = dict(workerinput[WORKERINPUT_DURATIONS])

    @property
    def durations(self) -> dict[str, float]:
        """Known durations by node id (remembered, else expected), read once."""
        if self._durations is None:
            self._durations = known_durations(self.config)
        return self._durations

    # -- the executor ---------------------------------------------------------------------------
    @pytest.hookimpl(trylast=True)
    def pytest_training_make_executor(self, config: pytest.Config) -> Any:
        """Ray under ``--ray``, else the local reaper-based executor."""
        if self.ray_address is not None:
            from training_plugin.executors.ray import RayExecutor

            return RayExecutor(config, self.ray_address)
        from training_plugin.executors.local import LocalExecutor

        worker = getattr(config, "workerinput", {}).get("workerid")
        return LocalExecutor(f"local:{worker}" if worker else "local")

    # -- order and scheduling -------------------------------------------------------------------
    @pytest.hookimpl(optionalhook=True)
    def pytest_configure_node(self, node: Any) -> None:
        """xdist: hand every worker the same snapshot of the remembered durations."""
        node.workerinput[WORKERINPUT_DURATIONS] = self.durations

    @pytest.hookimpl(trylast=True)
    def pytest_collection_modifyitems(self, config: pytest.Config,
                                      items: list[pytest.Item]) -> None:
        """Training items longest first by remembered duration (identical on every worker)."""
        order_items(items, self.durations, is_training_item)

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtestloop(self, session: pytest.Session) -> None:
        """On a cluster, every selected job is submitted before the first item runs, so that
        all of them are in flight at once; each item then waits for its own job."""
        if self.ray_address is None or session.config.getoption("collectonly"):
            return
        if session.testsfailed and session.config.getoption("continue_on_collection_errors") is False:
            return
        executor = items_mod.executor_of(session.config)
        submit_all = getattr(executor, "submit_all", None)
        if submit_all is None:
            return
        jobs = [item.job_run() for item in session.items
                if isinstance(item, TrainingItem) and item.runnable()]
        submit_all(jobs)
        in_flight = getattr(executor, "in_flight", None)
        if self.progress is not None and in_flight is not None:
            self.progress.source = in_flight  # every job on the cluster, not the waited one

    # -- pytest-timeout -------------------------------------------------------------------------
    @pytest.hookimpl(optionalhook=True, tryfirst=True)
    def pytest_timeout_set_timer(self, item: pytest.Item, settings: Any) -> bool | None:
        """Training items: keep pytest-timeout's resolved timeout (marker > --timeout > ini)
        for the executor, which kills the job's process tree; install no timer."""
        if not is_training_item(item):
            return None
        item.stash[items_mod.TIMEOUT_KEY] = settings.timeout
        return True

    @pytest.hookimpl(optionalhook=True, tryfirst=True)
    def pytest_timeout_cancel_timer(self, item: pytest.Item) -> bool | None:
        """Training items have no pytest-timeout timer to cancel."""
        if not is_training_item(item):
            return None
        return True

    # -- reports --------------------------------------------------------------------------------
    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(self, item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
        """Attach the job's log path and record to its reports (xdist carries them)."""
        report = yield
        if isinstance(item, TrainingItem) and call.when != "teardown":
            setattr(report, REPORT_LOG_ATTR, str(item.spec.log_path))
            if call.when == "call" or not report.passed:  # the job's final report
                setattr(report, results.REPORT_ATTR, item.record(call.excinfo))
        return report

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        """Progress entries, measured durations, the summary, and (once per job, on the
        controller) ``pytest_training_job_report``."""
        log_path = getattr(report, REPORT_LOG_ATTR, None)
        if log_path is None:
            return
        if self.progress is not None:
            if report.when == "setup" and report.passed:
                self.progress.job_started(report.nodeid, log_path)
            elif report.when == "call" or report.failed:
                self.progress.job_finished(report.nodeid)
        if report.when == "call":
            self.measured[report.nodeid] = results.job_duration(report)
        if self.summary is None:
            return
        record = self.summary.add(report)
        final = report.when == "call" or (report.when == "setup" and not report.passed)
        if final and record is not None:
            self.config.hook.pytest_training_job_report(
                config=self.config, report=report, record=record
            )

    def pytest_runtest_logfinish(self, nodeid: str) -> None:
        """Whatever happened, the job no longer runs."""
        if self.progress is not None:
            self.progress.job_finished(nodeid)

    # -- session start and end ------------------------------------------------------------------
    def pytest_sessionstart(self, session: pytest.Session) -> None:
        """SIGTERM interrupts the session like Ctrl-C (reports and JUnit XML are still
        written); with a TTY and verbosity >= 0, start the live progress line."""
        config = self.config
        if not self.controller or config.getoption("collectonly", False):
            return
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

    @pytest.hookimpl(tryfirst=True)
    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        """Stop the progress line and the executor; remember durations; write summary.json."""
        if self.old_sigterm is not None:
            from training_plugin import runner

            runner.restore_sigterm(self.old_sigterm)
            self.old_sigterm = None
        if self.progress is not None:
            self.progress.stop()
            if self.progress.fd is not None:
                os.close(self.progress.fd)
            self.progress = None
        items_mod.close_executor(self.config)
        if self.controller:
            save_durations(self.config, self.measured)
        if self.summary is not None:
            self.summary.write()

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        """The training summary table."""
        if self.summary is not None:
            self.summary.terminal(terminalreporter)


def register(config: pytest.Config, output_dir: Any, ray_address: str | None) -> TrainingSession:
    """Register the session object (and warn once when xdist workers share GPUs)."""
    session = TrainingSession(config, output_dir, ray_address)
    config.pluginmanager.register(session, NAME)
    if session.controller and config.getoption("dist", "no") != "no":
        # xdist's scheduler hook, in a module that imports xdist's schedulers; registered by
        # name so that `-p no:training_plugin.xdist_scheduler` gives xdist's own scheduler back
        from training_plugin import xdist_scheduler

        if not config.pluginmanager.is_registered(xdist_scheduler):
            config.pluginmanager.register(xdist_scheduler, XDIST_SCHEDULER_NAME)
    if session.controller and ray_address is None:
        message = budget.shared_gpu_warning(config)
        if message:
            config.issue_config_time_warning(pytest.PytestWarning(message), stacklevel=2)
    return session


def unregister(config: pytest.Config) -> None:
    """Unregister the session object; close the executor (kills anything still running)."""
    items_mod.close_executor(config)
    for name in (NAME, XDIST_SCHEDULER_NAME):
        plugin = config.pluginmanager.get_plugin(name)
        if plugin is not None:
            config.pluginmanager.unregister(plugin, name)
