"""The Ray executor (``--ray ADDRESS``): every job is one Ray task on a cluster.

- Connecting: ``ADDRESS`` is what ``ray.init`` takes (``auto``, ``HOST:PORT``,
  ``ray://HOST:PORT``); ``local`` starts a private Ray instance for the session and shuts it
  down at the end.  An address where nothing answers is a ``pytest.UsageError`` within seconds.
  ``preconnect`` (called at ``pytest_configure``) connects in a background thread while the
  scripts are discovered and analysed; the executor, made at session start, waits for that
  connection and fails as it would have.  (No warm-up task: a Ray worker starts per driver and
  runtime environment, about a second, and a no-op task sent ahead to start one only raced the
  first jobs' own worker starts; measured in bench/bench_ray.py.)
- Code: the controller's rootdir travels as the job's runtime environment (``working_dir``),
  without ``.git``, ``.venv``, output and cache folders and what ``.gitignore`` ignores; each
  job runs inside Ray's copy.  The nodes share the Python environment (same image or venv).
  Run as a Ray Job's entrypoint (``ray job submit --working-dir``), the session's working_dir
  (the rootdir, inside the job's copy) overrides the job's, as Ray allows on request.
- Placement: each job asks for its ``cpus`` / ``gpus`` / ``memory`` / custom ``resources``;
  Ray places it.  A request that no node of the cluster can hold fails at once, naming what
  was asked and what the nodes offer (a Ray task on an infeasible request would wait forever).
- The queue (ini ``training_ray_queue``): ``submit_all`` hands every selected job to the
  executor before the first item runs.  With ``executor`` (default) the executor keeps them in
  the order given (longest first) and releases a job to Ray only while the cluster has room for
  it: the resources of the released, unfinished jobs are laid on the nodes (a started job on
  its node, the others first fit), and the first waiting jobs that still fit somewhere go; each
  job's end releases more.  Ray itself would not keep that order: the raylets queue lease
  requests per resource shape and serve the shapes in no particular order, so a short job can
  take a free node before a long one.  With ``ray`` every job goes to Ray at once (what an
  autoscaler needs to see the demand).
- Streams: a thread per released job receives its stream (``_ray_node.run_job``, a
  streaming generator task): the log is written to the controller's
  ``<output-dir>/<id>/train.log`` as it comes, the output folder arrives as a tar at the end
  and is unpacked into ``<output-dir>/<id>/`` by ``run`` (after the item has set the earlier
  metrics aside).  No shared filesystem is needed.  Ray Client (``ray://``) runs no streaming
  tasks: there each job's task (``run_job_relayed``) sends the same messages to a relay actor
  of the session, which the receiving thread polls every ``RELAY_POLL_S``.
- Progress: ``in_flight`` tells the live status line every job running on the cluster (and
  how many wait), not only the one pytest is waiting on.
- Stopping: the timeout is kept on the node (the job's whole tree is killed there, by the same
  subreaper as locally); Ctrl-C / SIGTERM of pytest cancels every job in flight
  (``ray.cancel(force=True)`` kills the worker, and with it the job's tree); when pytest dies,
  Ray ends its driver's workers and their supervisors kill the trees (under Ray Client once
  the server stops waiting for the client to reconnect: ``CLIENT_GRACE_S``).
- A node that dies under a job fails that job with "node <ip> lost while the job ran".
"""

from __future__ import annotations

import logging
import os
import re
import signal
import socket
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from training_plugin.executors.base import JobRun, RunResult

MSG_UNREACHABLE = (
    "--ray {address}: no Ray cluster answers there ({why}). Start one with "
    "`ray start --head --port=6379` and pass --ray HOST:6379, or use --ray local for a private "
    "instance on this machine."
)
MSG_OUTPUT_IN_JOB_COPY = (
    "outputs go to {out}, inside Ray's temporary copy of the project (this is a Ray Job): "
    "pass --output-dir=PATH (a folder that outlives the job) to keep them"
)
MSG_CONNECT_FAILED = ("--ray {address}: could not open a session on the Ray cluster (connect, "
                      "then ship the project as its working_dir): {why}")
MSG_INFEASIBLE = "asks for {asked}, which no node of the cluster has ({offer})"
MSG_NODE_LOST = "node {node} lost while the job ran"
MSG_WORKER_DIED = "the Ray worker running the job died ({why})"
MSG_TASK_ERROR = "the Ray task failed: {why}"
MSG_BAD_QUEUE = ("training_ray_queue = {value!r}: expected executor (the executor releases jobs "
                 "longest first as the cluster has room) or ray (every job to Ray at once, "
                 "for autoscaling clusters)")
