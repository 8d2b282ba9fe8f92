"""Baselines and regressions: ``--save-baseline[=FILE]`` records the metrics of the jobs that
passed; ``--compare[=FILE|last]`` fails a job whose metric moved the wrong way by more than its
tolerance.

``--save-baseline`` merges into FILE (other jobs' entries are kept) the metrics of every job
that passed, with the commit, the date, each job's resolved argv and its duration.  Without
``--compare`` every job is still shown against its last passing run (summary notes, JUnit
properties), without failing.  The baseline's durations order a fresh clone's first run
(``pytest_training_expected_durations``).

Direction: ``training_plugin.metrics`` (the job table's ``direction`` wins); metrics with no
known direction are not compared.  Configurations of repeats: ``repeats.py``.

Tolerance (absolute ``0.02`` or relative ``5%``), first found wins: ``--max-regression`` (a
metric's own, then ``--max-regression TOL`` for all) > the job table's ``tolerance`` (a
metric's own, then a plain number) > the ini ``training_tolerance`` (the same) > 0.  A change
of 1e-9 or less is never a regression (float noise).

A job whose resolved argv differs from the reference's is not compared: a note says so and
which arguments differ.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from training_plugin import provenance, results, safefs, schema, store
from training_plugin.collect.argv import describe_argv_change, resolved_argv_of
from training_plugin.features.baseline import repeats
from training_plugin.metrics import (describe_tolerance, direction, fmt, is_number, lookup,
                                     max_regression, table_tolerances, tolerance_amount,
                                     tolerance_lines)
from training_plugin.pytest_compat import is_controller
from training_plugin.results import JobRecord, write_json_atomic

NAME = "training_plugin.baseline"
WORKERINPUT_REFERENCE = "training_plugin_baseline_reference"
DEFAULT_BASELINE = "training-baseline.json"
BASELINE_VERSION = 1
#: A change this small is float noise, never a regression.
EPSILON = 1e-9

HELP_SAVE = ("write the metrics of the jobs that passed to a baseline file (default: ini "
             "training_baseline); entries of other jobs in it are kept")
HELP_COMPARE = ("fail a job whose metrics regressed beyond the tolerance against a baseline "
                "file (default: ini training_baseline) or against 'last', the last passing "
                "run in <output-dir>/history.jsonl")
HELP_TOL = ("regression tolerance: METRIC=TOL for one metric or TOL for all; TOL is absolute "
            "(0.02) or relative (5%%); repeatable; wins over the job table and ini")


def add_ini(parser: pytest.Parser) -> None:
    """``training_baseline``, ``training_tolerance``."""
    parser.addini("training_baseline", "baseline file of --save-baseline / --compare "
                  "(relative to rootdir)", default=DEFAULT_BASELINE)
    parser.addini("training_tolerance", "regression tolerance: TOL for every metric or "
                  "metric = TOL, one a line; TOL absolute (0.02) or relative (5%)",
                  type="linelist", default=[])


def pytest_addoption(parser: pytest.Parser) -> None:
    """``--save-baseline[=FILE]``, ``--compare[=FILE|last]``, ``--max-regression``; the ini
    keys."""
    from training_plugin.options import training_group

    group = training_group(parser)
    group.addoption("--save-baseline", dest="training_save_baseline", nargs="?", const="",
                    default=None, metavar="FILE", help=HELP_SAVE)
    group.addoption("--compare", dest="training_compare", nargs="?", const="", default=None,
                    metavar="FILE|last", help=HELP_COMPARE)
    group.addoption("--max-regression", dest="training_max_regression", action="append",
                    type=max_regression, default=[], metavar="METRIC=TOL", help=HELP_TOL)
    add_ini(parser)


def _short(commit: Any) -> str:
    return str(commit)[:7]


class Baseline:
    """Comparisons (where the job runs), the baseline file (controller)."""

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
            self.ini_tolerances = tolerance_lines(config)
        except pytest.UsageError as exc:
            self.error = exc
            self.ini_tolerances = {}
        self.reference: dict[str, Any] = {}
        if self.controller:
            try:
                self.reference = self._load_reference()
            except pytest.UsageError as exc:
                self.error = self.error or exc
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
                for job, entry in store.last_passing(self.config).items()
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
        data = read_baseline(path, self._rel(path))
        problem = repeats.check_section(data)
        if problem:
            raise pytest.UsageError(f"--compare: {path}: {problem}; write it again with "
                                    f"--save-baseline={self._rel(path)}")
        return {"against": "baseline", "source": self._rel(path), "failing": True,
                "commit": data.get("commit"), "jobs": data["jobs"],
                repeats.SECTION: data.get(repeats.SECTION) or {}}

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

    def pytest_training_expected_durations(self, config: pytest.Config) -> dict[str, float]:
        """The reference's durations: the order of a run with no remembered ones."""
        return expected_durations(self.reference)

    def pytest_training_job_finished(self, item: Any, result: Any) -> None:
        """Compare the job's metrics with the reference."""
        if result.run is None or not result.run.ok or result.metrics is None:
            return
        doc = result.metrics.document
        if doc is None:
            return
        self._nested_for_baseline(item.spec, doc, result)
        self._compare(item.spec, doc, result)

    def _configured_keys(self, spec: Any) -> set[str]:
        table = spec.config
        keys = set(getattr(table, "direction", None) or {})
        keys |= set(table_tolerances(table)) | set(self.cli_tolerances) | set(self.ini_tolerances)
        return {k for k in keys if "." in k}

    def _nested_for_baseline(self, spec: Any, doc: dict[str, Any], result: Any) -> None:
        """Nested keys named in directions or tolerances travel with the result, so that the
        baseline keeps them (the gates feature adds the gated ones)."""
        nested = {}
        for key in sorted(self._configured_keys(spec)):
            value, _ = lookup(doc, key)
            if value is not None:
                nested[key] = value
        if nested:
            result.extra.setdefault("nested_metrics", {}).update(nested)

    def tolerance(self, spec: Any, key: str) -> tuple[tuple[str, float], str]:
        """(tolerance, where it comes from) for a metric of a job."""
        levels = (
            (self.cli_tolerances, "--max-regression"),
            (table_tolerances(spec.config), f"pyproject.toml [tool.training_plugin.jobs."
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
        failing = bool(reference.get("failing")) and not repeats.covered(reference, spec)
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
        argv = resolved_argv_of(list(spec.argv), str(spec.output_dir))
        if ref_argv != argv:
            why = "; ".join(describe_argv_change(ref_argv, argv))
            result.notes.append(f"not compared with {short}: argv differs ({why})")
            result.properties.append(("comparison", f"not compared with {short}: argv "
                                                    f"differs ({why})"))
            return
        commit = ref.get("commit") or reference.get("commit")
        source = reference.get("source")
        where = source if against == "baseline" else provenance.when(ref)
        if commit:
            where += f", commit {_short(commit)}"
        compared: dict[str, Any] = {}
        for key, old in sorted((ref.get("metrics") or {}).items()):
            way = direction(key, getattr(spec.config, "direction", None))
            if way is None or not is_number(old):
                continue
            value, missing = lookup(doc, key)
            tol, tol_from = self.tolerance(spec, key)
            if value is None:
                if failing:
                    result.fail(f"job {spec.id!r}: {missing} ({label} has {key} "
                                f"{fmt(old)}, {where})")
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
                story = (f"job {spec.id!r}: {key} {fmt(value)} is {fmt(abs(delta))} {side} "
                         f"{label} {fmt(old)} ({where}); tolerance "
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
                                   record: JobRecord) -> None:
        """``--save-baseline``: keep the metrics of every job that passed."""
        if self.save is None or record.outcome != "passed":
            return
        extra = record.extra or {}
        metrics = dict(record.metrics or {})
        metrics.update(extra.get("nested_metrics") or {})
        if not metrics:
            return
        fp = extra.get("fingerprint") or {}
        facts = provenance.session_facts(config)
        self.saved[record.id] = {
            "argv": list(record.resolved_argv),
            "nodeid": report.nodeid,
            "duration_s": record.duration_s,
            "metrics": metrics,
            "primary_metric": record.primary_metric,
            "commit": facts["commit"],
            "date": provenance.now_iso(),
            "fingerprint": fp.get("sha256") if isinstance(fp, dict) else None,
        }

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        """Write the baseline file (merged: entries of jobs not run this time are kept)."""
        if self.save is None or not self.controller or not self.saved:
            return
        path = self.baseline_path(self.save)
        data: Any = {}
        try:
            data = schema.load(path, max_bytes=results.MAX_JSON_BYTES)
        except FileNotFoundError:
            pass
        except (OSError, schema.BadFile) as exc:
            schema.warn(f"{path}: not merged into the new baseline, which keeps only this "
                        f"session's jobs ({exc})")
        jobs = data.get("jobs") if isinstance(data, dict) else None
        jobs = jobs if isinstance(jobs, dict) else {}
        jobs.update(self.saved)
        configurations = self.repeats.merged(data)
        facts = provenance.session_facts(self.config)
        out = {"version": BASELINE_VERSION, "commit": facts["commit"], "date": provenance.now_iso(),
               "jobs": dict(sorted(jobs.items()))}
        if configurations:
            out[repeats.SECTION] = dict(sorted(configurations.items()))
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            write_json_atomic(path, out, indent=2)
        except OSError as exc:  # a full disk, a link at the baseline: a summary warning
            safefs.note_write_failure(self.config, path, exc)
            self.saved = {}
            return
        self.saved_path = path

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        """Say where the baseline went."""
        if self.saved_path is not None:
            terminalreporter.write_line(
                f"training: baseline of {len(self.saved)} passing job(s) saved to "
                f"{self._rel(self.saved_path)}"
            )
        elif self.save is not None and self.controller and not self.config.option.collectonly:
            terminalreporter.write_line("training: no job passed; no baseline saved")


def read_baseline(path: Path, rel: str) -> dict[str, Any]:
    """A baseline file checked entry by entry (``schema``); a bad file or entry is a
    ``pytest.UsageError`` naming it (``rel``: the path as the fix spells it)."""
    fix = f"write it again with --save-baseline={rel}"
    try:
        data = schema.load(path, max_bytes=results.MAX_JSON_BYTES, keep_bad_numbers=True)
    except (OSError, schema.BadFile) as exc:
        raise pytest.UsageError(f"--compare: {exc}; not a readable baseline file: "
                                f"{fix}") from None
    problem = schema.baseline_file(data)
    if problem:
        raise pytest.UsageError(f"--compare: {path}: {problem}; {fix}")
    for job, entry in data["jobs"].items():
        problem = schema.baseline_entry(entry)
        if problem:
            raise pytest.UsageError(f"--compare: {path}: the entry of job {job!r}: {problem}; "
                                    f"fix or remove that entry, or {fix}")
    return data


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


def pytest_configure(config: pytest.Config) -> None:
    """Register the baseline plugin object (every session: without --compare, each job is
    shown against its last passing run)."""
    baseline = Baseline(config)
    config.pluginmanager.register(baseline, NAME)
    baseline.repeats = repeats.Repeats(config, baseline)
    config.pluginmanager.register(baseline.repeats, repeats.NAME)
