"""The Ray executor (``--ray ADDRESS``): every job is one Ray task on a cluster.

- Connecting (``connect.py``): ``ADDRESS`` is what ``ray.init`` takes (``auto``,
  ``HOST:PORT``, ``ray://HOST:PORT``); ``local`` starts a private Ray instance for the session
  and shuts it down at the end.  An address where nothing answers is a ``pytest.UsageError``
  within seconds.  ``preconnect`` (called at ``pytest_configure``) connects in a background
  thread while the scripts are discovered and analysed; the executor, made at session start,
  takes that connection over and fails as connecting would have.  No warm-up task: a Ray
  worker starts per driver and runtime environment (about a second), and a no-op task sent
  ahead only races the first jobs' own worker starts (bench/bench_ray.py measures this).
- Code (``shipping.py``): the controller's rootdir travels as the jobs' runtime environment
  (``working_dir``), without ``.git``, ``.venv``, output and cache folders and what
  ``.gitignore`` ignores; each job runs inside Ray's copy and imports the project's own
  packages from it.  The nodes share the Python environment (same image or venv).  Run as a
  Ray Job's entrypoint (``ray job submit --working-dir``), the session's working_dir (the
  rootdir, inside the job's copy) overrides the job's, as Ray allows on request.
- Placement (``resources.py``, ``cluster.py``): each job asks for its ``cpus`` / ``gpus`` /
  ``memory`` / custom ``resources``; Ray places it.  A request that no node of the cluster can
  hold fails at once, naming what was asked and what the nodes offer (a Ray task on an
  infeasible request would wait forever).  The executor's view of the nodes
  (``ClusterView``) lists them again only when no node it knows of can hold a request, or
  once when the queue or a lost node asks about every waiting job.
- The queue (``queue.py``, ini ``training_ray_queue``): ``submit_all`` hands every selected
  job to the executor before the first item runs.  With ``executor`` (default) the executor
  keeps them in the order given (longest first) and releases a job to Ray only while the
  cluster has room for it (first fit); each job's end releases more.  With ``ray`` every job
  goes to Ray at once (what an autoscaler needs to see the demand).
- Streams (``stream.py``, ``node.py``): a thread per released job receives its stream (a
  streaming generator task): the log is written to the controller's
  ``<output-dir>/<id>/train.log`` as it comes, the output folder arrives as a tar at the end
  and is unpacked into ``<output-dir>/<id>/`` by ``run`` (after the item has set the earlier
  metrics aside).  No shared filesystem is needed.  Ray Client (``ray://``) runs no streaming
  tasks: there each job's task sends the same messages to a relay actor of the session, which
  the receiving thread polls.
- Progress: ``in_flight`` tells the live status line every job running on the cluster (and
  how many wait), not only the one pytest is waiting on.
- Stopping: the timeout is kept on the node (the job's whole tree is killed there, by the same
  subreaper as locally); Ctrl-C / SIGTERM of pytest cancels every job in flight
  (``ray.cancel(force=True)`` kills the worker, and with it the job's tree); when pytest dies,
  Ray ends its driver's workers and their supervisors kill the trees (under Ray Client once
  the server stops waiting for the client to reconnect: ``CLIENT_GRACE_S``).
- Failures not the job's own (``stream.failure``): a node lost under a job ("node <ip> lost
  while the job ran"), its Ray worker dead, Ray's memory monitor killing it, or a SIGKILL /
  SIGTERM the plugin did not send to the job's process on its node are infrastructure failures
  (``RunResult.infrastructure``: pytest "error", retried under ``--retries`` by
  ``collect/attempts.py``).  Each ``run`` of a job whose last result was taken is its next
  attempt, a new task; a lost node is never counted again, and a retry's task carries a label
  selector away from the nodes lost under its earlier attempts, and from the live nodes where
  they failed so while another node can hold it.  A retry, or a job waiting in
  either queue, that only a lost node could hold ends at once ("node <ip> was lost and no
  live node can run the job: ...") instead of waiting forever in Ray's queue.

Nothing here imports ``ray`` until a connection or an executor is made.
"""

from training_plugin.executors.ray.connect import (
    CLIENT_GRACE_S,
    CONNECT_CHECK_S,
    MSG_CONNECT_FAILED,
    MSG_UNREACHABLE,
    end_preconnect,
    preconnect,
)
from training_plugin.executors.ray.executor import MSG_BAD_QUEUE, TIMEOUT_GRACE_S, RayExecutor
from training_plugin.executors.ray.queue import QUEUE_MODES, Release, ReleaseQueue
from training_plugin.executors.ray.resources import (
    HEAD_RESOURCE,
    MSG_INFEASIBLE,
    describe_request,
    ray_request,
)
from training_plugin.executors.ray.shipping import (
    EXCLUDES,
    MSG_NOT_SHIPPED,
    MSG_OUTPUT_IN_JOB_COPY,
    RAY_JOB_VAR,
    PackageRoots,
)
from training_plugin.executors.ray.stream import (
    MSG_NO_NODE_LEFT,
    MSG_NODE_LOST,
    MSG_RAY_OOM,
    MSG_TASK_ERROR,
    MSG_WORKER_DIED,
    RELAY_POLL_S,
    TIMELINE_VAR,
)

__all__ = [
    "CLIENT_GRACE_S", "CONNECT_CHECK_S", "EXCLUDES", "HEAD_RESOURCE", "MSG_BAD_QUEUE",
    "MSG_CONNECT_FAILED", "MSG_INFEASIBLE", "MSG_NO_NODE_LEFT", "MSG_NODE_LOST",
    "MSG_NOT_SHIPPED", "MSG_OUTPUT_IN_JOB_COPY", "MSG_RAY_OOM", "MSG_TASK_ERROR",
    "MSG_UNREACHABLE", "MSG_WORKER_DIED",
    "QUEUE_MODES", "RAY_JOB_VAR", "RELAY_POLL_S", "TIMELINE_VAR", "TIMEOUT_GRACE_S",
    "PackageRoots", "RayExecutor", "Release", "ReleaseQueue", "describe_request",
    "end_preconnect", "preconnect", "ray_request",
]
