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


# -- 2. job ids are safe path components ------------------------------------------------------

@pytest.mark.parametrize("name", ["train_...py", "train_..py"])
def test_a_discovered_id_that_leaves_the_output_folder_is_refused_naming_the_file(
    pytester: pytest.Pytester, name: str
) -> None:
    make(pytester, {f"scripts/{name}": fake()})
    (pytester.path / OUT).mkdir()
    (pytester.path / "train.log").write_text("not mine\n")
    result = run(pytester)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"*scripts/{name}: the job id * is not a safe folder name*"])
    assert (pytester.path / "train.log").read_text() == "not mine\n"
    assert list((pytester.path / OUT).iterdir()) == []


def test_check_id_allows_qualified_ids_and_refuses_unsafe_ones(tmp_path: Path) -> None:
    from training_plugin.collect.specs import check_id

    assert check_id("classify/train", "classify/train.py", True, tmp_path) == (
        tmp_path / "classify/train")
    for bad, qualified in [("", False), (".", False), ("..", False), ("a/b", False),
                           ("a\\b", False), ("a\0b", False), ("x/..", True), ("./x", True)]:
        with pytest.raises(pytest.UsageError, match="not a safe folder name"):
            check_id(bad, "train_x.py", qualified, tmp_path)


# -- 3. one session per output folder ---------------------------------------------------------

GATED = fake(post="""
    import pathlib, time
    print("ready", flush=True)
    while not (pathlib.Path(out).parent / "release").exists():  # one gate per output folder
        time.sleep(0.05)
""")


