"""MLflow tracking: ``--mlflow [URI]`` logs every job of a session as a run.

A session is a parent run; each job that ran is a child run under it, logged on the controller
in ``pytest_training_job_report`` (once per job, after it ends).  Jobs and xdist workers never
touch the tracking store, so SQLite sees one writer and ``-n`` / ``--ray`` need nothing extra.

Where runs go (first that applies): ``--mlflow URI``; ``MLFLOW_TRACKING_URI``; ini
``training_mlflow_uri``; ``sqlite:///<output-dir>/mlflow.db`` with artifacts in
``<output-dir>/mlartifacts``.  A non-empty ini ``training_mlflow_uri`` turns tracking on without
the option (``default`` names the embedded SQLite database).  The experiment is ini
``training_mlflow_experiment``, else ``MLFLOW_EXPERIMENT_NAME``, else the project's name
(pyproject ``[project] name``, else the rootdir's name).

A child run holds:

* params: the job's resolved command-line flags (read from its argv) and its job-table settings
  (``job.<key>``);
* metrics: metrics.json ``metrics``, each candidate model's metrics as ``models.<name>.<metric>``,
  and ``duration_s``;
* tags: ``job``, ``script``, ``git_commit``, ``data_source``, ``data_sha256``, ``synthetic``,
  ``node``, ``outcome``, ``story`` (plus MLflow's own run name, parent and source tags);
* artifacts: ``train.log``, ``metrics.json``, ``manifest.json``, ``figures/`` and the model files;
  a scikit-learn model (a fitted estimator in a joblib/pickle file, alone or as the ``model`` of
  a bundle dict, or a dict of named estimators) is also logged as an MLflow model with an input
  signature, so that ``mlflow.pyfunc.load_model`` serves it.

Passed jobs are FINISHED runs; failed ones FAILED; timed-out and interrupted ones KILLED; all keep
their log.  Skipped jobs (e.g. unchanged) are not logged again.

mlflow is imported only when tracking is on, on one background thread that does every MLflow
call in order (set-up, one job after another, the end of the parent run), so the import and the
logging overlap the training; the session waits for it at the end.  A store that cannot be
reached or written is a warning in the summary (the results on disk are untouched), or, with
``--mlflow-strict``, a usage error before anything runs (exit 4) and a failed session when a job
cannot be logged.
"""

from __future__ import annotations

import json
import math
import os
import queue
import re
import shlex
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import pytest

from training_plugin import results
from training_plugin.features import history
from training_plugin.jobs import output_dir_of
from training_plugin.pytest_compat import is_controller

NAME = "training_plugin.tracking"
#: ``--mlflow`` without a value, or ``training_mlflow_uri = default``: the embedded store.
DEFAULT = "default"
DB_FILE = "mlflow.db"
ARTIFACTS_DIR = "mlartifacts"
#: Files of a job's output directory logged as artifacts when present.
ARTIFACT_FILES = ("train.log", "metrics.json", "manifest.json")
FIGURES_DIR = "figures"
#: Model files (top level of the output directory) logged as artifacts.
MODEL_SUFFIXES = (".joblib", ".pkl", ".pickle", ".pt", ".pth", ".onnx", ".keras", ".h5")
#: Of those, the ones that may hold a scikit-learn model.
PICKLE_SUFFIXES = (".joblib", ".pkl", ".pickle")
#: An optional file of a few input rows (CSV with a header) for the model's signature.
EXAMPLE_FILE = "input_example.csv"
#: MLflow's limits on one value (params 6000 characters, tags 8000).
MAX_PARAM = 6000
MAX_TAG = 8000
HEALTH_TIMEOUT_S = 5.0
#: A ``filterwarnings`` line: deprecation notices raised inside mlflow and its libraries.
QUIET_WARNINGS = r"ignore::DeprecationWarning:(mlflow|sqlalchemy|alembic|skops)(\.|$)"

