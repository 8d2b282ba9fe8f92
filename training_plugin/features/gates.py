"""Quality gates and regressions against a baseline (or the last run).

Gates: the job table's ``min = { roc_auc = 0.88 }`` / ``max = { rmse = 0.35 }`` and the ini
defaults ``training_min`` / ``training_max`` (one ``metric = bound`` a line, for every job; the
job table wins per metric).  A value beyond its bound, a gated metric the job did not write, or
no metrics.json at all fails the item with a one-line story naming the job, the metric, the
value, the bound and where the bound is written.

Metric keys: a plain name (``roc_auc``) is a flat metric under ``metrics`` in metrics.json; a
dotted key (``selection.roc_auc``, ``data.noise_floor.rmse``) is a path from the top of
metrics.json through its nested objects.

Baselines: ``--save-baseline[=FILE]`` writes the metrics of the jobs that passed (merged into
FILE: other jobs' entries are kept) with the commit, the date and each job's resolved argv;
``--compare[=FILE|last]`` fails a job whose metric moved the wrong way by more than its
tolerance.  Without ``--compare`` every job is still shown against its last passing run
(summary notes, JUnit properties), without failing.

Direction: higher is better for roc_auc, accuracy, r2 ...; lower for rmse, mae, brier,
log_loss ...; the job table's ``direction`` names others (and wins).  Metrics with no known
direction are not compared.

Tolerance (absolute ``0.02`` or relative ``5%``), first found wins: ``--max-regression`` (a
metric's own, then ``--max-regression TOL`` for all) > the job table's ``tolerance`` (a
metric's own, then a plain number) > the ini ``training_tolerance`` (the same) > 0.  A change
of 1e-9 or less is never a regression (float noise).

A job whose resolved argv differs from the reference's is not compared: a note says so and
which arguments differ (see README, "argv differs").
"""

from __future__ import annotations

import json
import math
import os
import re
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from training_plugin import results, scheduler
from training_plugin.features import fingerprint, history
from training_plugin.pytest_compat import is_controller

NAME = "training_plugin.gates"
WORKERINPUT_REFERENCE = "training_plugin_gates_reference"
DEFAULT_BASELINE = "training-baseline.json"
BASELINE_VERSION = 1
#: A change this small is float noise, never a regression.
EPSILON = 1e-9

HIGHER = frozenset({
    "roc_auc", "auc", "pr_auc", "average_precision", "accuracy", "balanced_accuracy", "f1",
    "f1_macro", "f1_micro", "f1_weighted", "precision", "recall", "sensitivity",
    "specificity", "ppv", "npv", "r2", "dice", "iou", "mcc", "kappa", "c_index",
})
LOWER = frozenset({"rmse", "mse", "mae", "mape", "brier", "log_loss", "loss", "ece", "error",
                   "calibration_error"})

HELP_SAVE = ("write the metrics of the jobs that passed to a baseline file (default: ini "
             "training_baseline); entries of other jobs in it are kept")
HELP_COMPARE = ("fail a job whose metrics regressed beyond the tolerance against a baseline "
                "file (default: ini training_baseline) or against 'last', the last passing "
                "run in <output-dir>/history.jsonl")
HELP_TOL = ("regression tolerance: METRIC=TOL for one metric or TOL for all; TOL is absolute "
            "(0.02) or relative (5%%); repeatable; wins over the job table and ini")

_TOL_RE = re.compile(r"^\s*(\d+(?:\.\d+)?(?:[eE]-?\d+)?)\s*(%?)\s*$")


# ---------------------------------------------------------------------------------------------
# options
# ---------------------------------------------------------------------------------------------
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


def _max_regression(text: str) -> tuple[str, tuple[str, float]]:
    name, sep, value = text.rpartition("=")
    name = name.strip() if sep else "*"
    tol = parse_tolerance(value)
    if tol is None or (sep and not name):
        raise pytest.UsageError(
            f"--max-regression expects METRIC=TOL or TOL (TOL absolute like 0.02 or relative "
            f"like 5%), got {text!r}; e.g. --max-regression roc_auc=0.02"
        )
    return name, tol


