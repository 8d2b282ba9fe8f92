"""MLflow tracking: ``--mlflow [URI]`` logs every job of a session as a run.

A session is a parent run; each job that ran is a child run under it, logged on the controller
from the job's ``JobRecord`` in ``pytest_training_job_report`` (once per job, after it ends)
and ``pytest_training_job_interrupted``.  Jobs and xdist workers never touch the tracking
store, so SQLite sees one writer and ``-n`` / ``--ray`` need nothing extra.

Where runs go: see ``uri`` (``--mlflow URI``, ``MLFLOW_TRACKING_URI``, ini
``training_mlflow_uri``, else ``sqlite:///<output-dir>/mlflow.db``).  A non-empty ini
``training_mlflow_uri`` turns tracking on without the option (``default`` names the embedded
SQLite database).

A child run holds (``mapping``):

* params: the job's resolved command-line flags (read from its argv) and its job-table settings
  (``job.<key>``);
* metrics: metrics.json ``metrics``, each candidate model's metrics as ``models.<name>.<metric>``,
  ``duration_s``, and what the job cost: ``cost_wall_s``, ``cost_cpu_s``, ``cost_peak_bytes``,
  ``cost_peak_mib``, ``cost_gpu_s`` (its last attempt's, where measured) and ``attempts``; the
  parent run gets the session's ``cost_cpu_s`` (added up) and ``cost_peak_bytes`` (the largest);
* tags: ``job``, ``script``, ``git_commit``, ``data_source``, ``data_sha256``, ``synthetic``,
  ``node``, ``outcome``, ``story`` (plus MLflow's own run name, parent and source tags);
* artifacts: ``train.log``, ``metrics.json``, ``manifest.json``, ``figures/`` and the model files;
  a scikit-learn model (a fitted estimator in a joblib/pickle file, alone or as the ``model`` of
  a bundle dict, or a dict of named estimators) is also logged as an MLflow model with an input
  signature (``models``), so that ``mlflow.pyfunc.load_model`` serves it.

Passed jobs are FINISHED runs; failed ones FAILED; timed-out and interrupted ones KILLED; all keep
their log.  Skipped jobs (e.g. unchanged) are not logged again.

mlflow is imported only when tracking is on, on the ``Tracker``'s background thread
(``tracker``).  A store that cannot be reached or written is a warning in the summary (the
results on disk are untouched), or, with ``--mlflow-strict``, a usage error before anything
runs (exit 4) and a failed session when a job cannot be logged.
"""

from __future__ import annotations

import importlib.util

import pytest

from training_plugin.features.tracking.tracker import NAME, Refused, Tracker
from training_plugin.features.tracking.uri import DEFAULT, experiment_name, resolve_uri
from training_plugin.options import training_group
from training_plugin.pytest_compat import is_controller

__all__ = ["NAME", "Tracker", "add_ini"]

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
MSG_NOT_INSTALLED = (
    "--mlflow needs the mlflow package, which is not installed in this environment; "
    "install it with: pip install 'aimedres[mlflow]' (or pip install mlflow)"
)


def add_ini(parser: pytest.Parser) -> None:
    """``training_mlflow_uri`` and ``training_mlflow_experiment``."""
    parser.addini("training_mlflow_uri", "MLflow tracking URI; non-empty turns tracking on as "
                  "--mlflow does ('default': sqlite:///<output-dir>/mlflow.db)", default="")
    parser.addini("training_mlflow_experiment", "MLflow experiment of the runs (default: "
                  "MLFLOW_EXPERIMENT_NAME, else the project's name)", default="")


def pytest_addoption(parser: pytest.Parser) -> None:
    """``--mlflow [URI]`` and ``--mlflow-strict`` (the "training" group), and the ini keys."""
    group = training_group(parser)
    group.addoption("--mlflow", dest="training_mlflow", nargs="?", const=DEFAULT, default=None,
                    metavar="URI", help=HELP_MLFLOW)
    group.addoption("--mlflow-strict", dest="training_mlflow_strict", action="store_true",
                    default=False, help=HELP_STRICT)
    add_ini(parser)


def pytest_configure(config: pytest.Config) -> None:
    """On the controller, when tracking is on: register the ``Tracker``."""
    if not is_controller(config):
        return  # xdist workers never touch the tracking store
    try:
        uri = resolve_uri(config)
    except pytest.UsageError as exc:
        config.pluginmanager.register(Refused(exc), NAME)
        return
    if uri is None:
        return
    if importlib.util.find_spec("mlflow") is None:
        config.pluginmanager.register(Refused(pytest.UsageError(MSG_NOT_INSTALLED)), NAME)
        return
    strict = bool(config.getoption("training_mlflow_strict", False))
    # mlflow's and SQLAlchemy's deprecation notices (from the tracking thread, while a job or
    # the session's end is in pytest's warning capture) are not the user's to act on
    config.addinivalue_line("filterwarnings", QUIET_WARNINGS)
    config.pluginmanager.register(Tracker(config, uri, experiment_name(config), strict), NAME)


def pytest_unconfigure(config: pytest.Config) -> None:
    """Unregister whatever tracking registered that is still there (the ``Tracker`` ends its
    parent run and unregisters itself first)."""
    plugin = config.pluginmanager.get_plugin(NAME)
    if plugin is not None:
        config.pluginmanager.unregister(plugin, NAME)
