"""scikit-learn models of a job as MLflow models, with an input signature, so that
``mlflow.pyfunc.load_model`` serves them.  mlflow, joblib and scikit-learn are imported only
when a job wrote a model file."""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

#: Of the model files, the ones that may hold a scikit-learn model.
PICKLE_SUFFIXES = (".joblib", ".pkl", ".pickle")
#: An optional file of a few input rows (CSV with a header) for the model's signature.
EXAMPLE_FILE = "input_example.csv"


def _is_estimator(obj: Any) -> bool:
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


def log_models(client: Any, experiment_id: str | None, run_id: str, files: list[Path],
               out: Path) -> list[str]:
    """Every scikit-learn model in ``files`` as an MLflow model of run ``run_id``; returns
    their URIs."""
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
            uris.append(log_sklearn(client, experiment_id, run_id, name, model, features, out))
    return uris


def log_sklearn(client: Any, experiment_id: str | None, run_id: str, name: str, model: Any,
                features: list[str] | None, out: Path) -> str:
    """Save the model in MLflow's format (skops) and log it as the run's artifact ``name``
    (``runs:/<run id>/<name>``) and as a logged model of the experiment.  Only the client is
    used: mlflow's fluent API would put MLFLOW_TRACKING_URI / MLFLOW_EXPERIMENT_ID into this
    process's environment, which the jobs inherit."""
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
        client.log_artifacts(run_id, path, name)
        uri = f"runs:/{run_id}/{name}"
        try:  # MLflow 3's model entity (the experiment's "Models" tab); best effort
            from mlflow.entities import LoggedModelOutput

            logged = client.create_logged_model(experiment_id, name=name, source_run_id=run_id,
                                                model_type="sklearn")
            client.log_model_artifacts(logged.model_id, path)
            client.finalize_logged_model(logged.model_id, "READY")
            client.log_outputs(run_id, [LoggedModelOutput(logged.model_id, 0)])
            uri += f" (models:/{logged.model_id})"
        except Exception:  # noqa: BLE001 - the run's artifact is the model that matters
            pass
    return uri
