"""``Tracker``: the plugin object that logs a session and its jobs to MLflow (controller only).

Every MLflow call runs in order on one background thread (set-up, one job after another, the
end of the parent run), so the import of mlflow and the logging overlap the training; the
session waits for the thread at its end.
"""

from __future__ import annotations

import os
import queue
import shlex
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from training_plugin import provenance, results
from training_plugin.executors.base import session_cost
from training_plugin.features.tracking.files import JobFiles
from training_plugin.features.tracking.mapping import (
    MAX_PARAM, MAX_TAG, cell_fields, clip, flag_params, job_metrics, job_tags,
    run_status, table_params,
)
from training_plugin.features.tracking.models import log_models
from training_plugin.features.tracking.uri import artifact_location, sqlite_path
from training_plugin.options import settings_of
from training_plugin.results import JobRecord

#: The name the tracking plugin object is registered under.
NAME = "training_plugin.tracking"
HEALTH_TIMEOUT_S = 5.0

MSG_STRICT = (
    "--mlflow-strict: cannot track to {uri}: {reason}; start the tracking server or fix the "
    "URI / database path, or drop --mlflow-strict to train with a warning instead"
)
MSG_UNAVAILABLE = (
    "mlflow tracking is off for this session: cannot track to {uri}: {reason}; the results "
    "are on disk in {output_dir} (add --mlflow-strict to make this an error)"
)


