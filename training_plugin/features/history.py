"""Run history: one line per job run in ``<output-dir>/history.jsonl``, append-only.

The controller appends a line for every job in ``pytest_training_job_report`` (so it is the only
writer, also under ``-n``), and at session end one ``"interrupted"`` line for every job whose
setup report arrived without a final one (Ctrl-C: pytest makes no call report then).

A line is one ``os.write`` of the whole line to a file opened with ``O_APPEND``: a crash while
writing costs at most that line.  A line left unfinished by such a crash is skipped when the
history is read, and the next append starts on a fresh line.

Line format (JSON): ``time`` (ISO-8601 UTC), ``session``, ``commit``, ``job``, ``nodeid``,
``outcome`` (passed / failed / skipped / error / interrupted), ``metrics`` (flat),
``primary_metric``, ``duration_s``, ``node``, ``fingerprint`` (sha256 or null), ``argv``,
``story``, ``synthetic``.

Other features read the history through :func:`last_passing`: the last passing run of each
job as it was when the session started (``--compare last``, ``--skip-unchanged``).  Under
xdist the controller hands that snapshot to the workers.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import uuid
from pathlib import Path
from typing import Any

import pytest

from training_plugin.jobs import output_dir_of
from training_plugin.pytest_compat import is_controller

HISTORY_FILE = "history.jsonl"
NAME = "training_plugin.history"
#: workerinput key: the controller's snapshot of the last passing run of each job.
WORKERINPUT_LAST = "training_plugin_history_last"
_LAST_KEY = pytest.StashKey[dict[str, dict[str, Any]]]()
_BY_JOB_KEY = pytest.StashKey[dict[str, list[dict[str, Any]]]]()
_SESSION_KEY = pytest.StashKey[dict[str, Any]]()


def add_options(group: pytest.OptionGroup, parser: pytest.Parser) -> None:
    """No options: the history is always kept (not under ``--collect-only``)."""


def add_ini(parser: pytest.Parser) -> None:
    """No ini keys."""


def history_path(config: pytest.Config) -> Path:
    """``<output-dir>/history.jsonl``."""
    return output_dir_of(config) / HISTORY_FILE


def read_history(path: Path) -> list[dict[str, Any]]:
    """Every readable line of a history file (an unfinished or broken line is skipped)."""
    try:
        data = path.read_bytes()
    except OSError:
        return []
    entries = []
    for line in data.split(b"\n"):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if isinstance(entry, dict) and isinstance(entry.get("job"), str):
            entries.append(entry)
    return entries


def entries_by_job(config: pytest.Config) -> dict[str, list[dict[str, Any]]]:
    """Job id -> its history lines, oldest first, as the file was when first asked in this
    process (read once: the report's trend of each job looks here)."""
    by_job = config.stash.get(_BY_JOB_KEY, None)
    if by_job is None:
        by_job = {}
        for entry in read_history(history_path(config)):
            by_job.setdefault(entry["job"], []).append(entry)
        config.stash[_BY_JOB_KEY] = by_job
    return by_job


def last_passing(config: pytest.Config) -> dict[str, dict[str, Any]]:
    """Job id -> its last passing history line, as the history was when the session started."""
    last = config.stash.get(_LAST_KEY, None)
    if last is None:
        workerinput = getattr(config, "workerinput", None)
        if workerinput is not None and WORKERINPUT_LAST in workerinput:
            last = dict(workerinput[WORKERINPUT_LAST])
        else:
            last = {}
            for entry in read_history(history_path(config)):
                if entry.get("outcome") == "passed":
                    last[entry["job"]] = entry
        config.stash[_LAST_KEY] = last
    return last


def git_commit(rootdir: Path) -> str | None:
    """The checkout's HEAD commit, or None (not a git checkout, no git)."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=rootdir, capture_output=True, text=True,
            timeout=10, check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    sha = out.stdout.strip()
    return sha if out.returncode == 0 and len(sha) == 40 else None


def session_facts(config: pytest.Config) -> dict[str, Any]:
    """This session's id and commit (worked out once, on first use)."""
    facts = config.stash.get(_SESSION_KEY, None)
    if facts is None:
        facts = {"session": uuid.uuid4().hex[:12], "commit": git_commit(Path(config.rootpath))}
        config.stash[_SESSION_KEY] = facts
    return facts


def now_iso() -> str:
    """The time now, ISO-8601 UTC to the second."""
    return dt.datetime.now(dt.timezone.utc).replace(microsecond=0).isoformat()


def append_line(path: Path, entry: dict[str, Any]) -> None:
    """Append one JSON line with a single ``os.write`` to an ``O_APPEND`` descriptor.

    A file whose last line a crash left unfinished gets a newline first (in the same write),
    so that the new line stays readable."""
    path.parent.mkdir(parents=True, exist_ok=True)
    data = (json.dumps(entry, separators=(",", ":"), default=str) + "\n").encode("utf-8")
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        size = os.fstat(fd).st_size
        if size:
            with open(path, "rb") as f:
                f.seek(size - 1)
                if f.read(1) != b"\n":
                    data = b"\n" + data
        written = os.write(fd, data)
        while written < len(data):  # a short write to a regular file is rare; finish it
            written += os.write(fd, data[written:])
    finally:
        os.close(fd)


class History:
    """Writes the history on the controller; hands the last passing runs to xdist workers."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.path = history_path(config)
        #: nodeid -> record of a job whose setup passed and whose final report has not come
        self.running: dict[str, dict[str, Any]] = {}

    @pytest.hookimpl(optionalhook=True)
    def pytest_configure_node(self, node: Any) -> None:
        """xdist: every worker gets the controller's snapshot of the last passing runs."""
        node.workerinput[WORKERINPUT_LAST] = last_passing(self.config)

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        """Remember jobs that started (a passed setup report of a training job: it carries
        the log path), until their final report arrives."""
        from training_plugin.session import REPORT_LOG_ATTR

        log = getattr(report, REPORT_LOG_ATTR, None)
        if log is not None and report.when == "setup" and report.passed:
            self.running[report.nodeid] = self._started_record(Path(log))

    def _started_record(self, log: Path) -> dict[str, Any]:
        """What is known of a job that started: its id and output dir (from its log path)
        and, where the session's job specs are at hand, its command."""
        out = log.parent
        try:
            job = out.relative_to(output_dir_of(self.config)).as_posix()
        except ValueError:
            job = out.name
        record: dict[str, Any] = {"id": job, "output_dir": str(out), "log": str(log)}
        from training_plugin import plugin

        state = self.config.stash.get(getattr(plugin, "_STATE_KEY"), None)
        for specs in getattr(state, "specs", {}).values():
            for spec in specs:
                if spec.id == job:
                    record["command"] = list(spec.argv)
        return record

    def pytest_training_job_report(self, config: pytest.Config, report: pytest.TestReport,
                                   record: dict[str, Any]) -> None:
        """One history line for the job."""
        self.running.pop(report.nodeid, None)
        self.write(record, record.get("outcome") or report.outcome, report.nodeid)

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        """Jobs that started but never finished (Ctrl-C, a crashed worker): ``interrupted``."""
        for nodeid, record in list(self.running.items()):
            self.write(record, "interrupted", nodeid)
        self.running.clear()

    def pytest_unconfigure(self, config: pytest.Config) -> None:
        """Unregister."""
        config.pluginmanager.unregister(self, NAME)

    def write(self, record: dict[str, Any], outcome: str, nodeid: str) -> None:
        """Append the line of one job run."""
        facts = session_facts(self.config)
        extra = record.get("extra") or {}
        fingerprint = extra.get("fingerprint")
        entry = {
            "time": now_iso(),
            "session": facts["session"],
            "commit": facts["commit"],
            "job": record.get("id"),
            "nodeid": nodeid,
            "outcome": outcome,
            "metrics": record.get("metrics") or {},
            "primary_metric": record.get("primary_metric"),
            "duration_s": record.get("duration_s"),
            "node": record.get("node"),
            "fingerprint": fingerprint.get("sha256") if isinstance(fingerprint, dict) else None,
            "argv": record.get("command") or [],
            "story": record.get("story"),
            "synthetic": record.get("synthetic"),
        }
        if outcome == "interrupted":
            entry["metrics"] = {}
            entry["story"] = "interrupted before the job finished"
        try:
            append_line(self.path, entry)
        except OSError as exc:
            reporter = self.config.pluginmanager.get_plugin("terminalreporter")
            if reporter is not None:
                reporter.write_line(f"training: cannot append to {self.path}: {exc}")


def configure(config: pytest.Config) -> None:
    """Register the history writer on the controller (not under ``--collect-only``); load the
    last passing runs before any job of this session is written."""
    if not is_controller(config):
        return
    last_passing(config)
    if config.getoption("collectonly", False):
        return
    config.pluginmanager.register(History(config), NAME)