HELP_MLFLOW = (
    "log every job as an MLflow run (the session is the parent run); URI: a tracking URI "
    "(sqlite:///path/mlflow.db, http://host:5000, ...); without one: MLFLOW_TRACKING_URI, "
    "ini training_mlflow_uri, else sqlite:///<output-dir>/mlflow.db"
)
HELP_STRICT = (
    "with --mlflow: a tracking store that cannot be reached or written is an error "
    "(exit 4 before anything runs; a job that cannot be logged fails the session) "
    "instead of a warning"
)
MSG_BAD_URI = (
    "--mlflow {value}: not a tracking URI; give sqlite:///path/to/mlflow.db, "
    "http://host:port, another URI MLflow accepts, or 'default'{hint}"
)
MSG_NOT_INSTALLED = (
    "--mlflow needs the mlflow package, which is not installed in this environment; "
    "install it with: pip install 'aimedres[mlflow]' (or pip install mlflow)"
)
MSG_STRICT = (
    "--mlflow-strict: cannot track to {uri}: {reason}; start the tracking server or fix the "
    "URI / database path, or drop --mlflow-strict to train with a warning instead"
)
MSG_UNAVAILABLE = (
    "mlflow tracking is off for this session: cannot track to {uri}: {reason}; the results "
    "are on disk in {output_dir} (add --mlflow-strict to make this an error)"
)


def add_options(group: pytest.OptionGroup, parser: pytest.Parser) -> None:
    """``--mlflow [URI]`` and ``--mlflow-strict``."""
    group.addoption("--mlflow", dest="training_mlflow", nargs="?", const=DEFAULT, default=None,
                    metavar="URI", help=HELP_MLFLOW)
    group.addoption("--mlflow-strict", dest="training_mlflow_strict", action="store_true",
                    default=False, help=HELP_STRICT)


def add_ini(parser: pytest.Parser) -> None:
    """``training_mlflow_uri`` and ``training_mlflow_experiment``."""
    parser.addini("training_mlflow_uri", "MLflow tracking URI; non-empty turns tracking on as "
                  "--mlflow does ('default': sqlite:///<output-dir>/mlflow.db)", default="")
    parser.addini("training_mlflow_experiment", "MLflow experiment of the runs (default: "
                  "MLFLOW_EXPERIMENT_NAME, else the project's name)", default="")


# ---------------------------------------------------------------------------------------------
# settings (no mlflow import)
# ---------------------------------------------------------------------------------------------
def _ini(config: pytest.Config, name: str) -> str:
    try:
        return str(config.getini(name) or "").strip()
    except ValueError:  # not registered (the feature's ini keys missing): treat as unset
        return ""


def normalize_uri(value: str, output_dir: Path, *, source: str = "--mlflow") -> str:
    """A tracking URI from what the user gave; raises ``pytest.UsageError`` for a value that is
    none (e.g. a test path that ``--mlflow`` took as its value)."""
    value = value.strip()
    if value == DEFAULT:
        return f"sqlite:///{output_dir / DB_FILE}"
    if "://" in value or value.startswith(("databricks", "file:")):
        return value
    if value.endswith((".db", ".sqlite", ".sqlite3")):
        return f"sqlite:///{Path(os.path.abspath(os.path.expanduser(value)))}"
    hint = ""
    if os.path.exists(value) or "/" in value or value.endswith(".py"):
        hint = (f"; {value!r} looks like a path to collect: write --mlflow after it, or "
                "--mlflow=default")
    raise pytest.UsageError(MSG_BAD_URI.format(value=value, hint=hint).replace(
        "--mlflow", source, 1))


def resolve_uri(config: pytest.Config) -> str | None:
    """The session's tracking URI, or None when tracking is off."""
    option = config.getoption("training_mlflow", None)
    ini = _ini(config, "training_mlflow_uri")
    if option is None and not ini:
        return None
    output_dir = output_dir_of(config)
    if option is not None and option != DEFAULT:
        return normalize_uri(option, output_dir)
    env = os.environ.get("MLFLOW_TRACKING_URI", "").strip()
    if env:
        return normalize_uri(env, output_dir, source="MLFLOW_TRACKING_URI")
    if ini:
        return normalize_uri(ini, output_dir, source="training_mlflow_uri")
    return normalize_uri(DEFAULT, output_dir)


def sqlite_path(uri: str) -> Path | None:
    """The database file of a ``sqlite:///`` URI (relative to the working directory, as
    SQLAlchemy reads it), or None for another store."""
    if not uri.startswith("sqlite:///"):
        return None
    rest = uri[len("sqlite:///"):].split("?", 1)[0]
    if not rest or rest == ":memory:":
        return None
    return Path(os.path.abspath(rest))


