"""Executors: what runs one training job and says how it ended.

An executor is chosen once per pytest process through the ``pytest_training_make_executor``
hook (see ``hookspecs.py``).  The items hand it a :class:`JobRun` and get back a
:class:`RunResult`; they never know which executor they have.

- ``local.LocalExecutor`` (the default): the per-process reaper of ``reaper.py``.
- ``ray.RayExecutor`` (``--ray ADDRESS``): one Ray task per job on a cluster.
"""

from training_plugin.executors.base import BaseExecutor, Executor, JobRun, RunResult

__all__ = ["BaseExecutor", "Executor", "JobRun", "RunResult"]
