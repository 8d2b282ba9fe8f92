"""The local executor: each job is a child of this pytest process's reaper (``reaper.py``); a job
with a ``memory`` value runs in a cgroup of its own where the plugin can make one.

The cgroup enforces the job table's ``memory`` and measures the peak memory of the job's whole
tree; the kernel's OOM killer, counted in the group's events, tells an out-of-memory kill from
any other SIGKILL.  A job without a ``memory`` value is measured by the reaper, which samples
its tree's RSS.  Tried in order: cgroup v2 (a child of this process's group in the
unified hierarchy, when its memory controller can be enabled there), cgroup v1 (a child of this
process's group of the memory controller), else none: the reaper samples the tree's RSS, and a
``memory`` limit becomes ``RLIMIT_AS`` (see docs/failures.md for what that can and cannot do).
"""

from __future__ import annotations

import functools
import itertools
import os
import re
import signal
import sys
from dataclasses import replace
from pathlib import Path

from training_plugin.executors.base import (MSG_OOM, MSG_OOM_NO_LIMIT, PEAK_CGROUP_V1,
                                            PEAK_CGROUP_V2, BaseExecutor, JobCost, JobRun,
                                            RunResult, format_bytes)

#: Where the cgroup hierarchies are mounted.
CGROUP_ROOT = Path("/sys/fs/cgroup")
#: A SIGKILLed job without a cgroup's word is taken for out of memory when its peak reached
#: this share of its limit.
OOM_NEAR_LIMIT = 0.9
#: Under RLIMIT_AS an allocation fails inside the job; these words at the end of its log say so.
_ALLOCATION_FAILED = (b"MemoryError", b"std::bad_alloc", b"Cannot allocate memory",
                      b"out of memory")
MSG_RLIMIT_OOM = "out of memory: an allocation failed at its {limit} RLIMIT_AS limit (peak {peak})"
_counter = itertools.count(1)


