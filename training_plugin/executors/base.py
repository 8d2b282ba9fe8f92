"""The executor interface: a job to run (``JobRun``), how it ended (``RunResult``), and the
small protocol every executor follows (``Executor``).  No heavy imports here."""

from __future__ import annotations

import signal
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from training_plugin.metrics import is_number

MSG_TIMED_OUT = "timed out after {timeout} s (process tree killed)"
MSG_KILLED = "killed by {signal}"
MSG_OOM_HINT = " (out of memory?)"
MSG_EXIT_CODE = "exit code {code}"
MSG_INTERRUPTED = "interrupted (process tree killed)"
#: An infrastructure failure's story begins so (pytest "error"; retried under ``--retries``).
MSG_INFRASTRUCTURE = "infrastructure: {cause}"
MSG_OUTSIDE_SIGNAL = "killed by {signal}{hint}, a signal the plugin did not send"
MSG_OOM = "killed by the kernel's OOM killer (peak {peak} of its {limit} limit)"
MSG_OOM_NO_LIMIT = "killed by the kernel's OOM killer (peak {peak})"
#: Signals that end a job from outside (a user, a scheduler, preemption), not by its own fault.
OUTSIDE_SIGNALS = (signal.SIGKILL, signal.SIGTERM)
#: How the peak memory was measured.
PEAK_CGROUP_V2 = "cgroup v2 memory.peak"
PEAK_CGROUP_V1 = "cgroup v1 memory.max_usage_in_bytes"
PEAK_SAMPLED = "sampled RSS of the process tree"


def format_seconds(value: float) -> str:
    """Render a timeout like a user wrote it: 60 -> "60", 0.5 -> "0.5"."""
    return f"{value:g}"


def format_bytes(value: float) -> str:
    """A size for people: 1.2 GiB, 200 MiB, 512 KiB."""
    for unit, size in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if value >= size:
            number = value / size
            return f"{number:.1f} {unit}" if number < 10 else f"{number:.0f} {unit}"
    return f"{value:.0f} B"


def format_duration(seconds: float) -> str:
    """A compact duration: 0.8s, 12s, 2m10s, 1h05m."""
    if seconds < 10:
        return f"{seconds:.1f}s"
    whole = round(seconds)
    if whole < 60:
        return f"{whole}s"
    if whole < 3600:
        return f"{whole // 60}m{whole % 60:02d}s"
    return f"{whole // 3600}h{whole // 60 % 60:02d}m"


def cost_cell(cost: dict[str, Any] | None) -> str:
    """The summary's compact cost cell: "cpu 2m10s, peak 1.2 GiB" ("" when not measured)."""
    if not cost:
        return ""
    parts = []
    if isinstance(cost.get("cpu_s"), (int, float)):
        parts.append(f"cpu {format_duration(cost['cpu_s'])}")
    if cost.get("peak_bytes"):
        parts.append(f"peak {format_bytes(cost['peak_bytes'])}")
    if cost.get("gpu_s"):
        parts.append(f"gpu {format_duration(cost['gpu_s'])}")
    return ", ".join(parts)


@dataclass(frozen=True)
class SessionCost:
    """What a session's jobs cost together: the CPU seconds of every attempt added up, and the
    largest peak memory of one attempt, with its job's id.  ``attempts`` counts the attempts
    with a cost, ``unmeasured`` those of them whose CPU time is not known (an attempt whose
    node was lost before it ended): ``cpu_s`` leaves them out."""

    cpu_s: float
    peak_bytes: float | None = None
    peak_job: str | None = None
    attempts: int = 0
    unmeasured: int = 0

    def phrase(self) -> str:
        """"cpu 2m10s in all (every attempt)", or "(3 of 4 attempts measured)"; the largest
        peak and its job."""
        measured = ("every attempt" if not self.unmeasured else
                    f"{self.attempts - self.unmeasured} of {self.attempts} attempts measured")
        text = f"cpu {format_duration(self.cpu_s)} in all ({measured})"
        if self.peak_bytes is not None:
            text += f"; largest peak {format_bytes(self.peak_bytes)} ({self.peak_job})"
        return text


