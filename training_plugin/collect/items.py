"""The pytest collection nodes of training jobs: ``TrainingRoot`` / ``TrainingFile`` /
``TrainingItem``.

An item runs its job through the session's executor (local or Ray; it does not know which) and
announces the job on the plugin's hooks (``hookspecs.py``); gates, history, report extras and
tracking are plugins on those hooks, not code here.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from training_plugin import results, safefs
from training_plugin.collect import attempts as attempts_mod
from training_plugin.collect.argv import resolved_argv, resume_args
from training_plugin.collect.specs import JobSpec
from training_plugin.executors.base import Executor, JobRun, RunResult
from training_plugin.options import settings_of
from training_plugin.run import budget
from training_plugin.run.logs import log_tail

#: Where an earlier run's metrics.json is kept while the job runs again.
PREVIOUS_METRICS_FILE = "metrics.previous.json"
#: Lines of the log shown in a failure report.
LOG_TAIL_LINES = 30
#: The end of the log attached to a failure report (bytes; read from the end of the file).
LOG_ATTACH_BYTES = 1_000_000
MSG_UNSAFE_OUTPUT = "training job {id!r} was not started: {why}; nothing was written there"
MSG_BAD_TIMEOUT = ("invalid timeout {value!r} from {source}: expected a finite number of "
                   "seconds >= 0")
#: Effective timeout of a training item (float | None), set by ``pytest_timeout_set_timer``.
TIMEOUT_KEY = pytest.StashKey["float | None"]()
#: This process's executor (made by ``pytest_training_make_executor`` before the first job).
EXECUTOR_KEY = pytest.StashKey[Executor]()


class JobNotStarted(Exception):
    """The job could not be started (e.g. a required flag nobody supplies)."""


class JobFailed(Exception):
    """The job ran and failed; carries the spec and the executor's result."""

    def __init__(self, spec: JobSpec, result: RunResult) -> None:
        super().__init__(f"{spec.id}: {result.describe()}")
        self.spec = spec
        self.result = result


class JobLost(JobFailed):
    """The job ended for a cause not its own (``RunResult.infrastructure``): an "error"."""


class JobRejected(Exception):
    """The job ran to the end, but a plugin on ``pytest_training_job_finished`` failed it
    (a quality gate, a regression against the baseline ...)."""

    def __init__(self, spec: JobSpec, stories: list[str]) -> None:
        super().__init__("; ".join(stories))
        self.spec = spec
        self.stories = stories


def executor_of(config: pytest.Config) -> Executor:
    """This process's executor, made on first use through ``pytest_training_make_executor``."""
    executor = config.stash.get(EXECUTOR_KEY, None)
    if executor is None:
        executor = config.hook.pytest_training_make_executor(
            config=config, settings=settings_of(config))
        if executor is None:  # pragma: no cover - the plugin's own implementation answers
            raise RuntimeError("no plugin returned an executor")
        config.stash[EXECUTOR_KEY] = executor
    return executor


def made_executor(config: pytest.Config) -> Executor | None:
    """This process's executor if one was made, else None (makes none)."""
    return config.stash.get(EXECUTOR_KEY, None)


def close_executor(config: pytest.Config) -> None:
    """Close this process's executor, if one was made (kills whatever still runs)."""
    executor = config.stash.get(EXECUTOR_KEY, None)
    if executor is not None:
        del config.stash[EXECUTOR_KEY]
        executor.close()