def add_options(group: pytest.OptionGroup, parser: pytest.Parser) -> None:
    """``--save-baseline[=FILE]``, ``--compare[=FILE|last]``, ``--max-regression``."""
    group.addoption("--save-baseline", dest="training_save_baseline", nargs="?", const="",
                    default=None, metavar="FILE",
                    help=HELP_SAVE)
    group.addoption("--compare", dest="training_compare", nargs="?", const="", default=None,
                    metavar="FILE|last", help=HELP_COMPARE)
    group.addoption("--max-regression", dest="training_max_regression", action="append",
                    type=_max_regression, default=[], metavar="METRIC=TOL", help=HELP_TOL)


def add_ini(parser: pytest.Parser) -> None:
    """``training_baseline``, ``training_min``, ``training_max``, ``training_tolerance``."""
    parser.addini("training_baseline", "baseline file of --save-baseline / --compare "
                  "(relative to rootdir)", default=DEFAULT_BASELINE)
    parser.addini("training_min", "quality gate for every job: metric = lowest allowed value, "
                  "one a line (the job table's min wins per metric)", type="linelist", default=[])
    parser.addini("training_max", "quality gate for every job: metric = highest allowed "
                  "value, one a line (the job table's max wins per metric)", type="linelist",
                  default=[])
    parser.addini("training_tolerance", "regression tolerance: TOL for every metric or "
                  "metric = TOL, one a line; TOL absolute (0.02) or relative (5%)",
                  type="linelist", default=[])


# ---------------------------------------------------------------------------------------------
# metrics.json, keys, directions, tolerances
# ---------------------------------------------------------------------------------------------
def document_of(metrics: Any) -> tuple[dict[str, Any] | None, str | None]:
    """The job's whole metrics.json as the item read it (``JobMetrics.document``), or
    (None, why not)."""
    if metrics is None:
        return None, "the job wrote no metrics.json"
    if metrics.document is None:
        return None, metrics.error or "metrics.json cannot be read"
    return metrics.document, None


def _number(value: Any) -> bool:
    return (not isinstance(value, bool) and isinstance(value, (int, float))
            and math.isfinite(value))


def lookup(doc: dict[str, Any], key: str) -> tuple[float | None, str | None]:
    """(value, None) or (None, why not) for a metric key (see the module docstring)."""
    flat = doc.get("metrics") if isinstance(doc.get("metrics"), dict) else {}
    if key in flat:
        value = flat[key]
        if _number(value):
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
    if not _number(node):
        return None, f"{key} in metrics.json is not a number ({node!r})"
    return float(node), None


def direction(key: str, config: Any) -> str | None:
    """"higher" / "lower" (which way is better) or None when unknown."""
    table = dict(getattr(config, "direction", None) or {})
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


def _bound_lines(config: pytest.Config, ini: str) -> dict[str, float]:
    bounds: dict[str, float] = {}
    for line in config.getini(ini):
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


def _tolerance_lines(config: pytest.Config) -> dict[str, tuple[str, float]]:
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


def _table_tolerances(config: Any) -> dict[str, tuple[str, float]]:
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


def resolved_argv_of(command: list[str], output_dir: str) -> list[str]:
    """A recorded command (python, script, args) as :func:`fingerprint.resolved_argv`."""

    return fingerprint.resolved_argv(SimpleNamespace(argv=command, output_dir=output_dir))


def _short(commit: Any) -> str:
    return str(commit)[:7]


def _fmt(value: float) -> str:
    return f"{value:.4g}"