class JobGroup:
    """One job attempt's cgroup: made before the job starts, read and removed after it."""

    def __init__(self, path: Path, version: int) -> None:
        self.path = path
        self.version = version

    @property
    def procs(self) -> str:
        """The file the reaper writes the job's pid to."""
        return str(self.path / "cgroup.procs")

    @property
    def method(self) -> str:
        """How its peak is measured."""
        return PEAK_CGROUP_V2 if self.version == 2 else PEAK_CGROUP_V1

    def limit(self, limit: int) -> None:
        """Cap the group's memory (and swap) at ``limit`` bytes."""
        if self.version == 2:
            (self.path / "memory.max").write_text(str(limit))
            swap = self.path / "memory.swap.max"
            if swap.exists():
                swap.write_text("0")
        else:
            (self.path / "memory.limit_in_bytes").write_text(str(limit))
            swap = self.path / "memory.memsw.limit_in_bytes"
            if swap.exists():
                swap.write_text(str(limit))

    def peak(self) -> int | None:
        """The group's peak memory in bytes (None: unreadable)."""
        name = "memory.peak" if self.version == 2 else "memory.max_usage_in_bytes"
        try:
            return int((self.path / name).read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def oom_kills(self) -> int:
        """How many processes the kernel's OOM killer ended in the group."""
        name = "memory.events" if self.version == 2 else "memory.oom_control"
        try:
            text = (self.path / name).read_text()
        except OSError:
            return 0
        found = re.search(r"^oom_kill (\d+)$", text, re.MULTILINE)
        return int(found.group(1)) if found else 0

    def remove(self) -> None:
        """Remove the group (its processes are gone by now)."""
        try:
            self.path.rmdir()
        except OSError:
            pass


def own_cgroups(text: str) -> tuple[str | None, str | None]:
    """This process's (unified, memory v1) cgroup paths from ``/proc/self/cgroup`` text."""
    unified = memory = None
    for line in text.splitlines():
        number, _, rest = line.partition(":")
        controllers, _, path = rest.partition(":")
        if number == "0" and controllers == "":
            unified = path
        elif "memory" in controllers.split(","):
            memory = path
    return unified, memory


def make_group(job_id: str, limit: int | None, root: Path | None = None) -> JobGroup | None:
    """A fresh cgroup for one attempt of ``job_id`` (its memory capped at ``limit``), or None
    when no hierarchy lets this process make one (not root, no memory controller, a cgroup v2
    group with processes of its own where the controller is not enabled for children)."""
    name = f"training-{os.getpid()}-{next(_counter)}-{re.sub(r'[^A-Za-z0-9_.-]', '_', job_id)}"
    for parent, version in _parents(CGROUP_ROOT if root is None else root, os.getpid()):
        group = JobGroup(parent / name, version)
        try:
            group.path.mkdir()
        except OSError:
            continue
        try:
            if limit:
                group.limit(limit)
            return group
        except OSError:
            group.remove()
    return None


@functools.lru_cache(maxsize=4)
def _parents(root: Path, pid: int) -> tuple[tuple[Path, int], ...]:
    """Where this process (``pid``: a forked child asks again) may make job groups: its own
    group in the unified hierarchy (when children can get the memory controller), then its
    group of the v1 memory controller."""
    try:
        unified, memory = own_cgroups(Path("/proc/self/cgroup").read_text())
    except OSError:
        return ()
    v2_root = root if (root / "cgroup.controllers").exists() else root / "unified"
    found = []
    if unified is not None and _memory_for_children(v2_root / unified.lstrip("/")):
        found.append((v2_root / unified.lstrip("/"), 2))
    if memory is not None:
        found.append((root / "memory" / memory.lstrip("/"), 1))
    return tuple(found)


def _memory_for_children(parent: Path) -> bool:
    """Whether children of the v2 group ``parent`` get the memory controller (enabled here,
    when it is not yet and the group may enable it)."""
    try:
        if "memory" not in (parent / "cgroup.controllers").read_text().split():
            return False
        if "memory" in (parent / "cgroup.subtree_control").read_text().split():
            return True
        (parent / "cgroup.subtree_control").write_text("+memory")
        return True
    except OSError:
        return False  # EBUSY: the group has processes of its own and is not the root


def gpus_given(env: dict[str, str]) -> float:
    """The GPUs a job sees: the devices in its ``CUDA_VISIBLE_DEVICES``."""
    devices = env.get("CUDA_VISIBLE_DEVICES")
    if not devices:
        return 0.0
    return float(len([d for d in devices.split(",") if d.strip() and d.strip() != "-1"]))


class LocalExecutor(BaseExecutor):
    """Runs jobs on this machine, one at a time per pytest process (xdist gives parallelism)."""

    name = "local"

    def __init__(self, where: str = "local") -> None:
        self.where = where  #: "local", or "local:gw0" on an xdist worker

    def run(self, job: JobRun) -> RunResult:
        """Run through the reaper (tree kill on timeout, Ctrl-C, SIGTERM), in a cgroup of its
        own where one can be made; the result carries what the job cost."""
        from training_plugin.executors import reaper  # starts nothing until the first job

        env = dict(os.environ)
        env.update(job.env)
        limit = _memory_limit(job)
        # only a job with a memory value: moving a process into a cgroup waits for an RCU
        # grace period (about 8 ms on cgroup v1), which a hundred trivial jobs would feel
        group = make_group(job.id, limit) if limit else None
        try:
            result = reaper.run_job(
                list(job.argv), cwd=job.cwd, env=env, log_path=job.log_path,
                timeout=job.timeout, cgroup_procs=group.procs if group else None,
                rlimit_as=limit if limit and group is None else None)
            result = _measured(result, group, limit, gpus_given(dict(job.env)))
        finally:
            if group is not None:
                group.remove()
        return replace(result, node=self.where)

    def placement(self, job: JobRun) -> str:
        """Always this machine."""
        return self.where

    def close(self) -> None:
        """Stop this process's reaper, if one was started (kills anything running)."""
        reaper = sys.modules.get("training_plugin.executors.reaper")
        if reaper is not None:
            reaper.shutdown()


def _memory_limit(job: JobRun) -> int | None:
    value = job.resources.get("memory")
    try:
        return int(value) if value else None
    except (TypeError, ValueError):
        return None


def _measured(result: RunResult, group: JobGroup | None, limit: int | None,
              gpus: float) -> RunResult:
    """The result with the cgroup's figures, the limit and the GPUs in its cost, and an OOM
    kill (the group's events; else a SIGKILL with the peak near the limit) as its
    infrastructure cause."""
    cost = result.cost or JobCost(wall_s=result.duration_s)
    in_group = group is not None and cost.peak_method is None
    group_peak = None
    if in_group:  # pages the job touched before it was moved count against the old group
        group_peak = group.peak()
        peak = max(group_peak or 0, cost.peak_bytes or 0)
        cost = replace(cost, peak_bytes=peak or None, peak_method=group.method)
    cost = replace(cost, gpus=gpus, memory_limit=limit,
                   limit_method=None if not limit else
                   (f"cgroup v{group.version}" if group else "RLIMIT_AS"))
    oom = False
    if not result.ok and not result.killed_by_plugin and result.returncode is not None:
        if in_group:
            oom = group.oom_kills() > 0  # the main process or any other of the tree
        elif limit and cost.peak_bytes and result.returncode == -signal.SIGKILL:
            oom = cost.peak_bytes >= OOM_NEAR_LIMIT * limit
        elif limit and result.returncode > 0 and _allocation_failed(result.log_path):
            return replace(result, cost=cost, infrastructure=MSG_RLIMIT_OOM.format(
                limit=format_bytes(limit), peak=format_bytes(cost.peak_bytes or 0)))
    infrastructure = result.infrastructure
    if oom:  # the peak the limit held down
        peak = format_bytes(group_peak or cost.peak_bytes or 0)
        infrastructure = (MSG_OOM.format(peak=peak, limit=format_bytes(limit)) if limit
                          else MSG_OOM_NO_LIMIT.format(peak=peak))
    return replace(result, cost=cost, infrastructure=infrastructure)


def _allocation_failed(log_path: Path, tail: int = 4096) -> bool:
    """Whether the end of the log says that an allocation failed."""
    try:
        with open(log_path, "rb") as fh:
            fh.seek(max(0, os.fstat(fh.fileno()).st_size - tail))
            data = fh.read(tail)
    except OSError:
        return False
    return any(word in data for word in _ALLOCATION_FAILED)
