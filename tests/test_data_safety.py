"""Data safety of the output folder: no write through a link, safe job ids, one session per
folder, failed writes and interruptions as stories, validated job-table and command-line
values, bounded memory."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from fakejobs import fake, write_files
from training_plugin import safefs
from training_plugin.collect.items import LOG_ATTACH_BYTES
from training_plugin.results import MAX_JSON_BYTES, SUMMARY_FILE
from training_plugin.store import HISTORY_FILE

pytest_plugins = ["pytester"]

OUT = "training-results"


def make(pytester: pytest.Pytester, files: dict[str, str]) -> None:
    pytester.makeini("[pytest]\ntestpaths = tests\n")
    write_files(pytester.path, files)


def run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    return pytester.runpytest("-p", "training_plugin", "-p", "no:cacheprovider", *args)


def outside(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, tuple[str, int]]:
    """A file outside the project, its content and mtime (what a link must not change)."""
    folder = tmp_path_factory.mktemp("outside")
    target = folder / "precious.txt"
    target.write_text("precious\n")
    old = time.time() - 3600
    os.utime(target, (old, old))
    return target, (target.read_text(), target.stat().st_mtime_ns)


def untouched(target: Path, before: tuple[str, int]) -> None:
    assert (target.read_text(), target.stat().st_mtime_ns) == before
    assert sorted(p.name for p in target.parent.iterdir()) == [target.name]


# -- 1. no write through a link -----------------------------------------------------------------

@pytest.mark.parametrize("link", ["train.log", "metrics.json", "the job folder"])
def test_a_link_where_the_plugin_writes_fails_the_job_and_its_target_is_untouched(
    pytester: pytest.Pytester, tmp_path_factory: pytest.TempPathFactory, link: str
) -> None:
    make(pytester, {"train_one.py": fake()})
    target, before = outside(tmp_path_factory)
    job = pytester.path / OUT / "one"
    if link == "the job folder":
        (pytester.path / OUT).mkdir()
        job.symlink_to(target.parent, target_is_directory=True)
        named, points_to = job, target.parent
    else:
        job.mkdir(parents=True)
        (job / link).symlink_to(target)
        named, points_to = job / link, target
    result = run(pytester)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines([
        f"*training job 'one' was not started: {named} is a symbolic link (to {points_to})*"])
    untouched(target, before)


def test_the_leftovers_note_and_a_start_failure_never_follow_a_link(tmp_path: Path) -> None:
    from training_plugin.executors.reaper import run_job

    target = tmp_path / "precious.txt"
    target.write_text("precious\n")
    log = tmp_path / "job" / "train.log"
    log.parent.mkdir()
    log.symlink_to(target)
    result = run_job([sys.executable, "-c", "print(1)"], cwd=tmp_path, env=dict(os.environ),
                     log_path=log)
    assert not result.ok and "is a symbolic link" in result.describe()
    assert target.read_text() == "precious\n"


@pytest.mark.parametrize("name", [SUMMARY_FILE, HISTORY_FILE, "one/fingerprint.json"])
def test_a_link_at_a_session_file_is_a_warning_and_its_target_is_untouched(
    pytester: pytest.Pytester, tmp_path_factory: pytest.TempPathFactory, name: str
) -> None:
    make(pytester, {"train_one.py": fake()})
    target, before = outside(tmp_path_factory)
    path = pytester.path / OUT / name
    path.parent.mkdir(parents=True)
    path.symlink_to(target)
    result = run(pytester)
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines([f"*{path}*symbolic link*"])
    assert result.ret == 0
    untouched(target, before)
    assert not list(path.parent.glob(".*.tmp"))