def artifact_location(uri: str) -> str | None:
    """Where a new experiment keeps its artifacts: ``mlartifacts`` beside a SQLite database;
    None (the store's default) for anything else."""
    db = sqlite_path(uri)
    return (db.parent / ARTIFACTS_DIR).as_uri() if db is not None else None


def experiment_name(config: pytest.Config) -> str:
    """ini ``training_mlflow_experiment``, ``MLFLOW_EXPERIMENT_NAME``, pyproject ``[project]
    name``, the rootdir's name."""
    name = _ini(config, "training_mlflow_experiment")
    if name:
        return name
    env = os.environ.get("MLFLOW_EXPERIMENT_NAME", "").strip()
    if env:
        return env
    pyproject = Path(config.rootpath) / "pyproject.toml"
    try:
        import tomllib

        project = tomllib.loads(pyproject.read_text(encoding="utf-8")).get("project", {})
        if isinstance(project, dict) and isinstance(project.get("name"), str):
            if project["name"].strip():
                return project["name"].strip()
    except (OSError, ValueError, UnicodeDecodeError):
        pass
    return Path(config.rootpath).name


# ---------------------------------------------------------------------------------------------
# what a job's run holds (no mlflow import)
# ---------------------------------------------------------------------------------------------
_NUMBER_RE = re.compile(r"^-\d|^-\.\d")
_KEY_RE = re.compile(r"[^A-Za-z0-9_\-. /]")


def _key(name: str) -> str:
    """A param / metric / tag key MLflow accepts."""
    return _KEY_RE.sub("_", name) or "_"


def _clip(value: Any, limit: int) -> str:
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def flag_params(argv: list[str]) -> dict[str, str]:
    """``--name value`` / ``--name=value`` / ``--switch`` pairs of a job's argv (after the
    interpreter and the script); a flag's value is every word up to the next flag (argparse's
    ``nargs='+'``); words before any flag are ``arg0``, ``arg1`` ..."""
    params: dict[str, str] = {}
    words = list(argv[2:])
    name: str | None = None
    values: list[str] = []
    positional = 0

    def flush() -> None:
        if name is not None:
            value = " ".join(values) if values else "true"
            key = _key(name)
            params[key] = f"{params[key]} {value}" if key in params else value

    for word in words:
        if word.startswith("-") and len(word) > 1 and not _NUMBER_RE.match(word):
            flush()
            flag, eq, value = word.lstrip("-").partition("=")
            name, values = flag, ([value] if eq else [])
        elif name is not None:
            values.append(word)
        else:
            params[f"arg{positional}"] = word
            positional += 1
    flush()
    return params


def table_params(config_entry: Any) -> dict[str, str]:
    """A job-table entry (``JobConfig``) as ``job.<key>`` params (unset keys left out)."""
    if config_entry is None:
        return {}
    out: dict[str, str] = {}
    for key in ("script", "args", "timeout", "markers", "tolerance", "inputs", "cpus", "gpus",
                "memory"):
        value = getattr(config_entry, key, None)
        if value in (None, (), [], {}):
            continue
        if key == "args":
            value = shlex.join(value)
        elif isinstance(value, (tuple, list)):
            value = ",".join(str(v) for v in value)
        elif isinstance(value, Path):
            value = str(value)
        out[f"job.{key}"] = value if isinstance(value, str) else _clip(value, MAX_PARAM)
    for key in ("env", "min", "max", "direction", "resources"):
        for name, value in dict(getattr(config_entry, key, None) or {}).items():
            out[_key(f"job.{key}.{name}")] = str(value)
    return out


def _finite(value: Any) -> bool:
    return (not isinstance(value, bool) and isinstance(value, (int, float))
            and math.isfinite(value))


def job_metrics(doc: dict[str, Any], record: dict[str, Any]) -> dict[str, float]:
    """metrics.json ``metrics`` (else the record's), ``models.<name>.<metric>``,
    ``duration_s``."""
    metrics: dict[str, float] = {}
    source = doc.get("metrics") if isinstance(doc.get("metrics"), dict) else None
    for name, value in (source or record.get("metrics") or {}).items():
        if _finite(value):
            metrics[_key(str(name))] = float(value)
    models = doc.get("models")
    if isinstance(models, dict):
        for model, values in models.items():
            if not isinstance(values, dict):
                continue
            for name, value in values.items():
                if _finite(value):
                    metrics[_key(f"models.{model}.{name}")] = float(value)
    if _finite(record.get("duration_s")):
        metrics["duration_s"] = float(record["duration_s"])
    return metrics