class Tracker:
    """Logs the session and its jobs to MLflow on one background thread (controller only)."""

    def __init__(self, config: pytest.Config, uri: str, experiment: str, strict: bool) -> None:
        self.config = config
        self.uri = uri
        self.experiment = experiment
        self.strict = strict
        self.output_dir = settings_of(config).output_dir
        # the same session id and commit as the run history's lines
        facts = provenance.session_facts(config)
        self.session_id = facts["session"]
        self.started_ms = int(time.time() * 1000)
        self.client: Any = None
        self.experiment_id: str | None = None
        self.parent_id: str | None = None
        self.commit: str | None = None
        self.unavailable: str | None = None  # why tracking stopped (set-up failed)
        self.problems: list[str] = []  # jobs that could not be logged, and why
        self.notes: list[str] = []  # files left out of a job's run (links), and why
        self.logged: list[str] = []  # job ids logged
        self.outcomes: dict[str, int] = {}
        self.costed: list[JobRecord] = []  # the jobs logged: the session's cost comes from them
        self.job_runs: dict[str, str] = {}  # a swept job's id -> its run (its cells' parent)
        self.failed_jobs: set[str] = set()  # swept jobs with a cell that did not pass
        self.active = False
        self.ended = False  # the parent run's end is queued
        self._queue: queue.Queue[Callable[[], None] | None] = queue.Queue()
        self._thread: threading.Thread | None = None

    # -- the worker thread ----------------------------------------------------------------------
    def _work(self) -> None:
        while True:
            task = self._queue.get()
            if task is None:
                return
            try:
                task()
            except BaseException as exc:  # noqa: BLE001 - never kill the thread
                self.problems.append(f"mlflow: {type(exc).__name__}: {exc}")

    def _submit(self, task: Callable[[], None]) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._work, name="training-mlflow",
                                            daemon=True)
            self._thread.start()
        self._queue.put(task)

    def _drain(self) -> None:
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join()
            self._thread = None

    # -- set-up -----------------------------------------------------------------------------
    def _check_reachable(self) -> None:
        if not self.uri.startswith(("http://", "https://")):
            db = sqlite_path(self.uri)
            if db is not None:
                db.parent.mkdir(parents=True, exist_ok=True)
                if not os.access(db.parent, os.W_OK) or (db.exists()
                                                         and not os.access(db, os.W_OK)):
                    raise PermissionError(f"{db} is not writable")
            return
        url = self.uri.rstrip("/") + "/health"
        try:
            with urllib.request.urlopen(url, timeout=HEALTH_TIMEOUT_S) as response:
                response.read(64)
        except urllib.error.HTTPError as exc:
            if exc.code >= 500:
                raise ConnectionError(f"{url} answered HTTP {exc.code}") from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise ConnectionError(f"no tracking server answers at {url} ({reason})") from None

    def setup(self) -> None:
        """Import mlflow, open the store, find or create the experiment, start the parent
        run.  Raises on failure."""
        self._check_reachable()
        import logging
        import warnings

        # mlflow's and SQLAlchemy's deprecation notices are not the user's to act on
        for category in (DeprecationWarning, FutureWarning, PendingDeprecationWarning):
            warnings.filterwarnings("ignore", category=category,
                                    module=r"(mlflow|sqlalchemy|alembic|skops)(\.|$)")
        from mlflow import MlflowClient

        logging.getLogger("mlflow").setLevel(logging.WARNING)
        logging.getLogger("alembic").setLevel(logging.WARNING)
        client = MlflowClient(tracking_uri=self.uri)
        exp = client.get_experiment_by_name(self.experiment)
        if exp is None:
            experiment_id = client.create_experiment(
                self.experiment, artifact_location=artifact_location(self.uri))
        else:
            experiment_id = exp.experiment_id
            if exp.lifecycle_stage == "deleted":
                client.restore_experiment(experiment_id)
        self.commit = provenance.session_facts(self.config)["commit"]
        config = self.config
        tags = {
            "mlflow.runName": f"training session {time.strftime('%Y-%m-%d %H:%M:%S')}",
            "mlflow.source.name": "pytest -p training_plugin",
            "mlflow.source.type": "LOCAL",
            "session": self.session_id,
            "command": clip(shlex.join(["pytest", *config.invocation_params.args]), MAX_TAG),
        }
        if self.commit:
            tags["git_commit"] = tags["mlflow.source.git.commit"] = self.commit
        run = client.create_run(experiment_id, start_time=self.started_ms, tags=tags)
        params = {
            "epochs": config.getoption("epochs", None),
            "folds": config.getoption("folds", None),
            "seed": config.getoption("seed", None),
            "output_dir": str(self.output_dir),
            "train_args": " ".join(f"{k}={v}" for k, v in config.getoption("train_args", None)
                                   or ()) or None,
            "numprocesses": config.getoption("numprocesses", None),
            "ray": config.getoption("training_ray", None),
        }
        from mlflow.entities import Param

        client.log_batch(run.info.run_id, params=[
            Param(k, clip(str(v), MAX_PARAM)) for k, v in params.items() if v is not None
        ])
        self.client, self.experiment_id, self.parent_id = client, experiment_id, run.info.run_id

    def _setup_or_stop(self) -> None:
        try:
            self.setup()
        except Exception as exc:  # noqa: BLE001 - any failure means: no tracking
            self.unavailable = f"{type(exc).__name__}: {exc}"

    def _prewarm(self) -> None:
        """Import what logging a scikit-learn model needs (seconds: skops walks every
        estimator) while the first jobs still train."""
        import importlib.util

        if self.client is None or importlib.util.find_spec("sklearn") is None:
            return
        try:
            import mlflow.sklearn  # noqa: F401
            import skops.io  # noqa: F401
        except ImportError:
            pass

    # -- one job ----------------------------------------------------------------------------
    def log_job(self, record: JobRecord, ended_ms: int) -> None:
        """One child run for one job (on the worker thread)."""
        if self.client is None:
            return
        try:
            self._log_job(record, ended_ms)
            self.logged.append(record.id)
        except Exception as exc:  # noqa: BLE001 - a job that cannot be logged is reported
            self.problems.append(f"job {record.id!r} was not logged to mlflow: "
                                 f"{type(exc).__name__}: {exc}")

    def _log_job(self, record: JobRecord, ended_ms: int) -> None:
        from mlflow.entities import Metric, Param, RunTag

        client = self.client
        out = Path(record.output_dir)
        files = JobFiles(out)  # only plain files of the job's folder: links are never followed
        manifest = (results.read_json_object(out / "manifest.json")
                    if files.plain(out / "manifest.json") else None) or {}
        params = flag_params(list(record.argv))
        params.update(table_params(record.table))
        metrics = job_metrics(record)
        tags = job_tags(record, manifest, self.commit)
        parent = self._job_run(record, ended_ms) if record.cell else self.parent_id
        extra_params, extra_tags = cell_fields(record)
        params.update(extra_params)
        tags.update(extra_tags)
        tags["mlflow.parentRunId"] = str(parent)
        tags["session"] = self.session_id
        duration_ms = int(float(record.duration_s or 0.0) * 1000)
        run = client.create_run(self.experiment_id, start_time=ended_ms - duration_ms,
                                tags={"mlflow.parentRunId": str(parent),
                                      "mlflow.runName": record.id})
        run_id = run.info.run_id
        status = run_status(record)
        try:
            param_list = [Param(k, clip(str(v), MAX_PARAM)) for k, v in params.items()]
            metric_list = [Metric(k, v, ended_ms, 0) for k, v in metrics.items()]
            tag_list = [RunTag(k, v) for k, v in tags.items()]
            for i in range(0, len(param_list), 100):
                client.log_batch(run_id, params=param_list[i:i + 100])
            for i in range(0, len(tag_list), 100):
                client.log_batch(run_id, tags=tag_list[i:i + 100])
            for i in range(0, len(metric_list), 1000):
                client.log_batch(run_id, metrics=metric_list[i:i + 1000])
            log = Path(record.log) if record.log else out / "train.log"
            # a job that did not pass may have left an earlier run's files: only its own count
            since = (ended_ms - duration_ms - 2000) / 1000 if status != "FINISHED" else 0.0
            for path, folder in files.artifacts(log, since):
                client.log_artifact(run_id, str(path), folder)
            model_files = files.models(since)
            for path in model_files:
                client.log_artifact(run_id, str(path))
            self.notes += [f"job {record.id!r}: {note}" for note in files.notes]
            logged = (log_models(client, self.experiment_id, run_id, model_files, out)
                      if status == "FINISHED" else [])
            client.set_tag(run_id, "model", ",".join(logged) if logged
                           else ",".join(p.name for p in model_files) or "none")
        except BaseException:
            client.set_terminated(run_id, "FAILED", end_time=ended_ms)
            raise
        client.set_terminated(run_id, status, end_time=ended_ms)
        self.outcomes[record.outcome] = self.outcomes.get(record.outcome, 0) + 1
        self.costed.append(record)

    # -- end of the session -----------------------------------------------------------------
    def _job_run(self, record: JobRecord, start_ms: int) -> str:
        """The run of a swept job (a child of the session's, the parent of its cells')."""
        job = str(record.job or record.id)
        if record.outcome != "passed":
            self.failed_jobs.add(job)
        if job not in self.job_runs:
            run = self.client.create_run(self.experiment_id, start_time=start_ms, tags={
                "mlflow.parentRunId": str(self.parent_id), "mlflow.runName": job, "job": job,
                "level": "job", "script": str(record.script or ""), "session": self.session_id})
            self.job_runs[job] = run.info.run_id
        return self.job_runs[job]

    def finish(self, exitstatus: int) -> None:
        """End the parent run (on the worker thread)."""
        if self.client is None:
            return
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        status = ("KILLED" if exitstatus == pytest.ExitCode.INTERRUPTED
                  else "FINISHED" if exitstatus in (0, pytest.ExitCode.NO_TESTS_COLLECTED)
                  else "FAILED")
        counts = {f"jobs_{k}": float(v) for k, v in self.outcomes.items()}
        counts["jobs_logged"] = float(len(self.logged))
        total = session_cost(self.costed)
        if total is not None:  # CPU seconds of every attempt added up, the largest peak
            counts["cost_cpu_s"] = total.cpu_s
            if total.peak_bytes is not None:
                counts["cost_peak_bytes"] = total.peak_bytes
            if total.unmeasured:  # attempts whose CPU time cost_cpu_s leaves out
                counts["cost_unmeasured_attempts"] = float(total.unmeasured)
        self.client.log_batch(self.parent_id,
                              metrics=[Metric(k, v, now, 0) for k, v in counts.items()])
        for job, run_id in self.job_runs.items():
            self.client.set_terminated(run_id, "FAILED" if job in self.failed_jobs
                                       else "FINISHED", end_time=now)
        self.client.set_terminated(self.parent_id, status, end_time=now)

    # -- hooks --------------------------------------------------------------------------------
    def pytest_sessionstart(self, session: pytest.Session) -> None:
        """Start tracking (on the worker thread; at once and strictly with --mlflow-strict)."""
        if self.config.getoption("collectonly", False):
            return
        self.active = True
        if self.strict:
            try:
                self.setup()
            except Exception as exc:  # noqa: BLE001
                raise pytest.UsageError(MSG_STRICT.format(
                    uri=self.uri, reason=f"{type(exc).__name__}: {exc}")) from None
        else:
            self._submit(self._setup_or_stop)
        self._submit(self._prewarm)

    def _queue_job(self, record: JobRecord) -> None:
        snapshot = JobRecord.from_json(record.to_json())  # a deep copy, for the thread
        ended = int(time.time() * 1000)
        self._submit(lambda: self.log_job(snapshot, ended))

    def pytest_training_job_report(self, config: pytest.Config, report: pytest.TestReport,
                                   record: JobRecord) -> None:
        """Queue the job's child run (skipped jobs are not logged)."""
        if self.active and record.outcome != "skipped":
            self._queue_job(record)

    def pytest_training_job_interrupted(self, config: pytest.Config, record: JobRecord) -> None:
        """Queue a KILLED child run for a job that the end of the session interrupted."""
        if self.active:
            self._queue_job(record)

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        """End the parent run, wait for the thread."""
        if not self.active:
            return
        self._submit(lambda: self.finish(int(session.exitstatus)))
        self.ended = True
        self._drain()
        if self.strict and self.problems and session.exitstatus == pytest.ExitCode.OK:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        """Where the runs went, or why they did not."""
        if not self.active:
            return
        tr = terminalreporter
        tr.write_sep("-", "mlflow")
        if self.unavailable is not None:
            tr.write_line("WARNING " + MSG_UNAVAILABLE.format(
                uri=self.uri, reason=self.unavailable, output_dir=self.output_dir), yellow=True)
            return
        tr.write_line(f"mlflow: {len(self.logged)} job run(s) logged to {self.uri} "
                      f"(experiment {self.experiment!r}, parent run {self.parent_id})")
        if self.uri.startswith("sqlite:"):
            tr.write_line(f"view them: mlflow ui --backend-store-uri {self.uri}")
        for problem in self.problems:
            tr.write_line(("ERROR " if self.strict else "WARNING ") + problem,
                          red=self.strict, yellow=not self.strict)
        for note in self.notes:
            tr.write_line("note: " + note)

    def pytest_unconfigure(self, config: pytest.Config) -> None:
        """End the parent run if the session stopped before it finished (a plugin's usage
        error after tracking began: pytest then skips sessionfinish), so that it is not left
        RUNNING; stop the worker thread."""
        if self.active and not self.ended:
            self.ended = True
            self._submit(lambda: self.finish(int(pytest.ExitCode.USAGE_ERROR)))
        self._drain()
        if config.pluginmanager.get_plugin(NAME) is self:
            config.pluginmanager.unregister(self, NAME)


class Refused:
    """Raises a usage error at session start (so ``--help`` still works)."""

    def __init__(self, error: pytest.UsageError) -> None:
        self.error = error

    @pytest.hookimpl(tryfirst=True)
    def pytest_sessionstart(self, session: pytest.Session) -> None:
        """Refuse the session: exit 4 before anything runs."""
        raise self.error

    def pytest_unconfigure(self, config: pytest.Config) -> None:
        """Unregister."""
        if config.pluginmanager.get_plugin(NAME) is self:
            config.pluginmanager.unregister(self, NAME)
