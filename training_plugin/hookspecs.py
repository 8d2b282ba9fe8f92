"""The hooks of training_plugin, for other plugins (registered through ``pytest_addhooks``).

The run path of one job is::

    pytest_training_expected_durations  (once, on the controller: durations for the order)
    pytest_training_make_executor       (once per pytest process: who runs the jobs)
    pytest_training_skip_job            (may skip the job, e.g. nothing it depends on changed)
    pytest_training_job_started         (the job is about to run)
        executor.run(...)
    pytest_training_job_finished        (how it ended and its metrics; may fail the item)
    pytest_training_job_report          (on the controller: the job's final report, once per job)
    pytest_training_job_interrupted     (on the controller, at session end: a job that started
                                         and never reported, e.g. after Ctrl-C or a dead worker)

Quality gates, baseline comparison, run history, the HTML report extras and MLflow tracking are
plugins on these hooks; none of them lives in ``TrainingItem.runtest``.

``job_started``, ``skip_job`` and ``job_finished`` run in the process that runs the job (the
controller, or an xdist worker under ``-n``); ``job_report`` and ``job_interrupted`` run on the
controller only, so a plugin that writes one shared file or database (history, MLflow) is its
only writer.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:  # pragma: no cover
    from training_plugin.collect.items import TrainingItem
    from training_plugin.executors.base import Executor
    from training_plugin.options import Settings
    from training_plugin.results import JobRecord, JobResult, JobSkip


@pytest.hookspec(firstresult=True)
def pytest_training_make_executor(config: pytest.Config, settings: Settings) -> Executor | None:
    """Return the executor that runs this process's jobs (first non-None wins).

    Called once per pytest process, before its first job, with the session's settings.
    training_plugin's own implementation (``trylast``) returns the Ray executor under ``--ray``
    and the local one otherwise.  An executor follows ``executors.base.Executor``; subclassing
    ``executors.base.BaseExecutor`` gives the optional methods their defaults.
    """


def pytest_training_expected_durations(config: pytest.Config) -> dict[str, float] | None:
    """Return node id -> expected seconds for jobs (e.g. from a saved baseline), or None.

    Called once on the controller, before the jobs are ordered.  Durations remembered from
    earlier runs of this checkout win over every expected one; among expected ones, a later
    implementation's value wins.
    """


@pytest.hookspec(firstresult=True)
def pytest_training_skip_job(item: TrainingItem) -> JobSkip | None:
    """Return a ``JobSkip`` (reason, and the metrics to report) to skip the job, or None."""


def pytest_training_job_started(item: TrainingItem) -> None:
    """The job is about to run (its spec: ``item.spec``; its output dir exists)."""


def pytest_training_job_finished(item: TrainingItem, result: JobResult) -> None:
    """The job has ended: ``result.run`` says how, ``result.metrics`` what it wrote.

    An implementation may fail the item with ``result.fail("one-line story")`` (outputs are
    kept), add JUnit properties with ``result.properties.append((name, value))``, add lines to
    the summary row with ``result.notes.append(...)``, and put JSON-able facts into
    ``result.extra[name]``; those travel with the report to the controller (``-n``) and are in
    the record that ``pytest_training_job_report`` receives.
    """


def pytest_training_job_report(
    config: pytest.Config, report: pytest.TestReport, record: JobRecord
) -> None:
    """On the controller, once per job: its final report and its typed record
    (``results.JobRecord``: id, node id, outcome, argv, output dir, log, node, durations,
    metrics and the whole metrics.json, story, notes, extra, job-table entry)."""


def pytest_training_job_interrupted(config: pytest.Config, record: JobRecord) -> None:
    """On the controller, at session end, once per job that started and never sent its final
    report (Ctrl-C, SIGTERM, a crashed xdist worker).  ``record.outcome`` is
    ``"interrupted"``; metrics are empty."""
