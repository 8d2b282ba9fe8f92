"""The run history file, ``<output-dir>/history.jsonl``: reading it and appending to it.

The history feature (``features/history.py``) writes one line per job run; the baseline
comparison, ``--skip-unchanged`` and the HTML report's trend lines read it here.  A line is one
``os.write`` of the whole line to a file opened with ``O_APPEND``: a crash while writing costs
at most that line.  A line left unfinished by such a crash is skipped when the history is
read, and the next append starts on a fresh line.

:func:`last_passing` is the last passing run of each job as the history was when the session
started; under xdist the controller hands that snapshot to the workers (``WORKERINPUT_LAST``).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from training_plugin import results, safefs, schema
from training_plugin.options import output_dir_of

HISTORY_FILE = "history.jsonl"
#: workerinput key: the controller's snapshot of the last passing run of each job.
WORKERINPUT_LAST = "training_plugin_history_last"
_LAST_KEY = pytest.StashKey[dict[str, dict[str, Any]]]()
_BY_JOB_KEY = pytest.StashKey[dict[str, list[dict[str, Any]]]]()


def history_path(config: pytest.Config) -> Path:
    """``<output-dir>/history.jsonl`` (known from configure time on)."""
    return output_dir_of(config) / HISTORY_FILE


def read_history(path: Path,
                 warn: Callable[[str], None] = schema.warn) -> list[dict[str, Any]]:
    """Every usable line of a history file, read one line at a time.

    A line that is not JSON (one a crash cut short) is skipped silently; a line of JSON the
    plugin cannot use (too long, too deep, huge or non-finite numbers, wrong types:
    ``schema.history_entry``) is skipped with a one-line warning (``warn``) naming the file
    and the line."""
    entries: list[dict[str, Any]] = []
    try:
        limit = results.MAX_JSON_BYTES
        for number, line in schema.iter_lines(path, max_bytes=limit):
            if line is not None and not line.strip():
                continue
            try:
                if line is None:
                    raise schema.JSONProblem(f"is longer than {limit} bytes (the limit)", 1)
                entry = schema.parse(line)
            except schema.JSONProblem as exc:
                if not exc.syntax:
                    warn(f"{path} line {number} {exc.problem}; line skipped")
                continue
            problem = schema.history_entry(entry)
            if problem:
                warn(f"{path} line {number}: {problem}; line skipped")
                continue
            entries.append(entry)
    except FileNotFoundError:
        return []
    except schema.BadFile as exc:
        warn(f"{exc}; the history is not used")
    return entries


def _warner(config: pytest.Config) -> Callable[[str], None]:
    """A bad line's warning, in pytest's warnings summary at any stage (configure too)."""
    return lambda message: config.issue_config_time_warning(
        schema.TrainingFileWarning(message), stacklevel=2)


def entries_by_job(config: pytest.Config) -> dict[str, list[dict[str, Any]]]:
    """Job id -> its history lines, oldest first, as the file was when first asked in this
    process (read once)."""
    by_job = config.stash.get(_BY_JOB_KEY, None)
    if by_job is None:
        by_job = {}
        for entry in read_history(history_path(config), _warner(config)):
            by_job.setdefault(entry["job"], []).append(entry)
        config.stash[_BY_JOB_KEY] = by_job
    return by_job


def last_passing(config: pytest.Config) -> dict[str, dict[str, Any]]:
    """Job id -> its last passing history line, as the history was when the session started
    (on an xdist worker: the controller's snapshot)."""
    last = config.stash.get(_LAST_KEY, None)
    if last is None:
        workerinput = getattr(config, "workerinput", None)
        if workerinput is not None and WORKERINPUT_LAST in workerinput:
            last = dict(workerinput[WORKERINPUT_LAST])
        else:
            last = {}
            for entry in read_history(history_path(config), _warner(config)):
                if entry.get("outcome") == "passed":
                    last[entry["job"]] = entry
        config.stash[_LAST_KEY] = last
    return last


def metric_phrase(entry: dict[str, Any]) -> str:
    """The primary metric of a history line, e.g. "roc_auc 0.917" ("" when none)."""
    name = entry.get("primary_metric")
    value = (entry.get("metrics") or {}).get(name) if name else None
    return f"{name} {value:.4g}" if isinstance(value, (int, float)) else ""


def append_line(path: Path, entry: dict[str, Any]) -> None:
    """Append one JSON line with a single ``os.write`` to an ``O_APPEND`` descriptor opened
    with ``O_NOFOLLOW`` (a link at ``path`` is ``safefs.UnsafePath``, never written through).

    A file whose last line a crash left unfinished gets a newline first (in the same write),
    so that the new line stays readable."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = (json.dumps(entry, separators=(",", ":"), default=str) + "\n").encode("utf-8")
    fd = safefs.open_no_follow(path, os.O_RDWR | os.O_APPEND | os.O_CREAT)
    try:
        size = os.fstat(fd).st_size
        if size and os.pread(fd, 1, size - 1) != b"\n":
            data = b"\n" + data
        written = os.write(fd, data)
        while written < len(data):  # a short write to a regular file is rare; finish it
            written += os.write(fd, data[written:])
    finally:
        os.close(fd)
