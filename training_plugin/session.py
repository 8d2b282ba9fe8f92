"""``TrainingSession``: the one controller object of a session (registered in
``pytest_configure``, like xdist's ``DSession``).

It owns every run-time hook of the run path: session start (collect, connect, SIGTERM, the
live progress line), the executor choice, longest-first order and the xdist scheduler, the
pytest-timeout integration, the job record on each report, the summary, and the
controller-side ``pytest_training_job_report`` / ``pytest_training_job_interrupted`` calls.
Features (gates, baseline, history, fingerprint, report, tracking) are separate plugins on the
hooks of ``hookspecs.py``.
"""

from __future__ import annotations

import os
import time
from typing import Any

import pytest

from training_plugin import pytest_compat, store
from training_plugin.collect import listing
from training_plugin.collect.items import (TIMEOUT_KEY, TrainingItem, check_timeout,
                                           close_executor, executor_of, made_executor,
                                           spec_record)
from training_plugin.collect.pipeline import Collector, state_of
from training_plugin.options import Settings, ray_address
from training_plugin.results import REPORT_ATTR, JobRecord, record_of
from training_plugin.run import budget, lock, signals
from training_plugin.run.order import known_durations, order_items, save_durations
from training_plugin.run.progress import Progress
from training_plugin.summary import NOT_RUN, SummaryCollector, job_duration

#: workerinput key carrying the controller's snapshot of the remembered durations.
WORKERINPUT_DURATIONS = "training_plugin_durations"
#: The name the session object is registered under.
NAME = "training_plugin.session"


def is_training_item(item: pytest.Item) -> bool:
    """Whether ``item`` is a training job."""
    return isinstance(item, TrainingItem)


