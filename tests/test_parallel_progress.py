"""Live progress: the status text, drawing without garbling pytest's output, and calm output
when not on a terminal or with -q (a real pseudo-terminal for the TTY cases)."""

from __future__ import annotations

import io

import pytest
from _pytest._io.terminalwriter import TerminalWriter

from training_plugin.run.logs import last_log_line
from training_plugin.run.progress import Progress, format_elapsed

from fakejobs import PLUGIN_ARGS, plugin_project, run_in_pty

CLEAR = "\r\x1b[K"


@pytest.mark.parametrize(("seconds", "text"), [(0, "0s"), (59.9, "59s"), (75, "1m15s"),
                                               (3700, "1h01m")])
def test_format_elapsed(seconds, text):
    assert format_elapsed(seconds) == text


def test_last_log_line(tmp_path):
    log = tmp_path / "train.log"
    assert last_log_line(log) == ""
    log.write_text("loading\nepoch 1/3  loss 0.9\n\n")
    assert last_log_line(log) == "epoch 1/3 loss 0.9"
    log.write_text("bar 10%\rbar 55%\r")  # carriage-return progress bars
    assert last_log_line(log) == "bar 55%"


@pytest.fixture
def writer():
    file = io.StringIO()
    tw = TerminalWriter(file)
    tw.fullwidth = 100
    return tw, file


def test_status_text_and_draw(tmp_path, writer):
    tw, file = writer
    now = [100.0]
    progress = Progress(tw, clock=lambda: now[0])
    log = tmp_path / "als" / "train.log"
    log.parent.mkdir()
    log.write_text("epoch 3/10 loss 0.41\n")
    progress.job_started("src/train_als.py::als", log)
    progress.job_started("src/train_mri.py::mri", tmp_path / "missing.log")
    now[0] += 72
    assert progress.status_text() == "running 2: als 1m12s (epoch 3/10 loss 0.41) | mri 1m12s"
    progress.start()
    try:
        tw.write("src/train_x.py ")  # a partial line, as pytest leaves it while a job runs
        progress.draw()
        assert file.getvalue().endswith(CLEAR + "src/train_x.py   running 2: als 1m12s"
                                        " (epoch 3/10 loss 0.41) | mri 1m12s")
        tw.write(".")  # pytest writes: the status is erased first, the line restored
        assert file.getvalue().endswith("mri 1m12s" + CLEAR + "src/train_x.py .")
        assert tw._current_line == "src/train_x.py ."
        progress.job_finished("src/train_als.py::als")
        progress.job_finished("src/train_mri.py::mri")
        progress.draw()
        assert file.getvalue().endswith("src/train_x.py .")  # nothing running: no status
    finally:
        progress.stop()
    assert "write" not in vars(tw)  # unwrapped


def test_an_executor_that_runs_many_jobs_at_once_supplies_the_status(tmp_path, writer):
    # The Ray executor runs every job at once while pytest waits on one item: the status comes
    # from the executor (each job since it started on its node, and how many wait for room).
    tw, _ = writer
    now = [50.0]
    progress = Progress(tw, clock=lambda: now[0])
    progress.job_started("train_a.py::a", tmp_path / "a.log")  # the item pytest waits on
    (tmp_path / "b.log").write_text("fold 2/5\n")
    running = [("a", tmp_path / "a.log", 40.0), ("b", tmp_path / "b.log", 45.0)]
    progress.source = lambda: (running, 3)
    assert progress.status_text() == "running 2, 3 queued: a 10s | b 5s (fold 2/5)"
    running.clear()
    assert progress.status_text() == "3 queued"


def test_long_status_is_cut_to_the_terminal_width(tmp_path, writer):
    tw, file = writer
    progress = Progress(tw, clock=lambda: 0.0)
    log = tmp_path / "train.log"
    log.write_text("x" * 500 + "\n")
    progress.job_started("a::job", log)
    progress.start()
    try:
        progress.draw()
    finally:
        progress.stop()
    drawn = file.getvalue().split(CLEAR)[1]
    assert drawn.endswith("...") and len(drawn) <= 100


# -- end to end ------------------------------------------------------------------------------

#: How long a gated job waits for the test to see its status line: then it fails.
GATED_WITHIN_S = 30
#: A job that prints a line and then runs until the test sees its status (the file ``release``),
#: or fails after GATED_WITHIN_S when the status never shows.
GATED_JOB = ("import os, sys, time\nprint('warming up', flush=True)\n"
             f"deadline = time.monotonic() + {GATED_WITHIN_S}\n"
             "while not os.path.exists('release'):\n"
             "    if time.monotonic() > deadline:\n"
             "        sys.exit('not released: the status line never showed this job')\n"
             "    time.sleep(0.05)\n")
#: How long a whole session in a pseudo-terminal may take (xdist workers start within it).
SESSION_WITHIN_S = GATED_WITHIN_S + 60
#: A job that runs for a few refresh intervals of the status line.
SLOW_JOB = "import time\nprint('warming up', flush=True)\ntime.sleep(3)\n"


@pytest.mark.parametrize("xdist", [[], ["-n", "2"]])
def test_tty_shows_running_jobs(pytester, xdist):
    plugin_project(pytester)
    pytester.makepyfile(train_slow=GATED_JOB)
    out = run_in_pty(pytester.path, *xdist, release_on="(warming up)",
                     within_s=SESSION_WITHIN_S)
    assert "running 1: slow" in out and "(warming up)" in out
    assert "1 passed" in out


def test_quiet_tty_and_pipes_stay_calm(pytester):
    """The job that shows its status on a terminal shows none with -q or into a pipe."""
    plugin_project(pytester)
    pytester.makepyfile(train_slow=GATED_JOB)
    shown = run_in_pty(pytester.path, release_on="(warming up)", within_s=SESSION_WITHIN_S)
    assert "running 1: slow" in shown and "1 passed" in shown
    pytester.makepyfile(train_slow=SLOW_JOB)
    quiet = run_in_pty(pytester.path, "-q", within_s=SESSION_WITHIN_S)
    assert "1 passed" in quiet
    assert "running 1:" not in quiet
    result = pytester.runpytest_subprocess(*PLUGIN_ARGS, timeout=SESSION_WITHIN_S)  # a pipe
    result.assert_outcomes(passed=1)
    assert "running 1:" not in result.stdout.str()