@pytest.mark.parametrize("workers", ["0", "2"])
def test_a_second_session_on_a_locked_output_folder_stops_at_once_naming_the_holder(
    pytester: pytest.Pytester, workers: str
) -> None:
    make(pytester, {"train_one.py": GATED})
    env = {k: v for k, v in os.environ.items() if k not in ("PYTEST_ADDOPTS",
                                                            "PYTEST_XDIST_WORKER")}
    base = [sys.executable, "-m", "pytest", "-p", "training_plugin", "-p", "no:cacheprovider",
            "-p", "no:randomly"]
    first = subprocess.Popen([*base, "-n", workers], cwd=pytester.path, env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        log = pytester.path / OUT / "one" / "train.log"
        deadline = time.monotonic() + 120
        while "ready" not in (log.read_text() if log.exists() else ""):
            assert first.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
        started = time.monotonic()
        second = subprocess.run([*base, "-n", workers], cwd=pytester.path, env=env,
                                capture_output=True, text=True, timeout=120)
        assert time.monotonic() - started < 60
        assert second.returncode == pytest.ExitCode.USAGE_ERROR, second.stdout + second.stderr
        assert f"is in use by another training session (pid {first.pid}, started " in (
            second.stderr)
        assert "--output-dir=OTHER" in second.stderr
        assert "train.log" not in second.stdout
        assert "ready" in log.read_text()  # the second session did not truncate it
        (pytester.path / "other").mkdir()
        (pytester.path / "other" / "release").touch()
        other = subprocess.run([*base, "-n", workers, "--output-dir=other"], cwd=pytester.path,
                               env=env, capture_output=True, text=True, timeout=120)
        assert other.returncode == 0, other.stdout + other.stderr  # beside the first
    finally:
        (pytester.path / OUT / "release").touch()
        out, _ = first.communicate(timeout=120)
    assert first.returncode == 0, out
    # released when the holder ended: a third session runs
    assert subprocess.run([*base], cwd=pytester.path, env=env, capture_output=True,
                          timeout=120).returncode == 0


def test_collect_only_takes_no_lock(pytester: pytest.Pytester) -> None:
    make(pytester, {"train_one.py": fake()})
    run(pytester, "--collect-only").assert_outcomes()
    assert not (pytester.path / OUT).exists()


@pytest.mark.parametrize("where", ["/proc/nope", "afile/out"])
def test_an_output_folder_that_cannot_be_made_is_a_usage_error(
    pytester: pytest.Pytester, where: str
) -> None:
    make(pytester, {"train_one.py": fake(), "afile": "x"})
    result = run(pytester, f"--output-dir={where}")
    assert result.ret == pytest.ExitCode.USAGE_ERROR, result.stdout.str()
    result.stderr.fnmatch_lines(["*cannot create the output folder*"])
    assert "Traceback" not in result.stdout.str() + result.stderr.str()


# -- 5. interrupted sessions are recorded truthfully ------------------------------------------

def summary_outcomes(root: Path, out: str = "out") -> dict[str, str]:
    summary = json.loads((root / out / SUMMARY_FILE).read_text())
    return {job["id"]: job["outcome"] for job in summary["jobs"]}


def history_outcomes(root: Path, out: str = "out") -> list[tuple[str, str]]:
    lines = (root / out / HISTORY_FILE).read_text().splitlines()
    return [(e["job"], e["outcome"]) for e in map(json.loads, lines)]


@pytest.mark.parametrize("workers", ["0", "2"])
@pytest.mark.parametrize("signals", [1, 2])
def test_an_interrupted_session_rewrites_summary_json_with_every_selected_job(
    project: pytest.Pytester, marker: str, workers: str, signals: int
) -> None:
    """Passed, interrupted and never-run jobs; a second SIGTERM during shutdown (the slow
    job's tree ignores SIGTERM, so killing it takes the reaper's grace time) still writes
    every record, without a traceback."""
    from fakejobs import QUICK_JOB, Session, tree_job, wait_gone

    project.makepyfile(train_a_quick=QUICK_JOB, train_b_slow=tree_job(300),
                       train_c_later=QUICK_JOB, train_d_later=QUICK_JOB)
    (project.path / "out").mkdir()
    (project.path / "out" / SUMMARY_FILE).write_text('{"jobs": [{"id": "old"}]}')
    # serial: c and d never start; -n 2: the other worker may run them, or be running one
    session = Session(project, marker, "-n", workers, "-v", "--junitxml", "junit.xml")
    session.wait_output(r"a_quick.*PASSED|PASSED.*a_quick")
    session.wait_ready("b_slow")
    for _ in range(signals):
        session.proc.send_signal(signal.SIGTERM)
        time.sleep(0.5)
    rc, out = session.finish()
    assert rc == 2, out
    assert "Traceback" not in out, out
    outcomes = summary_outcomes(project.path)
    assert outcomes["a_quick"] == "passed", out
    assert outcomes["b_slow"] == "interrupted"
    assert "old" not in outcomes
    assert set(outcomes) == {"a_quick", "b_slow", "c_later", "d_later"}, outcomes
    assert {outcomes["c_later"], outcomes["d_later"]} <= (
        {"not run"} if workers == "0" else {"not run", "passed", "interrupted"})
    assert json.loads((project.path / "out" / SUMMARY_FILE).read_text())["interrupted"]
    assert ("b_slow", "interrupted") in history_outcomes(project.path)
    assert (project.path / "junit.xml").exists()
    assert wait_gone(marker) == []


def test_the_job_of_a_crashed_xdist_worker_is_in_summary_json(
    project: pytest.Pytester, marker: str
) -> None:
    from fakejobs import QUICK_JOB, Session, wait_gone

    project.makepyfile(train_a_killer=textwrap.dedent('''
        import os, signal
        with open(f"/proc/{os.getppid()}/stat") as fh:  # job -> reaper -> xdist worker
            worker = int(fh.read().rsplit(")", 1)[1].split()[1])
        os.kill(worker, signal.SIGKILL)
    '''), train_b_one=QUICK_JOB)
    rc, out = Session(project, marker, "-n", "2").finish()
    assert rc == 1, out
    summary = json.loads((project.path / "out" / SUMMARY_FILE).read_text())
    jobs = {job["id"]: job for job in summary["jobs"]}
    assert jobs["a_killer"]["outcome"] == "error"
    assert "crashed while running 'train_a_killer.py::a_killer'" in jobs["a_killer"]["story"]
    assert jobs["b_one"]["outcome"] == "passed"
    assert ("a_killer", "error") in history_outcomes(project.path)
    assert wait_gone(marker) == []


# -- 4. writes that fail are stories ------------------------------------------------------------

@pytest.fixture
def small_disk(tmp_path: Path):
    """A 1 MiB tmpfs (needs root and the right to mount; skipped otherwise), unmounted after."""
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(disk)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs for the full-disk tests (root and "
                    f"CAP_SYS_ADMIN needed): {mounted.stderr.strip()}")
    try:
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)


