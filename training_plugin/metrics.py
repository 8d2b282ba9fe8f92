"""Metric names shared by every feature: which way is better, and dotted keys into
metrics.json.

A plain key (``roc_auc``) is a flat metric under ``metrics`` in metrics.json; a dotted key
(``selection.roc_auc``, ``data.noise_floor.rmse``) is a path from the top of metrics.json
through its nested objects.  Higher is better for the names in ``HIGHER``, lower for those in
``LOWER`` (a dotted key goes by its last part); a job table's ``direction`` names others and
wins.  Tolerances say how far a metric may move the wrong way: absolute (``0.02``) or
relative (``"5%"`` of the reference).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

import pytest

HIGHER = frozenset({
    "roc_auc", "auc", "pr_auc", "average_precision", "accuracy", "balanced_accuracy", "f1",
    "f1_macro", "f1_micro", "f1_weighted", "precision", "recall", "sensitivity",
    "specificity", "ppv", "npv", "r2", "dice", "iou", "mcc", "kappa", "c_index",
})
LOWER = frozenset({"rmse", "mse", "mae", "mape", "brier", "log_loss", "loss", "ece", "error",
                   "calibration_error"})
_TOL_RE = re.compile(r"^\s*(\d+(?:\.\d+)?(?:[eE]-?\d+)?)\s*(%?)\s*$")


def is_number(value: Any) -> bool:
    """A finite int or float (not a bool)."""
    return (not isinstance(value, bool) and isinstance(value, (int, float))
            and math.isfinite(value))


def lookup(doc: Mapping[str, Any], key: str) -> tuple[float | None, str | None]:
    """(value, None) or (None, why not) for a metric key of a metrics.json document."""
    raw = doc.get("metrics")
    flat = raw if isinstance(raw, dict) else {}
    if key in flat:
        value = flat[key]
        if is_number(value):
            return float(value), None
        return None, f"{key} in metrics.json is not a number ({value!r})"
    if "." not in key:
        have = ", ".join(sorted(flat)) or "no metrics"
        return None, f"{key} not in metrics.json; it has: {have}"
    node: Any = doc
    walked: list[str] = []
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            where = ".".join(walked) or "metrics.json"
            have = ", ".join(sorted(node)) if isinstance(node, dict) else "no keys"
            return None, f"{key} not in metrics.json; {where} has: {have or 'no keys'}"
        node = node[part]
        walked.append(part)
    if not is_number(node):
        return None, f"{key} in metrics.json is not a number ({node!r})"
    return float(node), None


def direction(key: str, overrides: Mapping[str, str] | None = None) -> str | None:
    """"higher" / "lower" (which way is better) or None when unknown; ``overrides`` is a job
    table's ``direction`` (metric -> "higher" | "lower"), which wins."""
    table = dict(overrides or {})
    last = key.rsplit(".", 1)[-1]
    if key in table:
        return table[key]
    if last in table:
        return table[last]
    if last in HIGHER:
        return "higher"
    if last in LOWER:
        return "lower"
    return None


def bound_lines(lines: list[str], ini: str) -> dict[str, float]:
    """``metric = number`` lines of an ini key (``training_min``, ``training_max``) as a dict;
    a usage error naming the key for a line that is not."""
    bounds: dict[str, float] = {}
    for line in lines:
        name, sep, value = line.partition("=")
        try:
            number = float(value)
        except ValueError:
            number = math.nan
        if not sep or not name.strip() or not math.isfinite(number):
            raise pytest.UsageError(
                f"{ini}: {line.strip()!r} is not 'metric = number' (e.g. roc_auc = 0.7)"
            )
        bounds[name.strip()] = number
    return bounds


def fmt(value: float) -> str:
    """A metric value in a story: four significant digits."""
    return f"{value:.4g}"


def parse_tolerance(text: Any) -> tuple[str, float] | None:
    """``("abs", 0.02)`` from 0.02 / "0.02", ``("rel", 0.05)`` from "5%"; None if unreadable."""
    if isinstance(text, bool):
        return None
    if isinstance(text, (int, float)):
        return ("abs", float(text)) if text >= 0 else None
    match = _TOL_RE.match(str(text))
    if not match:
        return None
    value = float(match.group(1))
    return ("rel", value / 100) if match.group(2) else ("abs", value)


def tolerance_lines(config: pytest.Config) -> dict[str, tuple[str, float]]:
    tolerances: dict[str, tuple[str, float]] = {}
    for line in config.getini("training_tolerance"):
        name, sep, value = line.rpartition("=")
        tol = parse_tolerance(value)
        if tol is None or (sep and not name.strip()):
            raise pytest.UsageError(
                f"training_tolerance: {line.strip()!r} is not 'TOL' or 'metric = TOL' "
                f"(TOL absolute like 0.02 or relative like 5%)"
            )
        tolerances[name.strip() if sep else "*"] = tol
    return tolerances


def table_tolerances(config: Any) -> dict[str, tuple[str, float]]:
    raw = getattr(config, "tolerance", None)
    if raw is None:
        return {}
    if isinstance(raw, dict):
        return {k: t for k, v in raw.items() if (t := parse_tolerance(v)) is not None}
    tol = parse_tolerance(raw)
    return {"*": tol} if tol is not None else {}


def describe_tolerance(tol: tuple[str, float], reference: float) -> str:
    """"0.02" or "5% (0.0175)"."""
    kind, value = tol
    if kind == "rel":
        return f"{value * 100:g}% ({value * abs(reference):.4g})"
    return f"{value:g}"


def tolerance_amount(tol: tuple[str, float], reference: float) -> float:
    """The allowed change in the metric's units."""
    kind, value = tol
    return value * abs(reference) if kind == "rel" else value


def max_regression(text: str) -> tuple[str, tuple[str, float]]:
    """An argparse type for ``--max-regression METRIC=TOL`` or ``TOL`` (a usage error else)."""
    name, sep, value = text.rpartition("=")
    name = name.strip() if sep else "*"
    tol = parse_tolerance(value)
    if tol is None or (sep and not name):
        raise pytest.UsageError(
            f"--max-regression expects METRIC=TOL or TOL (TOL absolute like 0.02 or relative "
            f"like 5%), got {text!r}; e.g. --max-regression roc_auc=0.02"
        )
    return name, tol