QUEUE_MODES = ("executor", "ray")
#: Seconds to wait for a TCP answer from HOST:PORT before calling the address a usage error.
CONNECT_CHECK_S = 5.0
#: Seconds past a job's timeout after which the controller cancels a task whose node is silent.
TIMEOUT_GRACE_S = 30.0
#: Env var: a file to which each job's timeline (submitted, began on its node, job started,
#: ended, node; wall-clock seconds) is appended as one JSON line (bench/bench_ray.py reads it).
TIMELINE_VAR = "TRAINING_RAY_TIMELINE"
#: Seconds between two pulls of a job's messages from the relay (Ray Client sessions).
RELAY_POLL_S = 0.2
#: Ray Client keeps a disconnected client's work for this long (seconds) before it ends it;
#: the executor's default when ``RAY_CLIENT_RECONNECT_GRACE_PERIOD`` is not set (Ray's own is
#: 30 s), so that jobs of a killed pytest are gone within 30 s.
CLIENT_GRACE_S = "15"
#: Set by Ray's job supervisor for the driver of a Ray Job (``ray job submit``): the job's
#: runtime environment, which ``ray.init`` merges with the session's.
RAY_JOB_VAR = "RAY_JOB_CONFIG_JSON_ENV_VAR"
#: Folders never shipped to the nodes (besides what .gitignore ignores).
EXCLUDES = [".git", ".venv", "venv", "__pycache__", ".pytest_cache", ".mypy_cache",
            ".ruff_cache", ".tox", ".nox", "node_modules", "*.egg-info"]

#: Log records of Ray's that a connection from a background thread makes (the SIGTERM handler
#: is left alone there, as the executor wants); Ray Client's server says the same.
_QUIET = ("SIGTERM handler is not set",)
#: Where Ray logs them: its worker, and Ray Client's copy of its server's log.
_QUIET_LOGGERS = ("ray._private.worker", "ray.util.client.logsclient")

_RAY_TO_OURS = {"CPU": "cpus", "GPU": "gpus", "memory": "memory"}
#: The resource Ray gives the head node only.
HEAD_RESOURCE = "node:__internal_head__"


def _format_amount(name: str, value: float) -> str:
    if name == "memory":
        return f"memory={value / 2**30:.3g}GiB"
    return f"{name}={value:g}"


def ray_request(resources: dict[str, Any]) -> dict[str, float]:
    """A job's ``resources`` in Ray's names: CPU, GPU, memory, custom names."""
    request: dict[str, float] = {"CPU": float(resources.get("cpus", 1) or 0)}
    if resources.get("gpus"):
        request["GPU"] = float(resources["gpus"])
    if resources.get("memory"):
        request["memory"] = float(resources["memory"])
    for name, amount in (resources.get("resources") or {}).items():
        request[name] = float(amount)
    return {k: v for k, v in request.items() if v}


def describe_request(request: dict[str, float]) -> str:
    """``cpus=4, gpus=1, bigmem=1`` (the job table's names)."""
    return ", ".join(_format_amount(_RAY_TO_OURS.get(k, k), v) for k, v in request.items())


def _describe_offer(resources: dict[str, float]) -> str:
    shown = []
    for key in ("CPU", "GPU", "memory"):
        if resources.get(key):
            shown.append(_format_amount(_RAY_TO_OURS[key], resources[key]))
    for key, value in sorted(resources.items()):
        if key in ("CPU", "GPU", "memory", "object_store_memory") or key.startswith("node:") \
                or key.startswith("accelerator_type:"):
            continue
        shown.append(_format_amount(key, value))
    return ", ".join(shown) or "nothing"


@dataclass
class _Node:
    node_id: str
    ip: str
    name: str
    resources: dict[str, float]

    @property
    def label(self) -> str:
        """The IP, with the node's name when it has its own."""
        return self.ip if self.name in ("", self.ip) else f"{self.ip} ({self.name})"

    @property
    def where(self) -> str:
        """``ray:<name>`` (the name is the IP unless the node was given one)."""
        return f"ray:{self.name or self.ip}"


@dataclass
class _Flight:
    """One submitted job: its task, what came back so far, and how it ended."""

    job: JobRun
    request: dict = field(default_factory=dict)
    released: bool = False
    task: Any = None  #: the Ray task: a streaming generator, or (Ray Client) its ObjectRef
    thread: threading.Thread | None = None
    done: threading.Event = field(default_factory=threading.Event)
    submitted: float = field(default_factory=time.monotonic)
    times: dict = field(default_factory=lambda: {"submitted": time.time()})
    started: float | None = None
    node: _Node | None = None
    node_id: str | None = None
    workdir: str | None = None  #: Ray's copy of the rootdir on the job's node
    tar_path: str | None = None
    exit: dict | None = None
    error: str | None = None
    cancelled: bool = False


def _is_client(address: str) -> bool:
    """Whether ``address`` goes through Ray Client (``ray://``)."""
    return address.startswith("ray://")


def _check_reachable(address: str) -> None:
    """A usage error within seconds when nothing answers at ``address``."""
    import ray

    if address == "local":
        return
    target = address
    if address == "auto":
        try:
            from ray._private.services import canonicalize_bootstrap_address_or_die

            target = canonicalize_bootstrap_address_or_die("auto")
        except (ConnectionError, Exception) as exc:  # noqa: BLE001 - Ray raises several kinds
            raise pytest.UsageError(MSG_UNREACHABLE.format(address=address, why=exc)) from None
    if target.startswith("ray://"):
        target = target[len("ray://"):]
    host, sep, port = target.rpartition(":")
    if not sep or not port.isdigit():
        raise pytest.UsageError(
            MSG_UNREACHABLE.format(address=address, why="expected auto, HOST:PORT, "
                                   "ray://HOST:PORT or local"))
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=CONNECT_CHECK_S).close()
    except OSError as exc:
        raise pytest.UsageError(MSG_UNREACHABLE.format(address=address, why=exc)) from None
    del ray


