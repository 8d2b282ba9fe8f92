"""The local executor: each job is a child of this pytest process's reaper (``runner.py``)."""

from __future__ import annotations

import os

from training_plugin.executors.base import JobRun, RunResult


class LocalExecutor:
    """Runs jobs on this machine, one at a time per pytest process (xdist gives parallelism)."""

    name = "local"

    def __init__(self, where: str = "local") -> None:
        self.where = where  #: "local", or "local:gw0" on an xdist worker

    def run(self, job: JobRun) -> RunResult:
        """Run through the reaper (tree kill on timeout, Ctrl-C, SIGTERM)."""
        from training_plugin import runner  # starts nothing until the first job

        env = dict(os.environ)
        env.update(job.env)
        result = runner.run_job(list(job.argv), cwd=job.cwd, env=env, log_path=job.log_path,
                                timeout=job.timeout)
        return _with_node(result, self.where)

    def placement(self, job: JobRun) -> str:
        """Always this machine."""
        return self.where

    def close(self) -> None:
        """Stop this process's reaper, if one was started (kills anything running)."""
        import sys

        runner = sys.modules.get("training_plugin.runner")
        if runner is not None:
            runner.shutdown()


def _with_node(result: RunResult, node: str) -> RunResult:
    from dataclasses import replace

    return replace(result, node=node)
