"""``--collect-only`` and what the jobs cost: each job's cost in its last passing run (from
``<output-dir>/history.jsonl``) and the session's total, for sizing a cluster.  A session runs
first to make the history; then the listing is read."""

from __future__ import annotations

import json
import textwrap

import pytest

from fakejobs import busy_job
from training_plugin.collect.listing import MSG_COST, MSG_COST_TOTAL, MSG_COST_UNKNOWN
from training_plugin.executors.base import cost_cell, format_bytes, format_duration
from training_plugin.provenance import when
from training_plugin.store import HISTORY_FILE

pytest_plugins = ["pytester"]

PLUGIN = ("-p", "training_plugin", "-p", "no:randomly", "-p", "no:cacheprovider")
#: About 0.3 s of CPU time and a 100 MiB buffer.
BUSY = busy_job(0.3, 100)
#: Counts the reads of history.jsonl in the session (written at its end).
COUNTING_CONFTEST = textwrap.dedent("""
    import json
    from training_plugin import store

    reads = []
    _read = store.read_history

    def counted(path, *args, **kwargs):
        reads.append(str(path))
        return _read(path, *args, **kwargs)

    store.read_history = counted

    def pytest_unconfigure(config):
        with open("reads.json", "w") as f:
            json.dump(reads, f)
""")


def project(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\n")
    pytester.makepyfile(train_busy=BUSY, train_quick="print('ok')\n",
                        train_broken="raise SystemExit(2)\n")


def last_passing(pytester: pytest.Pytester) -> dict[str, dict]:
    path = pytester.path / "training-results" / HISTORY_FILE
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    return {e["job"]: e for e in lines if e["outcome"] == "passed"}


def block_of(lines: list[str], job: str) -> list[str]:
    """The indented lines under ``job <id>: <command>`` in a listing."""
    at = next(i for i, line in enumerate(lines) if line.startswith(f"job {job}: "))
    end = next(i for i in range(at + 1, len(lines)) if not lines[i].startswith("    "))
    return lines[at + 1:end]


def test_collect_only_shows_each_jobs_last_cost_and_the_sessions_total(
    pytester: pytest.Pytester,
) -> None:
    project(pytester)
    # without a history no job's cost is known: the listing says nothing of cost
    before = pytester.runpytest_subprocess(*PLUGIN, "--collect-only")
    assert "job busy: " in before.stdout.str()
    assert not [line for line in before.stdout.lines if line.lstrip().startswith("cost")]
    pytester.runpytest_subprocess(*PLUGIN).assert_outcomes(passed=2, failed=1)
    runs = last_passing(pytester)
    assert set(runs) == {"busy", "quick"}  # the broken job never passed: its cost is unknown
    pytester.makeconftest(COUNTING_CONFTEST)

    listing = pytester.runpytest_subprocess(*PLUGIN, "--collect-only")
    lines = listing.stdout.lines
    for job in ("busy", "quick"):
        entry = runs[job]
        expected = "    " + MSG_COST.format(cost=cost_cell(entry["cost"]), when=when(entry))
        assert expected in block_of(lines, job), block_of(lines, job)
    assert not [line for line in block_of(lines, "broken") if line.startswith("    cost")]
    # the busy job's own figures: at least its 0.3 s busy loop and its 100 MiB buffer
    assert runs["busy"]["cost"]["cpu_s"] >= 0.3
    assert runs["busy"]["cost"]["peak_bytes"] >= 100 * 2**20
    cpu = sum(runs[job]["cost"]["cpu_s"] for job in ("busy", "quick"))
    peak = max(runs[job]["cost"]["peak_bytes"] for job in ("busy", "quick"))
    total = MSG_COST_TOTAL.format(
        cpu=format_duration(cpu), peak=format_bytes(peak), known=2, total=3, s="s",
        history=pytester.path / "training-results" / HISTORY_FILE)
    assert total + MSG_COST_UNKNOWN.format(count=1, names="broken") in lines
    # the listing read the history once
    assert len(json.loads((pytester.path / "reads.json").read_text())) == 1

    # a selection adds up only its own jobs; a job with no known cost says nothing
    only = pytester.runpytest_subprocess(*PLUGIN, "--collect-only", "-k", "busy")
    cost = runs["busy"]["cost"]
    alone = MSG_COST_TOTAL.format(
        cpu=format_duration(cost["cpu_s"]), peak=format_bytes(cost["peak_bytes"]), known=1,
        total=1, s="", history=pytester.path / "training-results" / HISTORY_FILE)
    assert alone in only.stdout.lines
    none = pytester.runpytest_subprocess(*PLUGIN, "--collect-only", "-k", "broken")
    assert not [line for line in none.stdout.lines if line.lstrip().startswith("cost")]

