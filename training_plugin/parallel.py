"""Using the machine well under xdist: thread budget, GPUs, timeouts (first version).

P1's plugin registers this module in ``pytest_configure`` with
``config.pluginmanager.register(parallel, "training_plugin.parallel")``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import warnings

import pytest

#: Effective timeout of a training item (float | None), set by ``pytest_timeout_set_timer``.
TIMEOUT_KEY = pytest.StashKey["float | None"]()
_GPUS_KEY = pytest.StashKey["list[str]"]()

#: Thread-pool variables capped under xdist.
THREAD_VARS = (
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "NUMEXPR_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
)
#: Environment override for the GPU device list ("0,1,2"; "" = no GPUs).
GPUS_ENV = "TRAINING_PLUGIN_GPUS"


def usable_cpus() -> int:
    """CPUs this process may run on (affinity mask, not the machine's total)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def worker_count(config: pytest.Config) -> int:
    """Number of xdist workers of this session; 0 when not distributed."""
    workerinput = getattr(config, "workerinput", None)
    if workerinput is not None:
        return int(workerinput["workercount"])
    if config.getoption("dist", "no") == "no":
        return 0
    tx = config.getoption("tx", None) or []
    if tx:
        return len(tx)
    numprocesses = config.getoption("numprocesses", None)
    if numprocesses in ("auto", "logical"):
        return usable_cpus()
    return int(numprocesses or 0)


def worker_index(config: pytest.Config) -> int | None:
    """Index of this xdist worker (gw3 -> 3), None on the controller / without xdist."""
    workerinput = getattr(config, "workerinput", None)
    if workerinput is None:
        return None
    workerid = str(workerinput.get("workerid", ""))
    digits = workerid.lstrip("gw")
    return int(digits) if digits.isdigit() else None


def threads_per_job(config: pytest.Config) -> int | None:
    """Threads each job may use: None without xdist, else max(1, usable_cpus // workers)."""
    workers = worker_count(config)
    if workers <= 0:
        return None
    return max(1, usable_cpus() // workers)


def visible_gpus(config: pytest.Config) -> list[str]:
    """GPU device ids visible to this session (cached per process).

    Order of sources: env ``TRAINING_PLUGIN_GPUS`` (comma list; empty = none), then
    ``CUDA_VISIBLE_DEVICES`` when set, then ``nvidia-smi -L``; none found -> [].
    """
    cached = config.stash.get(_GPUS_KEY, None)
    if cached is not None:
        return cached
    gpus = _detect_gpus(os.environ)
    config.stash[_GPUS_KEY] = gpus
    return gpus


def _split_ids(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def _detect_gpus(environ: "os._Environ[str] | dict[str, str]") -> list[str]:
    if GPUS_ENV in environ:
        return _split_ids(environ[GPUS_ENV])
    if "CUDA_VISIBLE_DEVICES" in environ:
        ids = _split_ids(environ["CUDA_VISIBLE_DEVICES"])
        return [] if ids in (["-1"], []) else ids
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return []
    try:
        out = subprocess.run(
            [exe, "-L"], capture_output=True, text=True, timeout=5, check=False
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [str(i) for i, line in enumerate(out.splitlines()) if line.startswith("GPU ")]


def gpus_for_worker(gpus: list[str], index: int, workers: int) -> list[str]:
    """Devices of worker ``index`` among ``workers``: contiguous even split when there are at
    least as many devices as workers, else round-robin sharing (device ``index % len(gpus)``)."""
    if not gpus or workers <= 0:
        return []
    if len(gpus) < workers:
        return [gpus[index % len(gpus)]]
    base, extra = divmod(len(gpus), workers)
    start = index * base + min(index, extra)
    return gpus[start : start + base + (1 if index < extra else 0)]


def job_environment(config: pytest.Config, job_id: str) -> dict[str, str]:
    """Extra environment for one job: thread caps under xdist, this worker's GPUs."""
    env: dict[str, str] = {}
    threads = threads_per_job(config)
    if threads is not None:
        for name in THREAD_VARS:
            env[name] = str(threads)
        env["TRAINING_THREADS"] = str(threads)
    index = worker_index(config)
    if index is not None:
        devices = gpus_for_worker(visible_gpus(config), index, worker_count(config))
        if devices:
            env["CUDA_VISIBLE_DEVICES"] = ",".join(devices)
    return env


def _is_training_item(item: pytest.Item) -> bool:
    return hasattr(item, "spec") and type(item).__module__.startswith("training_plugin")


@pytest.hookimpl(optionalhook=True, tryfirst=True)
def pytest_timeout_set_timer(item: pytest.Item, settings) -> bool | None:  # type: ignore[no-untyped-def]
    """For training items keep pytest-timeout's timeout for the runner; install no timer."""
    if not _is_training_item(item):
        return None
    item.stash[TIMEOUT_KEY] = settings.timeout
    return True


@pytest.hookimpl(optionalhook=True, tryfirst=True)
def pytest_timeout_cancel_timer(item: pytest.Item) -> bool | None:
    """Training items have no pytest-timeout timer to cancel."""
    if not _is_training_item(item):
        return None
    return True


def pytest_configure(config: pytest.Config) -> None:
    """Warn once (controller) when workers outnumber the GPUs and must share them."""
    if hasattr(config, "workerinput"):
        return
    workers = worker_count(config)
    if workers > 1:
        gpus = visible_gpus(config)
        if gpus and len(gpus) < workers:
            warnings.warn(
                f"training_plugin: {workers} workers share {len(gpus)} GPU(s) round-robin; "
                f"use -n {len(gpus)} to give each worker its own device",
                stacklevel=1,
            )