FILL = """
    chunk = b"x" * 65536
    with open(os.path.join(out, "filler"), "wb", buffering=0) as f:
        try:
            while True:
                f.write(chunk)
        except OSError:
            pass
        try:
            while True:
                f.write(b"x")
        except OSError:
            pass
"""


def test_a_full_disk_while_the_session_writes_its_files_is_a_warning_in_the_summary(
    pytester: pytest.Pytester, small_disk: Path
) -> None:
    make(pytester, {"train_one.py": fake(post=FILL)})  # metrics.json first, then a full disk
    out = small_disk / "out"
    result = run(pytester, f"--output-dir={out}", f"--save-baseline={small_disk}/base.json")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines([
        "*= training summary =*",
        "one *passed*",
        f"training: warning: cannot write {out / SUMMARY_FILE}: no space left on*",
    ])
    text = result.stdout.str()
    assert f"training: warning: cannot write {small_disk}/base.json: no space left on" in text
    assert f"training: warning: cannot write {out}/one/fingerprint.json: no space left" in text
    assert f"cannot append to {out / HISTORY_FILE}" in text
    assert "Traceback" not in text
    assert [p for p in small_disk.rglob("*") if p.name.endswith(".tmp")] == []


def test_a_job_whose_output_folder_filled_up_says_no_space_left(
    pytester: pytest.Pytester, small_disk: Path
) -> None:
    make(pytester, {"train_one.py": fake(post=FILL + "    raise SystemExit(1)\n",
                                         metrics=False)})
    out = small_disk / "out"
    result = run(pytester, f"--output-dir={out}")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines([f"*training job 'one' failed: exit code 1*"
                                 f"(no space left on {out / 'one'})*"])


# -- 6. job-table and command-line values --------------------------------------------------------

@pytest.mark.parametrize(("entry", "key"), [
    ("timeout = inf", "timeout"),
    ("timeout = nan", "timeout"),
    ("memory = inf", "memory"),
    ('memory = "9999999999999999999999999999999999999999999999999999999999999999999999'
     '9999999999999999999999999999999999999999999999999999999999999999999999999999999999'
     '99999999999999999999999999999999999999999999999999999999999999999999999999999999'
     '999999999999999999999999999999999999999999999999999999999999999999999999999999GiB"',
     "memory"),
    ("cpus = nan", "cpus"),
    ("gpus = inf", "gpus"),
    ("min = { accuracy = nan }", "min"),
    ("max = { rmse = inf }", "max"),
    ("tolerance = inf", "tolerance"),
    ("resources = { bigmem = inf }", "resources"),
    ('env = { "A=B" = "x" }', "env"),
    ('env = { "" = "x" }', "env"),
    ('env = { A = "x\\u0000y" }', "env"),
    ('args = ["--a\\u0000b"]', "args"),
    ('inputs = ["/etc/*"]', "inputs"),
    ('inputs = ["../*"]', "inputs"),
])
def test_a_bad_job_table_value_is_a_usage_error_naming_the_job_and_the_key(
    pytester: pytest.Pytester, entry: str, key: str
) -> None:
    make(pytester, {"train_one.py": fake(),
                    "pyproject.toml": f"[tool.training_plugin.jobs.one]\n{entry}\n"})
    result = run(pytester)
    assert result.ret == pytest.ExitCode.USAGE_ERROR, result.stdout.str()
    result.stderr.fnmatch_lines([f"*[[]tool.training_plugin.jobs.one[]] {key} must be*"])
    assert "Traceback" not in result.stderr.str()
    assert not (pytester.path / OUT).exists()