class TrainingSession:
    """Per-session state and the run-path hooks (see the module docstring)."""

    def __init__(self, config: pytest.Config, collector: Collector) -> None:
        self.config = config
        self.collector = collector
        self.controller = pytest_compat.is_controller(config)
        self.collect_only = bool(config.getoption("collectonly", False))
        self.summary: SummaryCollector | None = None
        self.measured: dict[str, float] = {}
        self.progress: Progress | None = None
        self.old_sigterm: Any = None
        #: node id -> record of a job whose setup passed and whose final report has not come
        self.started: dict[str, JobRecord] = {}
        #: node id -> spec of every selected job (those never run go to summary.json too)
        self.selected: dict[str, Any] = {}
        #: node id -> time.monotonic() when its job started (for interrupted records)
        self.started_at: dict[str, float] = {}
        self.lock: lock.FolderLock | None = None
        self.shutdown = signals.Shutdown()
        # workers use the controller's snapshot; the controller asks the plugins on first use
        workerinput = getattr(config, "workerinput", None)
        self._durations: dict[str, float] | None = None
        if workerinput is not None and WORKERINPUT_DURATIONS in workerinput:
            self._durations = dict(workerinput[WORKERINPUT_DURATIONS])

    @property
    def durations(self) -> dict[str, float]:
        """Known durations by node id (remembered, else expected), worked out once."""
        if self._durations is None:
            state = state_of(self.config)
            cells = {} if state is None else {
                f"{spec.relpath}::{spec.id}": f"{spec.relpath}::{spec.job}"
                for specs in state.specs.values() for spec in specs if spec.cell}
            self._durations = known_durations(self.config, cells)
        return self._durations

    # -- the executor ---------------------------------------------------------------------------
    @pytest.hookimpl(trylast=True)
    def pytest_training_make_executor(self, config: pytest.Config, settings: Settings) -> Any:
        """Ray under ``--ray``, else the local reaper-based executor."""
        if settings.ray_address is not None:
            from training_plugin.executors.ray import RayExecutor

            return RayExecutor(config, settings)
        from training_plugin.executors.local import LocalExecutor

        worker = getattr(config, "workerinput", {}).get("workerid")
        return LocalExecutor(f"local:{worker}" if worker else "local")

    # -- session start ----------------------------------------------------------------------------
    @pytest.hookimpl(tryfirst=True)
    def pytest_sessionstart(self, session: pytest.Session) -> None:
        """Collect the job specs (usage errors before anything runs); on a cluster, connect
        (a bad address is a usage error); SIGTERM interrupts like Ctrl-C; with a TTY and
        verbosity >= 0, start the live progress line."""
        config = self.config
        state = self.collector.prepare()
        if not self.controller:
            return
        self.summary = SummaryCollector(state.settings.output_dir, self.collect_only)
        if not self.collect_only:
            self._check_timeouts()
        runs_jobs = not self.collect_only and config.getoption("dist", "no") == "no"
        if state.settings.cluster or runs_jobs:
            executor_of(config)  # a cluster connects now (a bad address is a usage error)
        if self.collect_only:
            return
        # SIGTERM ends the session like Ctrl-C: with -n, xdist then tears the workers down
        # (their reapers kill the job trees) and the summary and JUnit XML are still written.
        self.old_sigterm = signals.interrupt_on_sigterm()
        if config.get_verbosity() < 0:
            return
        reporter = config.pluginmanager.get_plugin("terminalreporter")
        if reporter is None or not reporter.isatty():
            return
        writer = pytest_compat.terminal_writer(reporter)
        try:
            terminal_fd = os.dup(pytest_compat.terminal_file(writer).fileno())
        except (AttributeError, OSError, ValueError):
            terminal_fd = None
        self.progress = Progress(writer, fd=terminal_fd)
        self.progress.start()

    def _check_timeouts(self) -> None:
        """pytest-timeout's --timeout and ini key: a finite number >= 0 (a usage error)."""
        if not self.config.pluginmanager.hasplugin("timeout"):
            return
        check_timeout(self.config.getoption("timeout", None), "--timeout")
        try:
            check_timeout(self.config.getini("timeout"), "the timeout ini key")
        except ValueError:
            pass  # no timeout ini key

    def pytest_report_header(self, config: pytest.Config) -> list[str] | None:
        """How many jobs, from where, output to where; where the executor runs them."""
        state = state_of(config)
        if state is None:
            return None
        lines = listing.header(state)
        executor = made_executor(config)
        described = executor.describe() if executor is not None else None
        if described:
            lines.append(f"training: {described}")
        return lines

    # -- order and scheduling -------------------------------------------------------------------
    @pytest.hookimpl(optionalhook=True)
    def pytest_configure_node(self, node: Any) -> None:
        """xdist: every worker gets the same snapshot of the remembered durations and of the
        last passing run of each job."""
        node.workerinput[WORKERINPUT_DURATIONS] = self.durations
        node.workerinput[store.WORKERINPUT_LAST] = store.last_passing(self.config)

    @pytest.hookimpl(trylast=True)
    def pytest_collection_modifyitems(self, config: pytest.Config,
                                      items: list[pytest.Item]) -> None:
        """Training items longest first by remembered duration (identical on every worker)."""
        order_items(items, self.durations, is_training_item)

    def pytest_collection_finish(self, session: pytest.Session) -> None:
        """Remember the selected jobs (without xdist: this process collected them)."""
        self.selected.update((item.nodeid, item.spec) for item in session.items
                             if isinstance(item, TrainingItem))
        self._lock_output()

    @pytest.hookimpl(optionalhook=True)
    def pytest_xdist_node_collection_finished(self, node: Any, ids: list[str]) -> None:
        """xdist: the selected jobs, as the first worker to collect them reports."""
        if self.selected:
            return
        state = state_of(self.config)
        if state is None:
            return
        by_nodeid = {f"{spec.relpath}::{spec.id}": spec
                     for specs in state.specs.values() for spec in specs}
        self.selected.update((i, by_nodeid[i]) for i in ids if i in by_nodeid)
        self._lock_output()

    def _lock_output(self) -> None:
        """One session per output folder (under --ray: the controller's): the controller
        locks it once jobs are selected, before the first one runs; a usage error when
        another session holds it.  ``--collect-only`` writes nothing and locks nothing."""
        state = state_of(self.config)
        if (self.lock is not None or self.collect_only or not self.controller
                or not self.selected or state is None):
            return
        self.lock = lock.acquire(state.settings.output_dir)

    def pytest_report_collectionfinish(self, config: pytest.Config,
                                       items: list[pytest.Item]) -> list[str] | None:
        """With ``--collect-only`` (not -q): each job's exact command and its detected flags."""
        if not self.collect_only or config.get_verbosity() < 0:
            return None
        return listing.jobs(config, items) or None

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtestloop(self, session: pytest.Session) -> None:
        """Where this process runs every job of the session (no xdist), the executor gets them
        all before the first item runs (a cluster starts them at once); each item then waits
        for its own job."""
        config = session.config
        if self.collect_only or not self.controller or config.getoption("dist", "no") != "no":
            return
        if session.testsfailed and not config.getoption("continue_on_collection_errors"):
            return
        executor = executor_of(config)
        executor.submit_all([item.job_run() for item in session.items
                             if isinstance(item, TrainingItem) and item.runnable()])
        if self.progress is not None and executor.in_flight() is not None:
            self.progress.source = executor.in_flight  # every job running, not the waited one

    # -- pytest-timeout -------------------------------------------------------------------------
    @pytest.hookimpl(optionalhook=True, tryfirst=True)
    def pytest_timeout_set_timer(self, item: pytest.Item, settings: Any) -> bool | None:
        """Training items: keep pytest-timeout's resolved timeout (marker > --timeout > ini)
        for the executor, which kills the job's process tree; install no timer."""
        if not is_training_item(item):
            return None
        item.stash[TIMEOUT_KEY] = settings.timeout
        return True

    @pytest.hookimpl(optionalhook=True, tryfirst=True)
    def pytest_timeout_cancel_timer(self, item: pytest.Item) -> bool | None:
        """Training items have no pytest-timeout timer to cancel."""
        if not is_training_item(item):
            return None
        return True

    # -- reports --------------------------------------------------------------------------------
    @pytest.hookimpl(wrapper=True, trylast=True)
    def pytest_runtest_makereport(self, item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
        """Attach the job's record to its setup and call reports (xdist carries it); the
        innermost wrapper, so other plugins' wrappers find it after their ``yield``."""
        report = yield
        if isinstance(item, TrainingItem) and call.when != "teardown":
            setattr(report, REPORT_ATTR, item.record(call.excinfo).to_json())
            if call.when == "call" and item.lost(call.excinfo):
                report.when = "setup"  # pytest's errors are outside the call (docs/failures.md)
        return report

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        """Progress entries, measured durations, the summary, and (once per job, on the
        controller) ``pytest_training_job_report``.  First of the hook's implementations: a
        job is booked before the terminal shows its outcome, so an interruption right after
        "PASSED" is printed cannot turn that job into "interrupted"."""
        record = record_of(report)
        if record is None and report.failed and report.nodeid in self.started:
            self._crashed(report)
            return
        if record is None or report.when == "teardown":
            return
        started = report.when == "setup" and report.passed
        if self.progress is not None:
            if started:
                self.progress.job_started(report.nodeid, record.log)
            else:
                self.progress.job_finished(report.nodeid)
        if started:
            self.started[report.nodeid] = record
            self.started_at[report.nodeid] = time.monotonic()
            return
        if report.when == "call":
            self.measured[report.nodeid] = job_duration(report)
        if self.summary is None:
            return
        final = self.summary.add(report)
        self.started.pop(report.nodeid, None)
        if final is not None:
            self.config.hook.pytest_training_job_report(
                config=self.config, report=report, record=final
            )

    def _crashed(self, report: pytest.TestReport) -> None:
        """xdist's report of a job whose worker crashed: an "error" with xdist's words."""
        record = self.started.pop(report.nodeid)
        if self.summary is None:
            return
        record.metrics, record.story = {}, str(report.longrepr or "its worker crashed").strip()
        final = self.summary.add_record(report.nodeid, record, "error")
        self.config.hook.pytest_training_job_report(config=self.config, report=report,
                                                    record=final)

    def pytest_runtest_logfinish(self, nodeid: str) -> None:
        """Whatever happened, the job no longer runs."""
        if self.progress is not None:
            self.progress.job_finished(nodeid)

    # -- session end ----------------------------------------------------------------------------
    @pytest.hookimpl(tryfirst=True)
    def pytest_keyboard_interrupt(self, excinfo: Any) -> None:
        """Ctrl-C or SIGTERM: a further one is noted, not raised (``signals.Shutdown``)."""
        self.shutdown.calm(self)

    @pytest.hookimpl(tryfirst=True)
    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        """Stop the progress line and the executor; remember durations; tell the plugins of
        jobs that never finished; write summary.json (interrupted and never-run jobs
        included).  The output folder stays locked until ``pytest_unconfigure``."""
        self.shutdown.calm(self)
        if self.old_sigterm is not None:
            signals.restore_sigterm(self.old_sigterm)
            self.old_sigterm = None
        if self.progress is not None:
            self.progress.stop()
            if self.progress.fd is not None:
                os.close(self.progress.fd)
            self.progress = None
        with self.shutdown.slow_part():  # a further signal cuts it short
            close_executor(self.config)  # the reaper dies with this process, with the jobs
        if not self.controller:
            return
        save_durations(self.config, self.measured)
        now = time.monotonic()
        for nodeid, record in self.started.items():
            record.outcome = "interrupted"
            record.duration_s = round(now - self.started_at.get(nodeid, now), 3)
            record.metrics = {}
            record.story = "interrupted before the job finished"
            self.config.hook.pytest_training_job_interrupted(config=self.config, record=record)
            if self.summary is not None:
                self.summary.add_record(nodeid, record, "interrupted")
        self.started.clear()
        if self.summary is not None and (self.lock is not None or not self.selected):
            self.summary.interrupted = session.exitstatus == pytest.ExitCode.INTERRUPTED
            if self.summary.interrupted:
                for nodeid, spec in self.selected.items():
                    if nodeid not in self.summary.entries:
                        record = spec_record(spec, nodeid)
                        record.story = "not run: the session was interrupted"
                        self.summary.add_record(nodeid, record, NOT_RUN)
            self.summary.write()

    def pytest_terminal_summary(self, terminalreporter: Any, exitstatus: int,
                                config: pytest.Config) -> None:
        """The training summary table; when nothing was selected, which job ids exist."""
        if self.summary is not None:
            self.summary.terminal(terminalreporter)
        state = state_of(config)
        if state is not None and exitstatus == pytest.ExitCode.NO_TESTS_COLLECTED:
            listing.no_match(config, state, terminalreporter)


def register(config: pytest.Config) -> TrainingSession:
    """Register the collector and the session object (and the xdist scheduler under ``-n``;
    warn once when xdist workers share GPUs)."""
    collector = Collector(config)
    config.pluginmanager.register(collector, "training_plugin.collector")
    session = TrainingSession(config, collector)
    config.pluginmanager.register(session, NAME)
    if session.controller and config.getoption("dist", "no") != "no":
        # xdist's scheduler hook, in a module that imports xdist's schedulers; registered by
        # name so that `-p no:training_plugin.xdist_scheduler` gives xdist's own scheduler back
        from training_plugin.run import xdist_scheduler

        if not config.pluginmanager.has_plugin(xdist_scheduler.NAME):
            config.pluginmanager.register(
                xdist_scheduler.SchedulerPlugin(lambda: session.durations), xdist_scheduler.NAME)
    if session.controller and ray_address(config) is None:
        message = budget.shared_gpu_warning(config)
        if message:
            config.issue_config_time_warning(pytest.PytestWarning(message), stacklevel=2)
    return session


def unregister(config: pytest.Config) -> None:
    """Unregister the plugin objects; close the executor (kills anything still running);
    release the output folder; give the signal handlers back."""
    close_executor(config)
    session = config.pluginmanager.get_plugin(NAME)
    if isinstance(session, TrainingSession):
        if session.lock is not None:
            session.lock.release()
            session.lock = None
        session.shutdown.restore()
    for name in (NAME, "training_plugin.collector", "training_plugin.xdist_scheduler"):
        plugin = config.pluginmanager.get_plugin(name)
        if plugin is not None:
            config.pluginmanager.unregister(plugin, name)