def _runtime_env(config: pytest.Config) -> dict[str, Any]:
    """The jobs' runtime environment: the rootdir, without what never travels (VCS,
    environments, caches, the output folder; .gitignore is honoured by Ray itself)."""
    rootdir = Path(config.rootpath)
    excludes = list(EXCLUDES)
    out = _output_root(config)
    if out is not None:
        try:
            rel = Path(out).resolve().relative_to(rootdir.resolve())
            if str(rel) not in ("", "."):
                excludes.append("/" + rel.as_posix())
        except ValueError:
            pass
    return {"working_dir": str(rootdir), "excludes": excludes}


#: Run by the controller's Python in the rootdir, as a job would start (without the current
#: folder on the path): for each of the rootdir's top-level names (name -> the rootdir's
#: folders holding it), where it would import from; prints the rootdir's folders a job needs
#: on its path (relative, JSON).  A name that imports from inside the rootdir needs the folder
#: it imports from.  One that imports from neither the rootdir nor the Python environment
#: (which the nodes share), but from a file identical to the rootdir's own, is the same code
#: at a path that only this machine may have: the checkout, when pytest runs in a copy of it
#: (a Ray Job's working_dir) and an editable install or a PYTHONPATH entry points at the
#: original; the rootdir's folder holding that file stands in for it.
_ROOTS_PROBE = """
import importlib.util, json, os, site, sys
del sys.path[0]
root = os.path.realpath(sys.argv[1])
env = [os.path.realpath(p) for p in [sys.prefix, sys.base_prefix, sys.exec_prefix,
       *site.getsitepackages(), site.getusersitepackages()] if p]
def inside(place, folder):
    return place == folder or place.startswith(folder + os.sep)
def read(path):
    try:
        with open(path, "rb") as fh:
            return fh.read()
    except OSError:
        return None
def same_code(place, name, folder):
    if os.path.isdir(place):
        mine = os.path.join(root, folder, name, "__init__.py")
        place = os.path.join(place, "__init__.py")
    else:
        mine = os.path.join(root, folder, name + ".py")
    text = read(place)
    return text is not None and text == read(mine)
found = set()
for name, folders in json.loads(sys.argv[2]).items():
    try:
        spec = importlib.util.find_spec(name)
    except Exception:
        continue
    if spec is None:
        continue
    places = list(spec.submodule_search_locations or ()) or [spec.origin or ""]
    for place in places:
        place = os.path.realpath(place) if place else ""
        if inside(place, root):
            found.add(os.path.relpath(os.path.dirname(place), root))
        elif os.path.isabs(place) and not any(inside(place, e) for e in env):
            found.update(f for f in folders if same_code(place, name, f))
print(json.dumps(sorted(found)))
"""