@pytest.mark.parametrize("how", ["../elsewhere/train_x.py", "link/train_x.py"])
def test_a_script_outside_the_rootdir_is_a_usage_error(
    pytester: pytest.Pytester, tmp_path_factory: pytest.TempPathFactory, how: str
) -> None:
    elsewhere = tmp_path_factory.mktemp("elsewhere")
    (elsewhere / "train_x.py").write_text("open('ran', 'w').write('yes')\n")
    project = pytester.path / "project"
    write_files(project, {"pytest.ini": "[pytest]\n", "train_one.py": fake()})
    (project / "link").symlink_to(elsewhere, target_is_directory=True)
    (project / "pyproject.toml").write_text(
        f'[tool.training_plugin.jobs.x]\nscript = "{how}"\n'.replace(
            "../elsewhere", os.path.relpath(elsewhere, project)))
    result = subprocess.run([sys.executable, "-m", "pytest", "-p", "training_plugin",
                             "-p", "no:cacheprovider", "--ignore=link"],
                            cwd=project, capture_output=True, text=True, timeout=120)
    assert result.returncode == pytest.ExitCode.USAGE_ERROR, result.stdout + result.stderr
    assert "[tool.training_plugin.jobs.x] script = " in result.stderr
    assert "outside the rootdir" in result.stderr or "no such file under rootdir" in (
        result.stderr)
    assert not (elsewhere / "ran").exists()


@pytest.mark.parametrize("value", ["inf", "nan", "-1"])
@pytest.mark.parametrize("where", ["--timeout", "ini"])
def test_a_timeout_that_is_not_a_finite_number_is_a_usage_error(
    pytester: pytest.Pytester, value: str, where: str
) -> None:
    make(pytester, {"train_one.py": fake()})
    if where == "ini":
        pytester.makeini(f"[pytest]\ntestpaths = tests\ntimeout = {value}\n")
        result = run(pytester)
    else:
        result = run(pytester, f"--timeout={value}")
    assert result.ret == pytest.ExitCode.USAGE_ERROR, result.stdout.str()
    result.stderr.fnmatch_lines([f"*invalid timeout *{value}* from *: expected a finite*"])
    assert not (pytester.path / OUT).exists()


def test_a_timeout_marker_that_is_not_finite_never_reaches_the_job(
    pytester: pytest.Pytester
) -> None:
    make(pytester, {"train_one.py": fake(), "conftest.py": """
        import pytest
        def pytest_collection_modifyitems(items):
            for item in items:
                item.add_marker(pytest.mark.timeout(float("inf")))
    """})
    result = run(pytester)
    assert result.ret in (pytest.ExitCode.USAGE_ERROR, pytest.ExitCode.TESTS_FAILED)
    assert "invalid timeout inf from the timeout marker of train_one.py::one" in (
        result.stdout.str() + result.stderr.str())
    assert not (pytester.path / OUT / "one" / "received.json").exists()


# -- 7. bounded memory --------------------------------------------------------------------------

def test_the_log_attached_to_a_failure_is_read_from_its_end(tmp_path: Path) -> None:
    import tracemalloc

    from training_plugin.collect.items import TrainingItem

    log = tmp_path / "train.log"
    with open(log, "wb") as fh:
        for _ in range(40):
            fh.write(b"x" * (1 << 20))
        fh.write(b"the last line\n")
    sections: list[tuple[str, str, str]] = []

    class Stub:
        def add_report_section(self, when: str, key: str, content: str) -> None:
            sections.append((when, key, content))

    tracemalloc.start()
    try:
        TrainingItem._attach_log(Stub(), log)  # type: ignore[arg-type]
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 8 * LOG_ATTACH_BYTES  # the 40 MB log is never read whole
    (_, key, content), = sections
    assert key == "train.log" and content.endswith("the last line\n")
    assert content.startswith(f"[... first {40 * (1 << 20) + 14 - LOG_ATTACH_BYTES} bytes")


def test_the_json_size_limit_is_documented() -> None:
    text = (Path(__file__).resolve().parents[1] / "docs/configuration/index.md").read_text()
    assert f"{MAX_JSON_BYTES // (1 << 20)} MB" in text
