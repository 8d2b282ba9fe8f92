"""Where the runs go: the tracking URI, its SQLite file and artifact folder, the experiment.

First that applies: ``--mlflow URI``; ``MLFLOW_TRACKING_URI``; ini ``training_mlflow_uri``;
``sqlite:///<output-dir>/mlflow.db`` with artifacts in ``<output-dir>/mlartifacts``.  The
experiment is ini ``training_mlflow_experiment``, else ``MLFLOW_EXPERIMENT_NAME``, else the
project's name (pyproject ``[project] name``, else the rootdir's name).  Nothing here imports
mlflow.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from training_plugin.options import settings_of

#: ``--mlflow`` without a value, or ``training_mlflow_uri = default``: the embedded store.
DEFAULT = "default"
DB_FILE = "mlflow.db"
ARTIFACTS_DIR = "mlartifacts"

MSG_BAD_URI = (
    "--mlflow {value}: not a tracking URI; give sqlite:///path/to/mlflow.db, "
    "http://host:port, another URI MLflow accepts, or 'default'{hint}"
)


def ini_value(config: pytest.Config, name: str) -> str:
    """An ini key's value, stripped ("" when unset or not registered)."""
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
    ini = ini_value(config, "training_mlflow_uri")
    if option is None and not ini:
        return None
    output_dir = settings_of(config).output_dir
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
    name = ini_value(config, "training_mlflow_experiment")
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