class _PackageRoots:
    """The rootdir's folders from which a job imports the project's own packages locally
    (``.`` and ``src`` here: an editable install maps ``aimedres`` to ``<rootdir>/src``), and
    those holding a package that imports from an identical file outside both the rootdir and
    the Python environment (in a Ray Job, pytest runs in Ray's copy of the checkout, and the
    editable install still points at the original).  On a node those paths are the controller's, and may
    not exist (no checkout) or hold other code; each job gets Ray's copy of these folders first
    on its ``PYTHONPATH`` instead.

    Asked of a fresh interpreter (started at once, read by ``get``), because pytest's own
    ``sys.path`` is not what a job sees."""

    def __init__(self, rootdir: Path) -> None:
        import json
        import subprocess

        names: dict[str, list[str]] = {}
        bases = [rootdir] + sorted(
            d for d in _listdir(rootdir) if d.is_dir() and not d.name.startswith(".")
            and d.name not in EXCLUDES and not (d / "__init__.py").exists())
        for base in bases:
            for entry in _listdir(base):
                name = entry.stem if entry.suffix == ".py" else entry.name
                if name.isidentifier() and (entry.suffix == ".py" or (
                        entry.is_dir() and (entry / "__init__.py").exists())):
                    names.setdefault(name, []).append(base.relative_to(rootdir).as_posix())
        self.roots: list[str] | None = None
        try:
            self._proc: Any = subprocess.Popen(
                [sys.executable, "-c", _ROOTS_PROBE, str(rootdir), json.dumps(names)],
                cwd=rootdir, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        except OSError:
            self._proc, self.roots = None, []

    def get(self) -> list[str]:
        """The folders, relative to the rootdir (``[]`` when the probe failed)."""
        if self.roots is None:
            import json

            try:
                out, _ = self._proc.communicate(timeout=60)
                roots = json.loads(out)
                self.roots = [r for r in roots if isinstance(r, str)]
            except Exception:  # noqa: BLE001 - no probe: Ray's working_dir alone is on the path
                self._proc.kill()
                self.roots = []
        return self.roots


def _listdir(folder: Path) -> list[Path]:
    try:
        return sorted(folder.iterdir())
    except OSError:
        return []


class _Quiet(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(_QUIET)


_QUIET_FILTER = _Quiet()


def _connect(address: str, runtime_env: dict[str, Any]) -> None:
    """``ray.init`` for this session; a ``pytest.UsageError`` when it cannot connect."""
    import ray

    _check_reachable(address)
    for name in _QUIET_LOGGERS:
        logging.getLogger(name).addFilter(_QUIET_FILTER)
    main = threading.current_thread() is threading.main_thread()
    previous_sigterm = signal.getsignal(signal.SIGTERM) if main else None  # ray.init sets one
    try:
        kwargs: dict[str, Any] = dict(runtime_env=runtime_env, log_to_driver=False,
                                      logging_level=logging.WARNING, configure_logging=True)
        if address == "local":
            kwargs.update(address="local", include_dashboard=False)
        else:
            if _is_client(address):
                os.environ.setdefault("RAY_CLIENT_RECONNECT_GRACE_PERIOD", CLIENT_GRACE_S)
            if RAY_JOB_VAR in os.environ:
                # pytest runs as a Ray Job's entrypoint (``ray job submit --working-dir .``):
                # Ray refuses a second working_dir beside the job's unless told to let the
                # session's win.  The rootdir (inside the job's copy) then ships as in any
                # other session, the job's other settings (pip, env_vars) kept.
                os.environ.setdefault("RAY_OVERRIDE_JOB_RUNTIME_ENV", "1")
            kwargs.update(address=address)
        ray.init(**kwargs)
    except pytest.UsageError:
        raise
    except Exception as exc:  # noqa: BLE001 - ConnectionError, RuntimeError, ValueError ...
        raise pytest.UsageError(MSG_CONNECT_FAILED.format(address=address, why=exc)) from None
    finally:
        if main:
            signal.signal(signal.SIGTERM, previous_sigterm)


class _Preconnect:
    """``ray.init`` in a background thread (see the module docstring), or at once on this
    thread (``background=False``: ``--ray local``, whose private instance starts on the main
    thread, and an executor that found no background connection)."""

    def __init__(self, config: pytest.Config, address: str, background: bool = True) -> None:
        self.address = address
        self.runtime_env = _runtime_env(config)
        self.package_roots = _PackageRoots(Path(config.rootpath))
        self.connected = threading.Event()
        self.error: BaseException | None = None
        self.used = False
        self.thread: threading.Thread | None = None
        if background:
            self.thread = threading.Thread(target=self._run, name="ray-connect", daemon=True)
            self.thread.start()
        else:
            self._run()

    def _run(self) -> None:
        try:
            _connect(self.address, self.runtime_env)
        except BaseException as exc:  # noqa: BLE001 - raised in the main thread by wait()
            self.error = exc
            self.connected.set()
            return
        try:
            import ray

            # Ray builds its serialization context (imports pyarrow, pydantic, numpy: a
            # quarter second) on first use; here, not on the first job's submission.
            ray.put(None)
        except Exception:  # noqa: BLE001 - only a head start; the jobs will tell
            pass
        finally:
            self.connected.set()

    def wait(self) -> None:
        """Block until connected; raise what connecting raised."""
        self.connected.wait()
        if self.error is not None and not isinstance(self.error, Exception):
            raise self.error  # KeyboardInterrupt while connecting on this thread
        if isinstance(self.error, pytest.UsageError):
            raise pytest.UsageError(str(self.error))
        if self.error is not None:
            raise pytest.UsageError(MSG_CONNECT_FAILED.format(address=self.address,
                                                              why=self.error))


_PRECONNECT = pytest.StashKey[_Preconnect]()


def preconnect(config: pytest.Config, address: str) -> None:
    """Start connecting to ``address`` in the background; ``RayExecutor`` picks the
    connection up.  Not for ``local`` (a private instance starts in the executor)."""
    if address == "local" or _PRECONNECT in config.stash:
        return
    config.stash[_PRECONNECT] = _Preconnect(config, address)


def end_preconnect(config: pytest.Config) -> None:
    """Disconnect a background connection no executor took over (the session ended early)."""
    pre = config.stash.get(_PRECONNECT, None)
    if pre is None:
        return
    del config.stash[_PRECONNECT]
    if pre.used:
        return
    if pre.thread is not None:
        pre.thread.join(CONNECT_CHECK_S + 60.0)
    if pre.error is None:
        try:
            import ray

            ray.shutdown()
        except Exception:  # noqa: BLE001
            pass


class RayExecutor:
    """Runs every job as a Ray task (see the module docstring)."""

    name = "ray"

    def __init__(self, config: pytest.Config, address: str) -> None:
        import ray

        from training_plugin.executors import _ray_node

        self.config = config
        self.address = address
        self.rootdir = Path(config.rootpath)
        self.flights: dict[str, _Flight] = {}
        self.lock = threading.Lock()
        self.closed = False
        self.stopping = False  # cancel_all ran: release nothing more
        #: Handed to the executor, not yet released to Ray (in the order given).
        self.waiting: list[_Flight] = []
        self.queue_mode = _queue_mode(config)
        pre = config.stash.get(_PRECONNECT, None)
        if pre is None or pre.address != address or pre.used:
            pre = _Preconnect(config, address, background=False)
        pre.used = True  # this executor's close() disconnects
        pre.wait()
        self.package_roots = pre.package_roots.get()
        ray.cloudpickle.register_pickle_by_value(_ray_node)
        self._ray = ray
        self._reaper_source = Path(__file__).parents[1].joinpath("_reaper.py").read_text()
        #: Ray Client (``ray://``) runs no streaming tasks: each job's task sends what it
        #: streams to a relay actor instead, and the controller pulls it from there.
        self._relay = None
        self._nodes: dict[str, _Node] = {}
        self._refresh_nodes()
        if _is_client(address):
            self._relay = ray.remote(_ray_node.Relay).options(
                num_cpus=0, max_restarts=0, **self._on_head()).remote()
            self._task = ray.remote(_ray_node.run_job_relayed)
        else:
            self._task = ray.remote(_ray_node.run_job)

    # -- the cluster ----------------------------------------------------------------------------
    def _on_head(self) -> dict[str, Any]:
        """Scheduling options that keep an actor on the head node (the relay: on another node,
        that node's loss would cut every job's stream, not only its own jobs')."""
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        for node in self._nodes.values():
            if node.resources.get(HEAD_RESOURCE):
                return {"scheduling_strategy": NodeAffinitySchedulingStrategy(node.node_id,
                                                                              soft=False)}
        return {}

    def _refresh_nodes(self) -> dict[str, _Node]:
        nodes = {}
        for info in self._ray.nodes():
            if not info.get("Alive"):
                continue
            node = _Node(node_id=info["NodeID"], ip=info.get("NodeManagerAddress", "?"),
                         name=info.get("NodeName") or "", resources=dict(info.get("Resources", {})))
            nodes[node.node_id] = node
        self._nodes = nodes
        return nodes

    def _fitting(self, request: dict[str, float]) -> list[_Node]:
        return [n for n in self._nodes.values()
                if all(n.resources.get(k, 0.0) >= v for k, v in request.items())]

    def infeasible(self, job: JobRun) -> str | None:
        """Why no node can ever run ``job`` (asked vs offered), or None when one can."""
        request = ray_request(dict(job.resources))
        if self._fitting(request):
            return None
        self._refresh_nodes()  # nodes may have joined since
        if self._fitting(request):
            return None
        return self._infeasible_now(request)

    def describe(self) -> str:
        """Header line: where, how big, what travels (and, in a Ray Job's copy of the project,
        that outputs left inside it are lost)."""
        nodes = self._nodes.values()
        cpus = sum(n.resources.get("CPU", 0) for n in nodes)
        gpus = sum(n.resources.get("GPU", 0) for n in nodes)
        where = "a private Ray instance" if self.address == "local" else f"Ray at {self.address}"
        line = (f"{where}: {len(self._nodes)} node(s), {cpus:g} CPUs, {gpus:g} GPUs; "
                f"code ships from {self.rootdir} (runtime_env working_dir"
                + (f"; imports from {', '.join(self.package_roots)}" if self.package_roots
                   else "") + ")")
        out = _output_root(self.config)
        if out is not None and _in_ray_job_copy(self.rootdir) and _inside(out, self.rootdir):
            line += "; " + MSG_OUTPUT_IN_JOB_COPY.format(out=out)
        return line

    def placement(self, job: JobRun) -> str:
        """Where ``job`` could run: the nodes that can hold its request, or why none can."""
        why = self.infeasible(job)
        if why is not None:
            return f"nowhere: {why}"
        request = ray_request(dict(job.resources))
        nodes = ", ".join(n.where for n in self._fitting(request))
        return f"Ray places it on one of: {nodes} ({describe_request(request)})"

    # -- submitting -----------------------------------------------------------------------------
    def submit_all(self, jobs: list[JobRun]) -> None:
        """Hand every job to the executor now, in this order; infeasible ones fail at once.
        Released to Ray as the cluster has room (``executor``) or all at once (``ray``)."""
        for job in jobs:
            self._enqueue(job)
        self._pump()

    def _enqueue(self, job: JobRun) -> _Flight:
        with self.lock:
            flight = self.flights.get(job.id)
            if flight is not None:
                return flight
            flight = self.flights[job.id] = _Flight(job=job)
        why = self.infeasible(job)
        if why is not None:
            flight.error = why
            flight.done.set()
            return flight
        flight.request = ray_request(dict(job.resources))
        with self.lock:
            if self.stopping:
                flight.cancelled = True
                flight.error = "cancelled"
                flight.done.set()
            else:
                self.waiting.append(flight)
        return flight

    def _pump(self) -> None:
        """Release waiting jobs to Ray: all (``ray``), or, in order, those the cluster has
        room for next to the released, unfinished ones (``executor``); a waiting job that no
        live node can hold any more (its node left) fails."""
        with self.lock:
            if self.stopping or not self.waiting:
                return
            if self.queue_mode == "ray":
                release, self.waiting = self.waiting, []
            else:
                release = self._fit_waiting()
            for flight in release:
                self._release(flight)

    def _fit_waiting(self) -> list[_Flight]:
        """The waiting flights that fit now (removed from ``waiting``); the lock is held."""
        try:
            self._refresh_nodes()
        except Exception:  # noqa: BLE001 - the cluster is unreachable: keep the last view
            pass
        free = {nid: dict(node.resources) for nid, node in self._nodes.items()}

        def place(request: dict[str, float], prefer: str | None = None) -> bool:
            order = sorted(free, key=lambda nid: nid != prefer)
            for nid in order:
                room = free[nid]
                if all(room.get(k, 0.0) >= v - 1e-9 for k, v in request.items()):
                    for k, v in request.items():
                        room[k] = room.get(k, 0.0) - v
                    return True
            return False

        for flight in self.flights.values():
            if flight.released and not flight.done.is_set():
                place(flight.request, flight.node_id)
        release, keep = [], []
        for flight in self.waiting:
            if place(flight.request):
                release.append(flight)
            elif not self._fitting(flight.request):
                flight.error = self._infeasible_now(flight.request)
                flight.done.set()
            else:
                keep.append(flight)
        self.waiting = keep
        return release

    def _infeasible_now(self, request: dict[str, float]) -> str:
        offer = "; ".join(f"node {n.label}: {_describe_offer(n.resources)}"
                          for n in self._nodes.values()) or "no live nodes"
        return MSG_INFEASIBLE.format(asked=describe_request(request), offer=offer)

    def _release(self, flight: _Flight) -> None:
        """Submit the flight's Ray task and start its receiving thread."""
        job = flight.job
        request = flight.request
        flight.released = True
        flight.times["released"] = time.time()
        custom = {k: v for k, v in request.items() if k not in ("CPU", "GPU", "memory")}
        options: dict[str, Any] = dict(max_retries=0,
                                       num_cpus=request.get("CPU", 0),
                                       num_gpus=request.get("GPU", 0), name=f"training:{job.id}")
        if "memory" in request:
            options["memory"] = int(request["memory"])
        if custom:
            options["resources"] = custom
        relay = () if self._relay is None else (self._relay,)
        if not relay:
            options["num_returns"] = "streaming"
        controller = {"output_dir": str(job.output_dir), "cwd": str(job.cwd),
                      "python": sys.executable, "package_roots": self.package_roots}
        try:
            flight.task = self._task.options(**options).remote(
                *relay, job.id, [str(a) for a in job.argv], dict(job.env), controller, job.timeout,
                self._reaper_source)
        except Exception as exc:  # noqa: BLE001 - the cluster went away, a Ray error ...
            flight.error = MSG_TASK_ERROR.format(why=_first_line(exc))
            flight.done.set()
            return
        flight.thread = threading.Thread(target=self._receive, args=(flight,),
                                         name=f"ray-job-{job.id}", daemon=True)
        flight.thread.start()

    def _receive(self, flight: _Flight) -> None:
        """Consume one job's stream: log to the controller's train.log, the output tar to a
        temporary file, then how it ended."""
        job = flight.job
        log = None
        tar = None
        try:
            for kind, payload in self._messages(flight):
                if kind == "start":
                    flight.started = time.monotonic()
                    flight.times.update(seen=time.time(), began=payload.get("began"),
                                        spawned=payload.get("spawned"))
                    flight.node_id = payload["node_id"]
                    flight.workdir = payload.get("workdir")
                    flight.node = self._nodes.get(payload["node_id"]) or _Node(
                        payload["node_id"], payload["ip"], "", {})
                    if flight.node.node_id not in self._nodes:
                        self._refresh_nodes()
                        flight.node = self._nodes.get(payload["node_id"], flight.node)
                    job.log_path.parent.mkdir(parents=True, exist_ok=True)
                    log = open(job.log_path, "wb")  # noqa: SIM115 - closed in finally
                elif kind == "log":
                    if log is None:
                        job.log_path.parent.mkdir(parents=True, exist_ok=True)
                        log = open(job.log_path, "wb")  # noqa: SIM115
                    log.write(payload)
                    log.flush()
                elif kind == "out":
                    if tar is None:
                        fd, flight.tar_path = tempfile.mkstemp(prefix="training-out-",
                                                               suffix=".tar")
                        tar = os.fdopen(fd, "wb")
                    tar.write(payload)
                elif kind == "exit":
                    if "error" in payload:
                        flight.error = payload["error"]
                        _write_note(job.log_path, payload["error"])
                    else:
                        flight.exit = payload
        except BaseException as exc:  # noqa: BLE001 - every Ray failure becomes the job's story
            flight.error = self._story(flight, exc)
        finally:
            if log is not None:
                log.close()
            if tar is not None:
                tar.close()
            flight.times["ended"] = time.time()
            _record_timeline(flight)
            flight.done.set()
            self._pump()  # its resources are free: release what fits now

    def _messages(self, flight: _Flight):
        """The job's ``(kind, payload)`` pairs as they come: from its streaming generator,
        or (Ray Client) pulled from the relay while the task runs; a failed task raises its
        error here."""
        ray = self._ray
        if self._relay is None:
            for ref in flight.task:
                yield ray.get(ref)
            return
        while True:
            # the task pushes every pair before it returns: once it is done, this pull is the last
            done, _ = ray.wait([flight.task], timeout=RELAY_POLL_S)
            yield from ray.get(self._relay.pull.remote(flight.job.id))
            if done:
                ray.get(flight.task)  # its error, if it failed
                return

    def _story(self, flight: _Flight, exc: BaseException) -> str:
        ray = self._ray
        if flight.cancelled or isinstance(exc, ray.exceptions.TaskCancelledError):
            flight.cancelled = True
            return "cancelled"
        system = (ray.exceptions.WorkerCrashedError, ray.exceptions.NodeDiedError,
                  ray.exceptions.ObjectLostError, ray.exceptions.RaySystemError,
                  ray.exceptions.LocalRayletDiedError)
        if flight.node is not None and isinstance(exc, system):
            text = str(exc).lower()
            if isinstance(exc, ray.exceptions.NodeDiedError) or (
                    "node" in text and ("dead" in text or "died" in text)):
                return MSG_NODE_LOST.format(node=flight.node.label)  # Ray says so itself
            deadline = time.monotonic() + 60.0
            while time.monotonic() < deadline:  # the head declares a node dead after a while
                if flight.node.node_id not in self._refresh_nodes():
                    return MSG_NODE_LOST.format(node=flight.node.label)
                time.sleep(1.0)
            return MSG_WORKER_DIED.format(why=_first_line(exc))
        if isinstance(exc, ray.exceptions.NodeDiedError):
            return MSG_NODE_LOST.format(node=flight.node.label if flight.node else "?")
        return MSG_TASK_ERROR.format(why=_first_line(exc))

    def in_flight(self) -> tuple[list[tuple[str, Path, float]], int]:
        """For the progress line: the jobs running on the cluster now (id, log path here,
        when it started on its node, monotonic), and how many wait for room."""
        with self.lock:
            running = [(f.job.id, f.job.log_path, f.started) for f in self.flights.values()
                       if f.started is not None and not f.done.is_set()]
            queued = len(self.waiting) + sum(
                1 for f in self.flights.values()
                if f.released and f.started is None and not f.done.is_set())
        return running, queued

    # -- waiting --------------------------------------------------------------------------------
    def run(self, job: JobRun) -> RunResult:
        """Wait for ``job`` (handed over now unless ``submit_all`` did); unpack its outputs."""
        flight = self._enqueue(job)
        self._pump()
        try:
            while not flight.done.wait(0.5):
                if (job.timeout and flight.started is not None
                        and time.monotonic() > flight.started + job.timeout + TIMEOUT_GRACE_S):
                    self._cancel(flight)  # the node stopped answering; end it from here
                    flight.done.wait(TIMEOUT_GRACE_S)
                    flight.exit = {"returncode": -signal.SIGKILL, "timed_out": True}
                    break
        except BaseException:
            self.cancel_all()
            raise
        return self._result(flight)

    def _result(self, flight: _Flight) -> RunResult:
        job = flight.job
        started = flight.started if flight.started is not None else flight.submitted
        where = flight.node.where if flight.node is not None else None
        if flight.tar_path is not None:
            _unpack(flight.tar_path, job.output_dir)
            flight.tar_path = None
        if flight.exit is None:
            if flight.error and flight.node is None:
                _write_note(job.log_path, flight.error)
            ran = flight.started is not None
            return RunResult(returncode=None,
                             duration_s=time.monotonic() - started if ran else 0.0,
                             timed_out=False, timeout_s=job.timeout, log_path=job.log_path,
                             interrupted=flight.cancelled, error=flight.error or "did not run",
                             node=where)
        if flight.exit.get("returncode") and not flight.exit.get("timed_out"):
            _explain_missing_files(job.log_path, self.rootdir, flight.workdir)
        runtime = flight.exit.get("runtime_s")
        return RunResult(
            returncode=int(flight.exit["returncode"]),
            duration_s=float(runtime) if runtime else time.monotonic() - started,
            timed_out=bool(flight.exit.get("timed_out")), timeout_s=job.timeout,
            log_path=job.log_path, leftovers=int(flight.exit.get("leftovers", 0)), node=where,
        )

    # -- stopping -------------------------------------------------------------------------------
    def _cancel(self, flight: _Flight) -> None:
        if flight.task is None or flight.done.is_set():
            return
        flight.cancelled = True
        try:
            self._ray.cancel(flight.task, force=True)
        except Exception:  # noqa: BLE001 - already finished, or the cluster is gone
            pass

    def cancel_all(self) -> None:
        """Cancel every job still in flight (Ctrl-C, SIGTERM, session end) and wait a little
        for the cancellations to land (each kills its job's tree on its node)."""
        with self.lock:
            self.stopping = True
            for flight in self.waiting:  # never released: nothing runs
                flight.cancelled = True
                flight.error = "cancelled"
                flight.done.set()
            self.waiting = []
            flights = list(self.flights.values())
        for flight in flights:
            self._cancel(flight)
        deadline = time.monotonic() + 10.0
        for flight in flights:
            flight.done.wait(max(0.0, deadline - time.monotonic()))

    def close(self) -> None:
        """Cancel what still runs and disconnect (``--ray local``: stop the private instance)."""
        if self.closed:
            return
        self.closed = True
        self.cancel_all()
        for flight in self.flights.values():
            if flight.tar_path is not None:
                try:
                    os.unlink(flight.tar_path)
                except OSError:
                    pass
        try:
            self._ray.shutdown()
        except Exception:  # noqa: BLE001
            pass


def _queue_mode(config: pytest.Config) -> str:
    """ini ``training_ray_queue``: ``executor`` (default) or ``ray``."""
    try:
        raw = str(config.getini("training_ray_queue") or "").strip()
    except ValueError:
        raw = ""
    value = raw.lower() or "executor"
    if value not in QUEUE_MODES:
        raise pytest.UsageError(MSG_BAD_QUEUE.format(value=raw))
    return value


def _in_ray_job_copy(rootdir: Path) -> bool:
    """Whether ``rootdir`` is inside the copy of a Ray Job's ``working_dir`` that this session
    runs in (``ray job submit --working-dir``): a folder Ray unpacked and deletes later."""
    import json

    try:
        job = json.loads(os.environ.get(RAY_JOB_VAR) or "{}")
        uri = str((job.get("runtime_env") or {}).get("working_dir") or "")
    except (ValueError, AttributeError):
        return False
    package = uri.rsplit("/", 1)[-1].removesuffix(".zip")
    return bool(package) and package in Path(rootdir).resolve().parts


def _inside(path: Path, folder: Path) -> bool:
    return Path(path).resolve().is_relative_to(Path(folder).resolve())


def _output_root(config: pytest.Config) -> Path | None:
    """The session's ``--output-dir`` (absolute), if the plugin has worked it out."""
    from training_plugin import plugin

    try:
        return Path(plugin._settings(config).output_dir)
    except Exception:  # noqa: BLE001
        return None


def _record_timeline(flight: _Flight) -> None:
    """Append the job's timeline to the file named by ``TRAINING_RAY_TIMELINE`` (if set)."""
    path = os.environ.get(TIMELINE_VAR)
    if not path:
        return
    import json

    line = dict(flight.times, job=flight.job.id,
                node=flight.node.where if flight.node is not None else None)
    try:
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(line) + "\n")
    except OSError:
        pass


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


#: Appended to a failed job's log for each file it missed on its node that exists here.
MSG_NOT_SHIPPED = (
    "[training_plugin] {path} exists on the controller but did not travel to the node: "
    "files that .gitignore (or .rayignore) ignores stay behind. Keep such data where every "
    "node sees it, or set RAY_RUNTIME_ENV_IGNORE_GITIGNORE=1 for pytest to ship them.\n")
_MISSING_FILE = re.compile(r"No such file or directory: '([^']+)'")


def _explain_missing_files(log_path: Path, rootdir: Path, workdir: str | None) -> None:
    """A failed job's log says a file was missing: when that file exists in the controller's
    rootdir, it did not travel (ignored); say so at the end of the log, which the failure
    report shows."""
    from training_plugin.runner import log_tail

    tail = log_tail(log_path, lines=None)
    notes = []
    for name in dict.fromkeys(_MISSING_FILE.findall(tail)):
        rel = name
        if workdir and name.startswith(workdir.rstrip("/") + "/"):
            rel = name[len(workdir.rstrip("/")) + 1:]
        if os.path.isabs(rel) or not rel:
            continue
        if (rootdir / rel).exists():
            notes.append(MSG_NOT_SHIPPED.format(path=rel))
    if notes:
        try:
            with open(log_path, "a", encoding="utf-8") as fh:
                fh.writelines(notes)
        except OSError:
            pass


def _write_note(log_path: Path, message: str) -> None:
    """Put why a job did not run where the user looks first: its log."""
    try:
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(log_path, "w", encoding="utf-8") as fh:
            fh.write(message + "\n")
    except OSError:
        pass


def _unpack(tar_path: str, output_dir: Path) -> None:
    """The job's output folder from its node, into ``<output-dir>/<id>/`` here."""
    import tarfile

    output_dir.mkdir(parents=True, exist_ok=True)
    try:
        with tarfile.open(tar_path) as tar:
            if hasattr(tarfile, "data_filter"):
                tar.extractall(output_dir, filter="data")
            else:  # pragma: no cover - Python without extraction filters
                tar.extractall(output_dir)
    finally:
        try:
            os.unlink(tar_path)
        except OSError:
            pass
