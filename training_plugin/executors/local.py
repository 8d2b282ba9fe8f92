"""The local executor: each job is a child of this pytest process's reaper (``reaper.py``)."""

from __future__ import annotations

import os
import sys
from dataclasses import replace

from training_plugin.executors.base import BaseExecutor, JobRun, RunResult


class LocalExecutor(BaseExecutor):
    """Runs jobs on this machine, one at a time per pytest process (xdist gives parallelism)."""

    name = "local"

    def __init__(self, where: str = "local") -> None:
        self.where = where  #: "local", or "local:gw0" on an xdist worker

    def run(self, job: JobRun) -> RunResult:
        """Run through the reaper (tree kill on timeout, Ctrl-C, SIGTERM)."""
        from training_plugin.executors import reaper  # starts nothing until the first job

        env = dict(os.environ)
        env.update(job.env)
        result = reaper.run_job(list(job.argv), cwd=job.cwd, env=env, log_path=job.log_path,
                                timeout=job.timeout)
        return replace(result, node=self.where)

    def placement(self, job: JobRun) -> str:
        """Always this machine."""
        return self.where

    def close(self) -> None:
        """Stop this process's reaper, if one was started (kills anything running)."""
        reaper = sys.modules.get("training_plugin.executors.reaper")
        if reaper is not None:
            reaper.shutdown()