def run_status(record: dict[str, Any]) -> str:
    """FINISHED (passed), KILLED (timed out, interrupted), FAILED (anything else)."""
    outcome = record.get("outcome")
    if outcome == "passed":
        return "FINISHED"
    said = f"{record.get('result') or ''} {record.get('story') or ''}"
    if outcome == "interrupted" or "timed out" in said or "interrupted" in said:
        return "KILLED"
    return "FAILED"


def job_tags(record: dict[str, Any], doc: dict[str, Any], manifest: dict[str, Any],
             commit: str | None) -> dict[str, str]:
    """The child run's tags."""
    data = doc.get("data") if isinstance(doc.get("data"), dict) else {}
    if not data and isinstance(manifest.get("data"), dict):
        data = manifest["data"]
    git = manifest.get("git")
    job_commit = git.get("commit") if isinstance(git, dict) else None
    commit = job_commit if isinstance(job_commit, str) and job_commit else commit
    synthetic = record.get("synthetic")
    if synthetic is None and isinstance(data.get("synthetic"), bool):
        synthetic = data["synthetic"]
    tags = {
        "mlflow.runName": str(record.get("id")),
        "mlflow.source.name": str(record.get("script") or ""),
        "mlflow.source.type": "JOB",
        "job": str(record.get("id")),
        "script": str(record.get("script") or ""),
        "nodeid": str(record.get("nodeid") or ""),
        "command": shlex.join(record.get("command") or []),
        "outcome": str(record.get("outcome")),
        "synthetic": "unknown" if synthetic is None else str(bool(synthetic)).lower(),
        "node": str(record.get("node") or ""),
    }
    if commit:
        tags["git_commit"] = commit
        tags["mlflow.source.git.commit"] = commit
    if data.get("source") is not None:
        tags["data_source"] = str(data["source"])
    if data.get("sha256") is not None:
        tags["data_sha256"] = str(data["sha256"])
    if record.get("story"):
        tags["story"] = str(record["story"])
    if record.get("result") and record.get("result") != "ok":
        tags["result"] = str(record["result"])
    if doc.get("primary_metric"):
        tags["primary_metric"] = str(doc["primary_metric"])
    if doc.get("best_model"):
        tags["best_model"] = str(doc["best_model"])
    return {k: _clip(v, MAX_TAG) for k, v in tags.items() if v != ""}


# ---------------------------------------------------------------------------------------------
# scikit-learn models (imported only when a job wrote a model file)
# ---------------------------------------------------------------------------------------------
def _is_estimator(obj: Any) -> bool:
    import sys

    base = sys.modules.get("sklearn.base")
    return base is not None and isinstance(obj, base.BaseEstimator) and hasattr(obj, "predict")


def sklearn_models(obj: Any) -> list[tuple[str, Any, list[str] | None]]:
    """(name, estimator, feature names or None) of what a model file holds: an estimator, a
    bundle dict with ``model`` (and ``features``), or a dict of named estimators."""
    if _is_estimator(obj):
        return [("model", obj, None)]
    if not isinstance(obj, dict):
        return []
    if _is_estimator(obj.get("model")):
        features = obj.get("features")
        names = [str(f) for f in features] if isinstance(features, (list, tuple)) else None
        return [("model", obj["model"], names)]
    return [(f"model-{re.sub(r'[^A-Za-z0-9_-]', '_', str(k))}", v, None)
            for k, v in obj.items() if _is_estimator(v)]


def _steps(est: Any) -> Iterable[Any]:
    yield est
    for _, step in getattr(est, "steps", None) or ():
        yield from _steps(step)