def session_cost(records: Iterable[Any]) -> SessionCost | None:
    """The session's cost over job records (each attempt's ``cost``, else the record's own);
    None when no job's cost was measured."""
    cpu, peaks, attempts, unmeasured = 0.0, [], 0, 0
    for record in records:
        costs = [a.get("cost") for a in record.attempts or [] if isinstance(a, Mapping)]
        for cost in costs or [record.cost]:
            if not isinstance(cost, Mapping):
                continue
            attempts += 1
            if is_number(cost.get("cpu_s")):
                cpu += float(cost["cpu_s"])
            else:
                unmeasured += 1
            if is_number(cost.get("peak_bytes")) and cost["peak_bytes"]:
                peaks.append((float(cost["peak_bytes"]), str(record.id)))
    if not attempts:
        return None
    peak, job = max(peaks) if peaks else (None, None)
    return SessionCost(cpu, peak, job, attempts, unmeasured)


@dataclass(frozen=True)
class JobCost:
    """What one attempt of a job cost: wall time, CPU time (user + system) of its whole
    process tree, the tree's peak memory (and how it was measured), GPUs it was given."""

    wall_s: float
    cpu_s: float | None = None
    peak_bytes: int | None = None
    peak_method: str | None = None  #: ``PEAK_CGROUP_V2``, ``PEAK_CGROUP_V1``, ``PEAK_SAMPLED``
    memory_limit: int | None = None  #: the limit enforced on the job (bytes), if any
    limit_method: str | None = None  #: "cgroup v2", "cgroup v1", "RLIMIT_AS"
    gpus: float = 0.0

    @property
    def gpu_s(self) -> float:
        """GPU-seconds: wall time x the GPUs the job was given."""
        return self.wall_s * self.gpus

    def phrase(self) -> str:
        """The summary's compact cell: "cpu 2m10s, peak 1.2 GiB"."""
        return cost_cell(self.to_json())

    def to_json(self) -> dict[str, Any]:
        """JSON-able form (summary.json, history, the record)."""
        return {"wall_s": round(self.wall_s, 3),
                "cpu_s": None if self.cpu_s is None else round(self.cpu_s, 3),
                "peak_bytes": self.peak_bytes, "peak_method": self.peak_method,
                "memory_limit": self.memory_limit, "limit_method": self.limit_method,
                "gpus": self.gpus, "gpu_s": round(self.gpu_s, 3)}


@dataclass(frozen=True)
class JobRun:
    """One job as an executor sees it.

    ``env`` holds only what the job adds to the environment (thread budget, GPUs,
    ``TRAINING_*``, the job table's ``env``): the local executor lays it over ``os.environ``,
    the Ray executor over the environment of the node that runs the job.
    """

    id: str
    argv: list[str]  #: ``[python, script relative to cwd, args...]``
    cwd: Path  #: rootdir on the controller
    env: Mapping[str, str]
    output_dir: Path  #: ``<output-dir>/<id>/`` on the controller
    log_path: Path  #: ``<output-dir>/<id>/train.log`` on the controller
    timeout: float | None = None
    resources: Mapping[str, Any] = field(default_factory=dict)  #: cpus, gpus, memory, custom


