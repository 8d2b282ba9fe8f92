"""A job's attempts: it runs through the executor, and again after an infrastructure failure
(``--retries N``, the ini key ``training_retries``, the job table's ``retries``), never after
its own.

Every attempt gets ``TRAINING_ATTEMPT`` (1, 2, ...); from attempt 2 also ``TRAINING_RESUME=1``
and the script's resume flag where its parser has one (``collect.argv.resume_args``).  The
output folder is kept across attempts; each retried attempt's log is kept as
``train.attempt-N.log`` beside the last attempt's ``train.log``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest

from training_plugin import safefs
from training_plugin.executors.base import MSG_INFRASTRUCTURE, Executor, JobRun, RunResult

#: The kept log of a retried attempt (beside ``train.log``).
ATTEMPT_LOG = "train.attempt-{n}.log"
#: An earlier attempt, in the story of the last one.
MSG_ATTEMPT = "attempt {n}: {how}"
MSG_PASSED_ON = "passed on attempt {n} ({earlier})"
MSG_FAILED_ON = "attempt {n} of {total}"


@dataclass
class Attempt:
    """One run of a job: its number, how it ended, where its log is kept."""

    number: int
    result: RunResult
    log: Path

    def how(self) -> str:
        """How it ended, in words: "ok", "killed by SIGKILL, a signal ... not send" ..."""
        result = self.result
        if result.ok:
            return "ok"
        return result.infrastructure or result.describe()

    def to_json(self) -> dict[str, Any]:
        """JSON-able form (the record's ``attempts``, history, summary.json)."""
        result = self.result
        return {
            "attempt": self.number,
            "result": self.how(),
            "infrastructure": result.infrastructure is not None and not result.ok,
            "returncode": result.returncode,
            "duration_s": round(result.duration_s, 3),
            "node": result.node,
            "log": str(self.log),
            "cost": result.cost.to_json() if result.cost is not None else None,
        }


def attempt_job(job: JobRun, number: int, resume: Sequence[str]) -> JobRun:
    """``job`` as attempt ``number`` runs it: ``TRAINING_ATTEMPT``; from attempt 2,
    ``TRAINING_RESUME=1`` and ``resume`` (the script's resume flag) after its arguments."""
    env = {**job.env, "TRAINING_ATTEMPT": str(number)}
    argv = list(job.argv)
    if number > 1:
        env["TRAINING_RESUME"] = "1"
        argv += list(resume)
    return replace(job, env=env, argv=argv)


def run_attempts(executor: Executor, job: JobRun, retries: int,
                 resume: Sequence[str]) -> list[Attempt]:
    """Run ``job``, and again (up to ``retries`` more times) while it fails for a cause that
    is not its own (``RunResult.infrastructure``); every attempt, in order."""
    attempts: list[Attempt] = []
    for number in range(1, max(0, retries) + 2):
        result = executor.run(attempt_job(job, number, resume))
        attempt = Attempt(number, result, Path(result.log_path))
        attempts.append(attempt)
        if result.ok or result.infrastructure is None or number > retries:
            break
        kept = Path(job.log_path).with_name(ATTEMPT_LOG.format(n=number))
        try:
            if safefs.rename_no_follow(Path(result.log_path), kept):
                attempt.log = kept
        except OSError:
            pass  # a link where the kept log would go: the next attempt's log replaces it
    return attempts


def attempts_phrase(attempts: Sequence[Mapping[str, Any]],
                    passed: bool | None = None) -> str | None:
    """"passed on attempt 2 (attempt 1: killed by SIGKILL ...)" for a job that needed more
    than one attempt; None for one attempt.  ``attempts`` in the record's form
    (``Attempt.to_json``); ``passed``: whether the job passed (by default: whether its last
    attempt ran ok)."""
    if len(attempts) < 2:
        return None
    earlier = "; ".join(MSG_ATTEMPT.format(n=a.get("attempt"), how=a.get("result"))
                        for a in attempts[:-1])
    last = attempts[-1]
    if passed is None:
        passed = last.get("result") == "ok"
    if passed:
        return MSG_PASSED_ON.format(n=last.get("attempt"), earlier=earlier)
    return f"{MSG_FAILED_ON.format(n=last.get('attempt'), total=len(attempts))} ({earlier})"


def junit_properties(attempts: Sequence[Attempt]) -> list[tuple[str, object]]:
    """The JUnit properties of a job's run: where it ran, what its last attempt cost (wall,
    CPU and GPU seconds, peak memory and how it was measured), its attempts."""
    result = attempts[-1].result
    props: list[tuple[str, object]] = [("node", result.node)] if result.node else []
    cost = result.cost
    if cost is not None:
        props += [("cost.wall_s", round(cost.wall_s, 3))]
        if cost.cpu_s is not None:
            props.append(("cost.cpu_s", round(cost.cpu_s, 3)))
        if cost.peak_bytes:
            props += [("cost.peak_memory_bytes", cost.peak_bytes),
                      ("cost.peak_memory_method", cost.peak_method)]
        if cost.memory_limit:
            props += [("cost.memory_limit_bytes", cost.memory_limit),
                      ("cost.memory_limit_method", cost.limit_method)]
        if cost.gpus:
            props += [("cost.gpus", cost.gpus), ("cost.gpu_s", round(cost.gpu_s, 3))]
    if result.infrastructure and not result.ok:
        props.append(("infrastructure", result.infrastructure))
    props.append(("attempts", len(attempts)))
    phrase = attempts_phrase([a.to_json() for a in attempts])
    if phrase:
        props.append(("attempts.story", phrase))
    return props


def record_run(record: Any, run: RunResult, attempts: Sequence[Attempt]) -> None:
    """Fill a ``JobRecord`` from the last attempt's result and every attempt."""
    record.result = run.describe() if not run.ok else "ok"
    record.node = run.node
    record.run_duration_s = round(run.duration_s, 3)
    record.cost = run.cost.to_json() if run.cost is not None else None
    record.infrastructure = run.infrastructure if not run.ok else None
    record.attempt = len(attempts) or 1
    record.attempts = [a.to_json() for a in attempts]


def retries_of(config: pytest.Config, table: Any) -> int:
    """How many more attempts an infrastructure failure gets: the job table's ``retries``
    (``table``: the job's ``JobConfig`` or None), else ``--retries``, else the ini key
    ``training_retries``, else 0."""
    value = getattr(table, "retries", None) if table is not None else None
    if value is None:
        value = config.getoption("training_retries", None)
    if value is None:
        try:
            value = config.getini("training_retries")
        except ValueError:  # the key is not registered
            value = None
    try:
        return max(0, int(value or 0))
    except (TypeError, ValueError):
        return 0


def failure_story(job_id: str, attempts: Sequence[Attempt], no_space: str | None) -> str:
    """The one-line story of a job whose last attempt failed: "training job 'x' failed:
    exit code 2 after 3.1 s", or "training job 'x': infrastructure: killed by the kernel's
    OOM killer (...) after 9.0 s; attempt 2 of 2 (attempt 1: ...)"."""
    result = attempts[-1].result
    took = "" if result.timed_out else f" after {result.duration_s:.1f} s"
    remote = bool(result.node) and not str(result.node).startswith("local")
    if result.infrastructure:
        where = f" (on {result.node})" if remote else ""
        how = f"{where}: {MSG_INFRASTRUCTURE.format(cause=result.infrastructure)}"
    else:
        where = f" on {result.node}" if remote else ""
        how = f" failed{where}: {result.describe()}"
    full = f" ({no_space})" if no_space else ""
    tries = attempts_phrase([a.to_json() for a in attempts])
    return f"training job {job_id!r}{how}{took}{full}" + (f"; {tries}" if tries else "")