def column_types(model: Any) -> dict[str, str]:
    """Input columns an encoder inside the model treats as categories, with their MLflow type
    ("string" or "boolean"), read from the fitted ``ColumnTransformer``(s)."""
    types: dict[str, str] = {}
    for step in _steps(model):
        for _, transformer, columns in getattr(step, "transformers_", None) or ():
            if not isinstance(columns, (list, tuple)) or isinstance(transformer, str):
                continue
            for inner in _steps(transformer):
                categories = getattr(inner, "categories_", None)
                if categories is None:
                    continue
                for column, values in zip(columns, categories):
                    kind = getattr(getattr(values, "dtype", None), "kind", "O")
                    if kind in "OUS":
                        types[str(column)] = "string"
                    elif kind == "b":
                        types[str(column)] = "boolean"
    return types


def model_signature(model: Any, features: list[str] | None, out_dir: Path) -> Any:
    """The input signature: inferred from ``input_example.csv`` when the job wrote one, else
    from the model's feature names (encoded columns typed, the rest of any type), else a
    float tensor of its ``n_features_in_``; None when nothing says."""
    from mlflow.models.signature import ModelSignature, infer_signature
    from mlflow.types.schema import AnyType, ColSpec, Schema, TensorSpec

    example = out_dir / EXAMPLE_FILE
    if example.is_file():
        try:
            import pandas as pd

            rows = pd.read_csv(example, nrows=5)
            return infer_signature(rows, model.predict(rows))
        except Exception:  # noqa: BLE001 - fall back to the model's own names
            pass
    names = list(features or [])
    if not names:
        fitted = getattr(model, "feature_names_in_", None)
        names = [str(n) for n in fitted] if fitted is not None else []
    if names:
        types = column_types(model)
        return ModelSignature(inputs=Schema(
            [ColSpec(types[n], n) if n in types else ColSpec(AnyType(), n) for n in names]
        ))
    width = getattr(model, "n_features_in_", None)
    if isinstance(width, int) and width > 0:
        import numpy as np

        return ModelSignature(inputs=Schema([TensorSpec(np.dtype("float64"), (-1, width))]))
    return None


