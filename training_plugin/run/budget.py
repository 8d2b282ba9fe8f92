"""Sharing the machine between parallel jobs: a thread budget per job and GPUs per xdist worker.

Under ``-n N`` each job's thread pools are capped at ``usable_cpus // N`` (OpenMP, MKL, OpenBLAS,
numexpr, Accelerate variables, plus ``TRAINING_THREADS``) so that N jobs share the cores instead
of each starting one thread per core.  Where GPUs are visible, xdist worker ``gwK`` gets its own
device(s) in ``CUDA_VISIBLE_DEVICES``: an even contiguous split when there are at least as many
devices as workers, else devices shared round-robin (with a warning at start-up).

The device list comes from, in this order: env ``TRAINING_PLUGIN_GPUS`` (comma list, "" = none;
an override for users and tests), ``CUDA_VISIBLE_DEVICES`` when set (a cluster's allocation
wins), the ini key ``training_gpus`` (the project's default, ``none`` = no GPUs), ``nvidia-smi
-L`` when installed; else there are no GPUs and nothing changes.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Mapping

import pytest

from training_plugin.pytest_compat import is_controller

#: Thread-pool variables capped under xdist.
THREAD_VARS = (
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "NUMEXPR_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
)
#: The budget itself, for scripts that size their own pools (e.g. torch.set_num_threads).
BUDGET_VAR = "TRAINING_THREADS"
#: Environment override for the GPU device list ("0,1,2"; "" = no GPUs).
GPUS_ENV = "TRAINING_PLUGIN_GPUS"
#: Ini key with the project's default device list ("0,1"; "none" = no GPUs).
GPUS_INI = "training_gpus"
_NVIDIA_SMI_TIMEOUT_S = 5

_GPUS_KEY = pytest.StashKey["list[str]"]()

MSG_SHARED_GPUS = (
    "training_plugin: {workers} xdist workers share {gpus} GPU(s) round-robin "
    "(CUDA_VISIBLE_DEVICES); use -n {gpus} to give each worker its own device"
)


def usable_cpus() -> int:
    """CPUs this process may run on (its affinity mask, not the machine's total)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def worker_count(config: pytest.Config) -> int:
    """Number of xdist workers in this session; 0 when not distributing."""
    workerinput = getattr(config, "workerinput", None)
    if workerinput is not None:
        return int(workerinput["workercount"])
    numprocesses = config.getoption("numprocesses", None)
    if numprocesses in ("auto", "logical"):  # before xdist's pytest_cmdline_main resolved it
        numprocesses = config.hook.pytest_xdist_auto_num_workers(config=config)
    if numprocesses:
        maxprocesses = config.getoption("maxprocesses", None)
        return min(int(numprocesses), int(maxprocesses)) if maxprocesses else int(numprocesses)
    if numprocesses is None and config.getoption("dist", "no") != "no":
        tx = config.getoption("tx", None) or []  # explicit --tx specs ("2*popen")
        return sum(int(s.split("*", 1)[0]) if "*" in s else 1 for s in tx)
    return 0


def worker_index(config: pytest.Config) -> int | None:
    """Index of this xdist worker (gw3 -> 3); None on the controller and without xdist."""
    workerinput = getattr(config, "workerinput", None)
    if workerinput is None:
        return None
    digits = str(workerinput.get("workerid", "")).removeprefix("gw")
    return int(digits) if digits.isdigit() else None


def threads_per_job(config: pytest.Config) -> int | None:
    """Threads each job may use: None without xdist, else max(1, usable_cpus // workers)."""
    workers = worker_count(config)
    if workers <= 0:
        return None
    return max(1, usable_cpus() // workers)


def _split_ids(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def detect_gpus(environ: Mapping[str, str], configured: str = "") -> list[str]:
    """Device ids from the override, CUDA_VISIBLE_DEVICES, ``configured`` (the ini key) or
    nvidia-smi (see module doc)."""
    if GPUS_ENV in environ:
        return _split_ids(environ[GPUS_ENV])
    if "CUDA_VISIBLE_DEVICES" in environ:
        ids = _split_ids(environ["CUDA_VISIBLE_DEVICES"])
        return [] if ids == ["-1"] else ids
    if configured.strip():
        return [] if configured.strip().lower() == "none" else _split_ids(configured)
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return []
    try:
        out = subprocess.run([exe, "-L"], capture_output=True, text=True,
                             timeout=_NVIDIA_SMI_TIMEOUT_S, check=False).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [str(i) for i, line in enumerate(ln for ln in out.splitlines() if ln.startswith("GPU "))]


def _has_ini(config: pytest.Config, name: str) -> bool:
    try:
        config.getini(name)
    except ValueError:  # not registered: training_plugin's ini keys are not loaded
        return False
    return True


def visible_gpus(config: pytest.Config) -> list[str]:
    """GPU device ids visible to this session, detected once per process."""
    gpus = config.stash.get(_GPUS_KEY, None)
    if gpus is None:
        configured = str(config.getini(GPUS_INI)) if _has_ini(config, GPUS_INI) else ""
        gpus = config.stash[_GPUS_KEY] = detect_gpus(os.environ, configured)
    return gpus


def gpus_for_worker(gpus: list[str], index: int, workers: int) -> list[str]:
    """Devices of worker ``index`` of ``workers``: a contiguous even split when there are at
    least as many devices as workers, else one device shared round-robin."""
    if not gpus or workers <= 0:
        return []
    if len(gpus) < workers:
        return [gpus[index % len(gpus)]]
    base, extra = divmod(len(gpus), workers)
    start = index * base + min(index, extra)
    return gpus[start : start + base + (1 if index < extra else 0)]


def thread_env(threads: int) -> dict[str, str]:
    """The thread-pool variables (and ``TRAINING_THREADS``) capped at ``threads``."""
    env = {name: str(threads) for name in THREAD_VARS}
    env[BUDGET_VAR] = str(threads)
    return env


def job_environment(config: pytest.Config, job_id: str) -> dict[str, str]:
    """Extra environment for one job at run time: thread caps under xdist and this worker's
    GPUs.  The caller merges os.environ < this < TRAINING_* vars < the job table's env."""
    del job_id  # the same for every job of a worker today; kept for per-job policies
    threads = threads_per_job(config)
    env = thread_env(threads) if threads is not None else {}
    index = worker_index(config)
    if index is not None:
        devices = gpus_for_worker(visible_gpus(config), index, worker_count(config))
        if devices:
            env["CUDA_VISIBLE_DEVICES"] = ",".join(devices)
    return env


def shared_gpu_warning(config: pytest.Config) -> str | None:
    """The start-up warning when xdist workers outnumber the GPUs (controller), else None."""
    workers = worker_count(config)
    if workers <= 1 or not is_controller(config):
        return None
    gpus = visible_gpus(config)
    if gpus and len(gpus) < workers:
        return MSG_SHARED_GPUS.format(workers=workers, gpus=len(gpus))
    return None