class TrainingFile(pytest.File):
    """A training script file; its items are the jobs that run it."""

    def __init__(self, *, specs: list[JobSpec], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.specs = specs

    def collect(self) -> Iterator[TrainingItem]:
        """One item per job of this script."""
        for spec in self.specs:
            yield TrainingItem.from_parent(self, name=spec.id, spec=spec)


class TrainingRoot(pytest.Directory):
    """Every job of a training-only session, collected in one step.

    Discovery has already found the scripts, so pytest does not walk the tree again and makes
    no node per folder or file: the items hang directly under the rootdir, keeping the node
    ids a walk would give (``src/x/train_als.py::als``) and, for ``-k``, the folder and file
    names on the way.
    """

    def __init__(self, *, specs: Mapping[Path, list[JobSpec]], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.specs = specs

    def collect(self) -> Iterator[TrainingItem]:
        """One item per job, in the specs' order (by script path, then job id)."""
        for specs in self.specs.values():
            for spec in specs:
                yield TrainingItem.from_parent(
                    self, name=spec.id, spec=spec, path=spec.script,
                    nodeid=f"{spec.relpath}::{spec.id}",
                )


def check_timeout(value: Any, source: str) -> float | None:
    """A timeout in seconds (None: none) from ``source``; ``pytest.UsageError`` for one that
    is not a finite number >= 0 (``inf`` and ``nan`` included)."""
    if value in (None, ""):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise pytest.UsageError(MSG_BAD_TIMEOUT.format(value=value, source=source)) from None
    if isinstance(value, bool) or not math.isfinite(number) or number < 0:
        raise pytest.UsageError(MSG_BAD_TIMEOUT.format(value=value, source=source))
    return number


def _marker_timeout(item: pytest.Item) -> float | None:
    marker = item.get_closest_marker("timeout")
    if marker is None:
        return None
    value = marker.kwargs.get("timeout", marker.args[0] if marker.args else None)
    return check_timeout(value, f"the timeout marker of {item.nodeid}")


def _float_or_none(value: Any, source: str) -> float | None:
    """A number of seconds; None for no value or a word that is no number (pytest-timeout
    itself names those); ``pytest.UsageError`` for ``inf``, ``nan`` or a negative number."""
    try:
        float(value)
    except (TypeError, ValueError):
        return None
    return check_timeout(value, source)


class TrainingItem(pytest.Item):
    """One training job: runs the script through the executor and reads its metrics."""

    def __init__(self, *, spec: JobSpec, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.spec = spec
        # `-k` matches the folder and file names of the script, as for a walked test file
        self.extra_keyword_matches.update(p for p in spec.relpath.split("/") if p)
        self.run_result: RunResult | None = None
        self.metrics: results.JobMetrics | None = None
        self.job_result: results.JobResult | None = None
        self.skip: results.JobSkip | None = None
        self.document: dict[str, Any] | None = None
        self.attempts: list[attempts_mod.Attempt] = []
        self._skip_asked = False
        for marker in spec.markers:
            self.add_marker(marker)
        if spec.timeout is not None and self.config.pluginmanager.hasplugin("timeout"):
            # pytest-timeout's precedence then holds: marker > --timeout > ini
            self.add_marker(pytest.mark.timeout(spec.timeout))

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name} ({self.spec.relpath})>"

    # -- what the executor gets --------------------------------------------------------------
    def timeout(self) -> float | None:
        """The job's timeout in seconds (None: none).  With pytest-timeout loaded, its own
        precedence: marker (the job table's ``timeout`` becomes one) > ``--timeout`` > the
        ``timeout`` ini key > ``PYTEST_TIMEOUT``; without it, the job table's ``timeout``."""
        if TIMEOUT_KEY in self.stash:
            timeout = check_timeout(self.stash[TIMEOUT_KEY], "pytest-timeout")
        elif self.config.pluginmanager.hasplugin("timeout"):
            timeout = _marker_timeout(self)
            if timeout is None:
                timeout = _float_or_none(self.config.getoption("timeout", None), "--timeout")
            if timeout is None:
                try:
                    timeout = _float_or_none(self.config.getini("timeout"), "the timeout ini key")
                except ValueError:
                    timeout = None
            if timeout is None:
                timeout = _float_or_none(os.environ.get("PYTEST_TIMEOUT"), "PYTEST_TIMEOUT")
        else:
            timeout = self.spec.timeout
        return timeout if timeout else None

    def job_env(self) -> dict[str, str]:
        """What the job adds to its environment: the thread budget (and GPUs) of this worker
        or, on a cluster, of its ``cpus``; ``TRAINING_*``; the job table's env (wins).

        On a cluster the GPUs are Ray's to give: a job that asks for some sees those Ray
        assigned it (Ray sets ``CUDA_VISIBLE_DEVICES`` on the node); a job that asks for none
        sees none (``CUDA_VISIBLE_DEVICES=""``), so that it cannot take a GPU Ray gave another
        job on the same node."""
        if self.spec.settings.cluster:
            env = budget.thread_env(self.spec.cluster_threads)
            if not self.spec.resources.get("gpus"):
                env["CUDA_VISIBLE_DEVICES"] = ""
        else:
            env = budget.job_environment(self.config, self.spec.id)
        env["TRAINING_OUTPUT_DIR"] = str(self.spec.output_dir)
        env["TRAINING_JOB_ID"] = self.spec.id
        env["TRAINING_ATTEMPT"] = "1"
        env.update(self.spec.env)
        return env

    def job_run(self) -> JobRun:
        """The job as the executor sees it."""
        spec = self.spec
        return JobRun(
            id=spec.id, argv=list(spec.argv), cwd=self.config.rootpath, env=self.job_env(),
            output_dir=spec.output_dir, log_path=spec.log_path, timeout=self.timeout(),
            resources=spec.resources,
        )

    def skip_decision(self) -> results.JobSkip | None:
        """Whether a plugin skips this job (asked once; the Ray executor asks before it
        submits every job at once)."""
        if not self._skip_asked:
            self._skip_asked = True
            self.skip = self.config.hook.pytest_training_skip_job(item=self)
        return self.skip

    def runnable(self) -> bool:
        """Whether the job would start now (no missing required flag, not skipped)."""
        return not self.spec.missing_required and self.skip_decision() is None

    # -- the run ------------------------------------------------------------------------------
    def runtest(self) -> None:
        """Run the job; raise ``JobNotStarted`` / ``JobFailed`` / ``JobRejected`` on failure,
        ``pytest.skip`` when a plugin skips it."""
        spec = self.spec
        if spec.missing_required:
            raise JobNotStarted(spec.missing_message())
        hook = self.config.hook
        skip = self.skip_decision()
        if skip is not None:
            self.metrics = skip.metrics
            # the last run's metrics.json (it is not set aside for a skipped job)
            self.document = results.read_json_object(spec.output_dir / results.METRICS_FILE)
            self.user_properties.extend(results.junit_properties(skip.metrics))
            pytest.skip(skip.reason)
        executor = executor_of(self.config)
        try:
            check_timeout(self.timeout(), "the job's timeout")
        except pytest.UsageError as exc:
            raise JobNotStarted(f"training job {spec.id!r} was not started: {exc}") from None
        self._prepare_output()
        hook.pytest_training_job_started(item=self)
        self.attempts = attempts_mod.run_attempts(
            executor, self.job_run(), attempts_mod.retries_of(self.config, spec.config),
            resume_args(spec.parser, spec.output_dir, spec.argv))
        result = self.run_result = self.attempts[-1].result
        self._attach_log(result.log_path)
        self.metrics = results.read_metrics(spec.output_dir) if result.ok else None
        if self.metrics is not None:
            self.document = self.metrics.document
        else:  # a failed run's own metrics.json (an earlier one was set aside), for the record
            self.document = results.read_json_object(spec.output_dir / results.METRICS_FILE)
        outcome = self.job_result = results.JobResult(spec=spec, run=result, metrics=self.metrics)
        outcome.properties.extend(results.junit_properties(self.metrics))
        outcome.properties.extend(attempts_mod.junit_properties(self.attempts))
        hook.pytest_training_job_finished(item=self, result=outcome)
        self.user_properties.extend(outcome.properties)
        if not result.ok:
            raise (JobLost if result.infrastructure else JobFailed)(spec, result)
        if outcome.failures:
            raise JobRejected(spec, outcome.failures)
        if self.metrics is not None and self.metrics.error:
            self.warn(pytest.PytestWarning(f"training job {spec.id!r}: {self.metrics.error}"))

    def _prepare_output(self) -> None:
        """Make the job's folder (below the output folder, never through a link); an earlier
        run's metrics.json becomes metrics.previous.json, so that a run that ends without
        writing one is never reported (or read by a user) with old figures.  A link at the
        folder, the log or metrics.json is ``JobNotStarted``, naming the link and its target."""
        spec = self.spec
        metrics = spec.output_dir / results.METRICS_FILE
        try:
            safefs.make_dir(spec.output_dir, spec.settings.output_dir)
            safefs.refuse_link(spec.log_path)
            safefs.rename_no_follow(metrics, metrics.with_name(PREVIOUS_METRICS_FILE))
        except safefs.UnsafePath as exc:
            raise JobNotStarted(MSG_UNSAFE_OUTPUT.format(id=spec.id, why=exc.strerror)) from None

    def _attach_log(self, log_path: Path, limit: int = LOG_ATTACH_BYTES) -> None:
        """The log's last ``limit`` bytes as a report section (a link is not followed)."""
        try:
            fd = safefs.open_no_follow(Path(log_path), os.O_RDONLY)
        except OSError:
            return
        with os.fdopen(fd, "rb") as fh:
            size = os.fstat(fd).st_size
            fh.seek(max(0, size - limit))
            data = fh.read(limit)
        if size > limit:
            data = b"[... first %d bytes omitted ...]\n" % (size - limit) + data
        self.add_report_section("call", "train.log", data.decode("utf-8", errors="replace"))

    # -- what the user reads --------------------------------------------------------------------
    def story(self, excinfo: pytest.ExceptionInfo[BaseException]) -> str | None:
        """The one-line reason a job failed, or None for an unexpected error."""
        value = excinfo.value
        if isinstance(value, JobNotStarted):
            return str(value)
        if isinstance(value, JobFailed):
            return attempts_mod.failure_story(value.spec.id, self.attempts or [
                attempts_mod.Attempt(1, value.result, value.result.log_path)],
                safefs.no_space(value.spec.output_dir))
        if isinstance(value, JobRejected):
            return "; ".join(value.stories)
        return None

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None) -> Any:
        """The story of a failed job: how it ended, how long, the command, the log tail."""
        story = self.story(excinfo)
        if story is None:
            return super().repr_failure(excinfo)
        if isinstance(excinfo.value, JobNotStarted):
            return story
        spec = self.spec
        lines = [story, f"command: {spec.command}", f"log: {spec.log_path}"]
        if isinstance(excinfo.value, JobRejected):
            lines.append(f"outputs kept in {spec.output_dir}")
            return "\n".join(lines)
        tail = log_tail(spec.log_path, LOG_TAIL_LINES)
        if tail:
            lines.append(f"last {LOG_TAIL_LINES} lines of the log:")
            lines += ["    " + line for line in tail.splitlines()]
        else:
            lines.append("(the log is empty)")
        return "\n".join(lines)

    def lost(self, excinfo: pytest.ExceptionInfo[BaseException] | None) -> bool:
        """Whether the job ended for a cause not its own (an error: the session's makereport)."""
        return excinfo is not None and isinstance(excinfo.value, JobLost)

    def reportinfo(self) -> tuple[Path, int, str]:
        """Names the job for humans."""
        return self.path, 0, f"training job {self.spec.id} ({self.spec.relpath})"

    def record(self, excinfo: pytest.ExceptionInfo[BaseException] | None = None
               ) -> results.JobRecord:
        """What is known of the job now, for the summary and the hooks (its JSON-able form
        travels on the report under xdist)."""
        record = spec_record(self.spec, self.nodeid)
        run = self.run_result
        if run is not None:
            attempts_mod.record_run(record, run, self.attempts)
        if self.metrics is not None:
            record.metrics = dict(self.metrics.metrics)
            record.primary_metric = self.metrics.primary_metric
            record.synthetic = self.metrics.synthetic
            record.metrics_error = self.metrics.error
        record.document = self.document
        if self.job_result is not None:
            record.extra = dict(self.job_result.extra)
            record.notes = list(self.job_result.notes)
        if self.skip is not None:
            record.story = self.skip.reason
            record.extra = {**record.extra, **self.skip.extra}
        if excinfo is not None:
            story = self.story(excinfo)
            if story is not None:
                record.story = story
        return record


def spec_record(spec: JobSpec, nodeid: str) -> results.JobRecord:
    """The record of a job before it ran (also of one that never runs)."""
    return results.JobRecord(
        id=spec.id, nodeid=nodeid, script=spec.relpath, argv=list(spec.argv),
        resolved_argv=resolved_argv(spec), output_dir=str(spec.output_dir),
        log=str(spec.log_path),
        table=spec.config.to_json(spec.settings.rootdir) if spec.config else {},
        job=spec.job, cell=spec.cell or None, params=dict(spec.params),
    )