# ---------------------------------------------------------------------------------------------
# the plugin object
# ---------------------------------------------------------------------------------------------
class Tracker:
    """Logs the session and its jobs to MLflow on one background thread (controller only)."""

    def __init__(self, config: pytest.Config, uri: str, experiment: str, strict: bool) -> None:
        self.config = config
        self.uri = uri
        self.experiment = experiment
        self.strict = strict
        self.output_dir = output_dir_of(config)
        # the same session id and commit as the run history's lines
        facts = history.session_facts(config)
        self.session_id = facts["session"]
        self.started_ms = int(time.time() * 1000)
        self.client: Any = None
        self.experiment_id: str | None = None
        self.parent_id: str | None = None
        self.commit: str | None = None
        self.unavailable: str | None = None  # why tracking stopped (set-up failed)
        self.problems: list[str] = []  # jobs that could not be logged, and why
        self.logged: list[str] = []  # job ids logged
        self.outcomes: dict[str, int] = {}
        self.pending: dict[str, dict[str, Any]] = {}  # started, no final report yet
        self.active = False
        self.ended = False  # the parent run's end is queued
        self._queue: queue.Queue[Callable[[], None] | None] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._table: Any = None

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
        self.commit = history.session_facts(self.config)["commit"]
        config = self.config
        tags = {
            "mlflow.runName": f"training session {time.strftime('%Y-%m-%d %H:%M:%S')}",
            "mlflow.source.name": "pytest -p training_plugin",
            "mlflow.source.type": "LOCAL",
            "session": self.session_id,
            "command": _clip(shlex.join(["pytest", *config.invocation_params.args]), MAX_TAG),
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
            Param(k, _clip(str(v), MAX_PARAM)) for k, v in params.items() if v is not None
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
    def _job_table(self) -> dict[str, Any]:
        if self._table is None:
            from training_plugin import jobs

            try:
                self._table = jobs.load_job_table(Path(self.config.rootpath))
            except pytest.UsageError:
                self._table = {}
        return self._table

    def log_job(self, record: dict[str, Any], ended_ms: int) -> None:
        """One child run for one job (on the worker thread)."""
        if self.client is None:
            return
        job = str(record.get("id"))
        try:
            self._log_job(record, ended_ms)
            self.logged.append(job)
        except Exception as exc:  # noqa: BLE001 - a job that cannot be logged is reported
            self.problems.append(f"job {job!r} was not logged to mlflow: "
                                 f"{type(exc).__name__}: {exc}")

    def _log_job(self, record: dict[str, Any], ended_ms: int) -> None:
        from mlflow.entities import Metric, Param, RunTag

        client = self.client
        out = Path(str(record.get("output_dir") or ""))
        doc = results.read_json_object(out / "metrics.json") or {}
        manifest = results.read_json_object(out / "manifest.json") or {}
        job = str(record.get("id"))
        params = flag_params(list(record.get("command") or []))
        params.update(table_params(self._job_table().get(job)))
        metrics = job_metrics(doc, record)
        tags = job_tags(record, doc, manifest, self.commit)
        tags["mlflow.parentRunId"] = str(self.parent_id)
        tags["session"] = self.session_id
        duration_ms = int(float(record.get("duration_s") or 0.0) * 1000)
        run = client.create_run(self.experiment_id, start_time=ended_ms - duration_ms,
                                tags={"mlflow.parentRunId": str(self.parent_id),
                                      "mlflow.runName": job})
        run_id = run.info.run_id
        status = run_status(record)
        try:
            param_list = [Param(k, _clip(str(v), MAX_PARAM)) for k, v in params.items()]
            metric_list = [Metric(k, v, ended_ms, 0) for k, v in metrics.items()]
            tag_list = [RunTag(k, v) for k, v in tags.items()]
            for i in range(0, len(param_list), 100):
                client.log_batch(run_id, params=param_list[i:i + 100])
            for i in range(0, len(tag_list), 100):
                client.log_batch(run_id, tags=tag_list[i:i + 100])
            for i in range(0, len(metric_list), 1000):
                client.log_batch(run_id, metrics=metric_list[i:i + 1000])
            log = Path(str(record.get("log") or out / "train.log"))
            if log.is_file():
                client.log_artifact(run_id, str(log))
            # a job that did not pass may have left an earlier run's files: only its own count
            since = (ended_ms - duration_ms - 2000) / 1000 if status != "FINISHED" else 0.0

            def own(path: Path) -> bool:
                try:
                    return path.is_file() and path.stat().st_mtime >= since
                except OSError:
                    return False

            for name in ARTIFACT_FILES:
                path = out / name
                if own(path) and path != log:
                    client.log_artifact(run_id, str(path))
            figures = out / FIGURES_DIR
            if figures.is_dir() and any(own(p) for p in figures.iterdir()):
                client.log_artifacts(run_id, str(figures), FIGURES_DIR)
            model_files = sorted(p for p in out.glob("*") if own(p)
                                 and p.suffix.lower() in MODEL_SUFFIXES) if out.is_dir() else []
            for path in model_files:
                client.log_artifact(run_id, str(path))
            logged = self._log_models(run_id, model_files, out) if status == "FINISHED" else []
            client.set_tag(run_id, "model", ",".join(logged) if logged
                           else ",".join(p.name for p in model_files) or "none")
        except BaseException:
            client.set_terminated(run_id, "FAILED", end_time=ended_ms)
            raise
        client.set_terminated(run_id, status, end_time=ended_ms)
        self.outcomes[str(record.get("outcome"))] = self.outcomes.get(
            str(record.get("outcome")), 0) + 1

    def _log_models(self, run_id: str, files: list[Path], out: Path) -> list[str]:
        """Every scikit-learn model in ``files`` as an MLflow model; returns their URIs."""
        uris: list[str] = []
        for path in files:
            if path.suffix.lower() not in PICKLE_SUFFIXES:
                continue
            try:
                import joblib

                obj = joblib.load(path)
            except Exception:  # noqa: BLE001 - kept as a file (already logged)
                continue
            for name, model, features in sklearn_models(obj):
                uris.append(self._log_sklearn(run_id, name, model, features, out))
        return uris

    def _log_sklearn(self, run_id: str, name: str, model: Any, features: list[str] | None,
                     out: Path) -> str:
        """Save the model in MLflow's format (skops) and log it as the run's artifact
        ``name`` (``runs:/<run id>/<name>``) and as a logged model of the experiment.  Only the
        client is used: mlflow's fluent API would put MLFLOW_TRACKING_URI / MLFLOW_EXPERIMENT_ID
        into this process's environment, which the jobs inherit."""
        import shutil
        import tempfile

        import mlflow.sklearn
        from mlflow.exceptions import MlflowException

        signature = model_signature(model, features, out)
        requirements = mlflow.sklearn.get_default_pip_requirements(include_skops=True)
        with tempfile.TemporaryDirectory(prefix="training-mlflow-") as tmp:
            path = os.path.join(tmp, name)
            try:
                mlflow.sklearn.save_model(model, path, signature=signature,
                                          pip_requirements=requirements)
            except MlflowException as exc:
                if "untrusted" not in str(exc).lower():
                    raise
                import skops.io

                # the job's own classes: trusted, as the job that wrote them
                trusted = skops.io.get_untrusted_types(data=skops.io.dumps(model))
                shutil.rmtree(path, ignore_errors=True)
                mlflow.sklearn.save_model(model, path, signature=signature,
                                          pip_requirements=requirements,
                                          skops_trusted_types=trusted)
            self.client.log_artifacts(run_id, path, name)
            uri = f"runs:/{run_id}/{name}"
            try:  # MLflow 3's model entity (the experiment's "Models" tab); best effort
                from mlflow.entities import LoggedModelOutput

                logged = self.client.create_logged_model(self.experiment_id, name=name,
                                                         source_run_id=run_id,
                                                         model_type="sklearn")
                self.client.log_model_artifacts(logged.model_id, path)
                self.client.finalize_logged_model(logged.model_id, "READY")
                self.client.log_outputs(run_id, [LoggedModelOutput(logged.model_id, 0)])
                uri += f" (models:/{logged.model_id})"
            except Exception:  # noqa: BLE001 - the run's artifact is the model that matters
                pass
        return uri

    # -- end of the session -----------------------------------------------------------------
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
        self.client.log_batch(self.parent_id,
                              metrics=[Metric(k, v, now, 0) for k, v in counts.items()])
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

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        """Remember jobs that started (their log is known from the setup report), to log the
        ones an interruption leaves without a final report."""
        from training_plugin.session import REPORT_LOG_ATTR

        log = getattr(report, REPORT_LOG_ATTR, None)
        if self.active and log and report.when == "setup" and report.passed:
            script, _, job = report.nodeid.rpartition("::")
            self.pending[report.nodeid] = {
                "id": job, "script": script, "nodeid": report.nodeid, "log": str(log),
                "output_dir": str(Path(str(log)).parent), "command": [],
                "started": time.time(),
            }

    def pytest_training_job_report(self, config: pytest.Config, report: pytest.TestReport,
                                   record: dict[str, Any]) -> None:
        """Queue the job's child run (skipped jobs are not logged)."""
        self.pending.pop(report.nodeid, None)
        if not self.active or record.get("outcome") == "skipped":
            return
        snapshot = json.loads(json.dumps(record, default=str))
        ended = int(time.time() * 1000)
        self._submit(lambda: self.log_job(snapshot, ended))

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        """Log interrupted jobs as KILLED runs, end the parent run, wait for the thread."""
        if not self.active:
            return
        ended = int(time.time() * 1000)
        for record in self.pending.values():
            record = dict(record, outcome="interrupted",
                          duration_s=round(time.time() - record.pop("started"), 3),
                          story="interrupted: the session ended while the job ran")
            self._submit(lambda r=record: self.log_job(r, ended))
        self.pending.clear()
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


class _Refused:
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


def configure(config: pytest.Config) -> None:
    """On the controller, when tracking is on: register the ``Tracker``."""
    if not is_controller(config):
        return  # xdist workers never touch the tracking store
    try:
        uri = resolve_uri(config)
    except pytest.UsageError as exc:
        config.pluginmanager.register(_Refused(exc), NAME)
        return
    if uri is None:
        return
    import importlib.util

    if importlib.util.find_spec("mlflow") is None:
        config.pluginmanager.register(_Refused(pytest.UsageError(MSG_NOT_INSTALLED)), NAME)
        return
    strict = bool(config.getoption("training_mlflow_strict", False))
    # mlflow's and SQLAlchemy's deprecation notices (from the tracking thread, while a job or
    # the session's end is in pytest's warning capture) are not the user's to act on
    config.addinivalue_line("filterwarnings", QUIET_WARNINGS)
    config.pluginmanager.register(Tracker(config, uri, experiment_name(config), strict), NAME)