@dataclass(frozen=True)
class RunResult:
    """How one job's process ended."""

    returncode: int | None  # exit code; negative = killed by that signal (like subprocess)
    duration_s: float
    timed_out: bool
    timeout_s: float | None
    log_path: Path
    interrupted: bool = False  # KeyboardInterrupt/SIGTERM of pytest while running
    error: str | None = None  # the job could not be started / was lost (returncode is None)
    leftovers: int = 0  # processes still running after the job ended (all killed)
    node: str | None = None  # where it ran: "local", "local:gw0", "ray:10.0.0.2"
    cost: JobCost | None = None  # what it cost (None: the executor does not measure it)
    #: why it ended, when the cause is not the job's own (``MSG_OOM``, ``MSG_OUTSIDE_SIGNAL``,
    #: a lost node ...): an infrastructure failure, reported as pytest "error" and retried
    infrastructure: str | None = None
    killed_by_plugin: bool = False  # the plugin sent the signal that ended it (timeout, Ctrl-C)

    @property
    def ok(self) -> bool:
        """True when the job exited with code 0 within its timeout."""
        return self.returncode == 0 and not self.timed_out and not self.interrupted

    @property
    def signal_name(self) -> str | None:
        """Name of the signal that killed the job ("SIGKILL"), or None."""
        if self.returncode is None or self.returncode >= 0:
            return None
        try:
            return signal.Signals(-self.returncode).name
        except ValueError:
            return f"signal {-self.returncode}"

    def describe(self) -> str:
        """One short phrase for the failure report: "exit code 2", "killed by SIGSEGV" ..."""
        if self.timed_out:
            return MSG_TIMED_OUT.format(timeout=format_seconds(self.timeout_s or 0.0))
        if self.interrupted:
            return MSG_INTERRUPTED
        if self.error is not None:
            return self.error
        name = self.signal_name
        if name is not None:
            text = MSG_KILLED.format(signal=name)
            return text + MSG_OOM_HINT if name == "SIGKILL" else text
        if self.returncode is None:
            return "did not run"
        return MSG_EXIT_CODE.format(code=self.returncode)


#: What ``Executor.in_flight`` returns: the jobs running now (id, log path on the controller,
#: ``time.monotonic()`` when it started), and how many wait for room.
InFlight = tuple[list[tuple[str, Path, float]], int]


@runtime_checkable
class Executor(Protocol):
    """Runs jobs for one pytest process; every method the session calls is declared here.

    ``run`` blocks until the job has ended and everything it wrote is in ``job.output_dir``
    on this machine; it kills the job's whole process tree on timeout, and on
    KeyboardInterrupt (re-raised after the kill).  ``close`` ends whatever is still running.

    A new executor subclasses :class:`BaseExecutor`, implements ``run``, and is returned from
    a ``pytest_training_make_executor`` hook implementation (``hookspecs.py``).
    """

    #: Short name shown in headers and summaries ("local", "ray").
    name: str

    def describe(self) -> str | None:
        """One header line saying where the jobs run, or None for none."""
        ...

    def placement(self, job: JobRun) -> str:
        """Where ``job`` would run, in words (``--collect-only``)."""
        ...

    def submit_all(self, jobs: list[JobRun]) -> None:
        """Every job the session will run, in order, before the first item runs (a cluster
        starts them at once; a local executor ignores this)."""
        ...

    def in_flight(self) -> InFlight | None:
        """The jobs running now, for the live status line; None: only the job an item waits
        for (the progress line then follows the items)."""
        ...

    def run(self, job: JobRun) -> RunResult:
        """Run ``job`` to its end."""
        ...

    def close(self) -> None:
        """Release what the executor holds; kill what still runs."""
        ...


class BaseExecutor:
    """Defaults for every optional method of :class:`Executor`; subclasses implement ``run``
    (and ``close`` when they hold something)."""

    name = "executor"

    def describe(self) -> str | None:
        """No header line."""
        return None

    def placement(self, job: JobRun) -> str:
        """The executor's name."""
        return self.name

    def submit_all(self, jobs: list[JobRun]) -> None:
        """Nothing to do: each job starts when its item runs."""

    def in_flight(self) -> InFlight | None:
        """Not tracked: the progress line follows the items."""
        return None

    def run(self, job: JobRun) -> RunResult:  # pragma: no cover - abstract
        """Run ``job`` to its end (subclasses implement this)."""
        raise NotImplementedError

    def close(self) -> None:
        """Nothing held."""