# ---------------------------------------------------------------------------------------------
# the plugin object
# ---------------------------------------------------------------------------------------------
class Gates:
    """Gates and comparisons (worker side), baseline file (controller)."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.controller = is_controller(config)
        self.rootdir = Path(config.rootpath)
        self.compare = config.getoption("training_compare", None)
        self.save = config.getoption("training_save_baseline", None)
        self.cli_tolerances = dict(config.getoption("training_max_regression", None) or [])
        self.error: pytest.UsageError | None = None
        self.saved: dict[str, dict[str, Any]] = {}
        self.saved_path: Path | None = None
        try:
            self.ini_min = _bound_lines(config, "training_min")
            self.ini_max = _bound_lines(config, "training_max")
            self.ini_tolerances = _tolerance_lines(config)
        except pytest.UsageError as exc:
            self.error = exc
            self.ini_min = self.ini_max = {}
            self.ini_tolerances = {}
        self.reference: dict[str, Any] = {}
        if self.controller:
            try:
                self.reference = self._load_reference()
            except pytest.UsageError as exc:
                self.error = self.error or exc
            config.stash[scheduler.EXPECTED_DURATIONS_KEY] = expected_durations(self.reference)
        else:
            self.reference = dict(config.workerinput.get(WORKERINPUT_REFERENCE) or {})

    # -- where things are ------------------------------------------------------------------------
    def baseline_path(self, value: str) -> Path:
        """A --save-baseline / --compare value ('' = the ini default), relative to rootdir."""
        if not value:
            value = str(self.config.getini("training_baseline")).strip() or DEFAULT_BASELINE
        return Path(os.path.normpath(self.rootdir / os.path.expanduser(value)))

    def _rel(self, path: Path) -> str:
        try:
            return path.relative_to(self.rootdir).as_posix()
        except ValueError:
            return str(path)

    def _ini_name(self) -> str:
        inipath = self.config.inipath
        return inipath.name if inipath else "ini"

    def _load_reference(self) -> dict[str, Any]:
        """What jobs are compared against: {"against", "source", "failing", "jobs"}."""
        if self.compare is None or self.compare == "last":
            jobs = {
                job: {"metrics": entry.get("metrics") or {}, "argv": entry.get("argv"),
                      "raw_argv": True, "commit": entry.get("commit"),
                      "time": entry.get("time")}
                for job, entry in history.last_passing(self.config).items()
            }
            return {"against": "last", "source": "history", "failing": self.compare == "last",
                    "jobs": jobs}
        path = self.baseline_path(self.compare)
        if not path.is_file():
            raise pytest.UsageError(
                f"--compare: no baseline file {path}; write one with "
                f"--save-baseline={self._rel(path)} (or name another with --compare=FILE, or "
                f"use --compare=last for the last run in the history)"
            )
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            raise pytest.UsageError(f"--compare: {path} is not a readable baseline file "
                                    f"({exc}); write it again with --save-baseline") from None
        if not isinstance(data, dict) or not isinstance(data.get("jobs"), dict):
            raise pytest.UsageError(f"--compare: {path} has no 'jobs' table; write it again "
                                    f"with --save-baseline={self._rel(path)}")
        return {"against": "baseline", "source": self._rel(path), "failing": True,
                "commit": data.get("commit"), "jobs": data["jobs"]}

    # -- hooks --------------------------------------------------------------------------------
    @pytest.hookimpl(tryfirst=True)
    def pytest_sessionstart(self, session: pytest.Session) -> None:
        """A bad ini value or a missing baseline file is a usage error before anything runs."""
        if self.error is not None and self.controller:
            raise self.error

    @pytest.hookimpl(optionalhook=True)
    def pytest_configure_node(self, node: Any) -> None:
        """xdist: the workers compare against the controller's reference."""
        node.workerinput[WORKERINPUT_REFERENCE] = self.reference

    def pytest_unconfigure(self, config: pytest.Config) -> None:
        """Unregister."""
        config.pluginmanager.unregister(self, NAME)

    def pytest_training_job_finished(self, item: Any, result: Any) -> None:
        """Check the gates, then compare with the reference."""
        if result.run is None or not result.run.ok:
            return
        spec = item.spec
        doc, problem = document_of(result.metrics)
        self._gates(spec, doc, problem, result)
        self._nested_for_baseline(spec, doc, result)
        if doc is not None:
            self._compare(spec, doc, result)

    def gates_of(self, spec: Any) -> list[tuple[str, str, float, str]]:
        """(min|max, key, bound, where it is written) for a job."""
        table = spec.config
        pyproject = f"pyproject.toml [tool.training_plugin.jobs.{spec.id}]"
        found: list[tuple[str, str, float, str]] = []
        for kind, ini_bounds in (("min", self.ini_min), ("max", self.ini_max)):
            own = dict(getattr(table, kind, None) or {})
            for key, bound in own.items():
                found.append((kind, key, bound, f"{pyproject} {kind}"))
            for key, bound in ini_bounds.items():
                if key not in own:
                    found.append((kind, key, bound, f"{self._ini_name()} training_{kind}"))
        return found

    def _gates(self, spec: Any, doc: dict[str, Any] | None, problem: str | None,
               result: Any) -> None:
        for kind, key, bound, where in self.gates_of(spec):
            word = "minimum" if kind == "min" else "maximum"
            if doc is None:
                result.fail(f"job {spec.id!r}: gate {key} {word} {_fmt(bound)} ({where}): "
                            f"{problem}")
                continue
            value, missing = lookup(doc, key)
            if value is None:
                result.fail(f"job {spec.id!r}: gate {key} {word} {_fmt(bound)} ({where}): "
                            f"{missing}")
            elif (kind == "min" and value < bound) or (kind == "max" and value > bound):
                side = "below" if kind == "min" else "above"
                result.fail(f"job {spec.id!r}: {key} {_fmt(value)} is {side} the {word} "
                            f"{_fmt(bound)} ({where})")
            else:
                result.properties.append((f"gate.{kind}.{key}", bound))

    def _configured_keys(self, spec: Any) -> set[str]:
        table = spec.config
        keys = {key for _, key, _, _ in self.gates_of(spec)}
        keys |= set(getattr(table, "direction", None) or {})
        keys |= set(_table_tolerances(table)) | set(self.cli_tolerances) | set(self.ini_tolerances)
        return {k for k in keys if "." in k}

    def _nested_for_baseline(self, spec: Any, doc: dict[str, Any] | None, result: Any) -> None:
        """Nested keys named in gates, directions or tolerances travel with the result, so
        that the baseline keeps them."""
        if doc is None:
            return
        nested = {}
        for key in sorted(self._configured_keys(spec)):
            value, _ = lookup(doc, key)
            if value is not None:
                nested[key] = value
        if nested:
            result.extra["nested_metrics"] = nested

    def tolerance(self, spec: Any, key: str) -> tuple[tuple[str, float], str]:
        """(tolerance, where it comes from) for a metric of a job."""
        levels = (
            (self.cli_tolerances, "--max-regression"),
            (_table_tolerances(spec.config), f"pyproject.toml [tool.training_plugin.jobs."
                                             f"{spec.id}] tolerance"),
            (self.ini_tolerances, f"{self._ini_name()} training_tolerance"),
        )
        for tolerances, where in levels:
            if key in tolerances:
                return tolerances[key], where
            if "*" in tolerances:
                return tolerances["*"], where
        return ("abs", 0.0), "default"

    def _compare(self, spec: Any, doc: dict[str, Any], result: Any) -> None:
        reference = self.reference
        ref = (reference.get("jobs") or {}).get(spec.id)
        against = reference.get("against", "last")
        failing = bool(reference.get("failing"))
        label = "the baseline" if against == "baseline" else "the last run"
        short = "baseline" if against == "baseline" else "last run"
        if not isinstance(ref, dict):
            if failing and against == "baseline":
                result.notes.append(f"not in {reference.get('source')}")
                result.properties.append(("comparison", f"job not in {reference.get('source')}"))
            return
        ref_argv = ref.get("argv") or []
        if ref.get("raw_argv"):
            ref_argv = resolved_argv_of(list(ref_argv), str(spec.output_dir))
        argv = fingerprint.resolved_argv(spec)
        if ref_argv != argv:
            why = "; ".join(fingerprint.describe_argv_change(ref_argv, argv))
            result.notes.append(f"not compared with {short}: argv differs ({why})")
            result.properties.append(("comparison", f"not compared with {short}: argv "
                                                    f"differs ({why})"))
            return
        commit = ref.get("commit") or reference.get("commit")
        source = reference.get("source")
        where = source if against == "baseline" else fingerprint.when(ref)
        if commit:
            where += f", commit {_short(commit)}"
        compared: dict[str, Any] = {}
        for key, old in sorted((ref.get("metrics") or {}).items()):
            way = direction(key, spec.config)
            if way is None or not _number(old):
                continue
            value, missing = lookup(doc, key)
            tol, tol_from = self.tolerance(spec, key)
            if value is None:
                if failing:
                    result.fail(f"job {spec.id!r}: {missing} ({label} has {key} "
                                f"{_fmt(old)}, {where})")
                continue
            delta = value - old
            allowed = tolerance_amount(tol, old) + EPSILON
            regressed = (-delta if way == "higher" else delta) > allowed
            compared[key] = {"value": value, "reference": old, "delta": delta,
                             "direction": way, "tolerance": describe_tolerance(tol, old),
                             "regressed": regressed}
            result.properties.append((f"{short.replace(' ', '_')}.{key}", old))
            result.properties.append((f"delta.{key}", round(delta, 10)))
            if regressed:
                side = "below" if way == "higher" else "above"
                story = (f"job {spec.id!r}: {key} {_fmt(value)} is {_fmt(abs(delta))} {side} "
                         f"{label} {_fmt(old)} ({where}); tolerance "
                         f"{describe_tolerance(tol, old)} ({tol_from})")
                if failing:
                    result.fail(story)
                else:
                    result.notes.append(f"{key} {delta:+.4g} vs {short}: beyond tolerance "
                                        f"{describe_tolerance(tol, old)}")
        if not compared:
            return
        result.extra["comparison"] = {"against": against, "source": source, "commit": commit,
                                      "metrics": compared}
        primary = doc.get("primary_metric")
        shown = primary if primary in compared else next(iter(compared))
        entry = compared[shown]
        mark = " REGRESSED" if entry["regressed"] and failing else ""
        result.notes.append(f"{shown} {entry['delta']:+.4g} vs {short}{mark}")

    # -- the baseline file (controller) -----------------------------------------------------------
    def pytest_training_job_report(self, config: pytest.Config, report: pytest.TestReport,
                                   record: dict[str, Any]) -> None:
        """``--save-baseline``: keep the metrics of every job that passed."""
        if self.save is None or record.get("outcome") != "passed":
            return
        extra = record.get("extra") or {}
        metrics = dict(record.get("metrics") or {})
        metrics.update(extra.get("nested_metrics") or {})
        if not metrics:
            return
        fp = extra.get("fingerprint") or {}
        facts = history.session_facts(config)
        self.saved[str(record.get("id"))] = {
            "argv": resolved_argv_of(list(record.get("command") or []),
                                     str(record.get("output_dir"))),
            "nodeid": report.nodeid,
            "duration_s": record.get("duration_s"),
            "metrics": metrics,
            "primary_metric": record.get("primary_metric"),
            "commit": facts["commit"],
            "date": history.now_iso(),
            "fingerprint": fp.get("sha256") if isinstance(fp, dict) else None,
        }

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        """Write the baseline file (merged: entries of jobs not run this time are kept)."""
        if self.save is None or not self.controller or not self.saved:
            return
        path = self.baseline_path(self.save)
        data: dict[str, Any] = {}
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError):
            data = {}
        jobs = data.get("jobs") if isinstance(data, dict) and isinstance(data.get("jobs"), dict) \
            else {}
        jobs.update(self.saved)
        facts = history.session_facts(self.config)
        out = {"version": BASELINE_VERSION, "commit": facts["commit"], "date": history.now_iso(),
               "jobs": dict(sorted(jobs.items()))}
        path.parent.mkdir(parents=True, exist_ok=True)
        results.write_json_atomic(path, out, indent=2)
        self.saved_path = path

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        """Say where the baseline went."""
        if self.saved_path is not None:
            terminalreporter.write_line(
                f"training: baseline of {len(self.saved)} passing job(s) saved to "
                f"{self._rel(self.saved_path)}"
            )
        elif self.save is not None and self.controller \
                and not self.config.getoption("collectonly"):
            terminalreporter.write_line("training: no job passed; no baseline saved")


def expected_durations(reference: dict[str, Any]) -> dict[str, float]:
    """Node id -> seconds of the reference's jobs that record both (baselines saved since
    durations were kept): the order of a run with no remembered durations."""
    found = {}
    for entry in (reference.get("jobs") or {}).values():
        if not isinstance(entry, dict):
            continue
        nodeid, seconds = entry.get("nodeid"), entry.get("duration_s")
        if isinstance(nodeid, str) and isinstance(seconds, (int, float)) and seconds >= 0:
            found[nodeid] = float(seconds)
    return found


def configure(config: pytest.Config) -> None:
    """Register the gates plugin object (every session: gates come from the job table)."""
    config.pluginmanager.register(Gates(config), NAME)
