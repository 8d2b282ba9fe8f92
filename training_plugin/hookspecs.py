"""The hooks of training_plugin, for other plugins (registered through ``pytest_addhooks``).

The run path of one job is::

    pytest_training_make_executor   (once per pytest process: who runs the jobs)
    pytest_training_skip_job        (may skip the job, e.g. nothing it depends on changed)
    pytest_training_job_started     (the job is about to run)
        executor.run(...)
    pytest_training_job_finished    (how it ended and its metrics; may fail the item)
    pytest_training_job_report      (on the controller: the job's final report, once per job)

Quality gates, baseline comparison, run history, the HTML report extras and MLflow tracking are
plugins on these hooks; none of them lives in ``TrainingItem.runtest``.

``job_started``, ``skip_job`` and ``job_finished`` run in the process that runs the job (the
controller, or an xdist worker under ``-n``); ``job_report`` runs on the controller only, so a
plugin that writes one shared file or database (history, MLflow) is its only writer.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:  # pragma: no cover
    from training_plugin.executors import Executor
    from training_plugin.items import TrainingItem
    from training_plugin.results import JobResult, JobSkip


@pytest.hookspec(firstresult=True)
def pytest_training_make_executor(config: pytest.Config) -> Executor | None:
    """Return the executor that runs this process's jobs (first non-None wins).

    Called once per pytest process, before its first job.  training_plugin's own
    implementation (``trylast``) returns the Ray executor under ``--ray`` and the local one
    otherwise.
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
    config: pytest.Config, report: pytest.TestReport, record: dict[str, Any]
) -> None:
    """On the controller, once per job: its final report and its record.

    ``record`` holds ``id``, ``outcome`` (passed / failed / skipped / error), ``command``,
    ``output_dir``, ``log``, ``node``, ``duration_s``, ``metrics``, ``primary_metric``,
    ``synthetic``, ``story`` (why it failed or was skipped) and ``extra``.
    """
