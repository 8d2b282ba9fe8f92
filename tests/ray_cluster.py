"""A real two-node Ray cluster on this machine, for the Ray tests and bench/bench_ray.py.

Each node is its own ``ray start ... --block`` process in its own process group, on private
ports (reserved machine-wide: tests/ports.py) and a private ``--temp-dir``, and is stopped by its process id (never
``ray stop``, which would kill every Ray process on the machine).  Every process of the cluster
carries ``TP_RAY_CLUSTER=<marker>`` in its environment, so that the stop can sweep what the
process group missed.

The second node has the custom resource ``second`` and can run in its own mount namespace with
private tmpfs mounts over given paths (the checkout, the test's temp dirs) and the Python
environment bound back: it then shares no files with the controller except the environment.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from ports import release_port, reserve_port

CLUSTER_VAR = "TP_RAY_CLUSTER"
RAY = os.path.join(os.path.abspath(sys.prefix), "bin", "ray")
#: Health checks fast enough that a lost node is noticed in seconds (a dead raylet's port
#: refuses at once, so each of the 3 checks fails within its period) and patient enough that a
#: live raylet slowed by a loaded machine is not declared dead (each check waits 10 s for its
#: answer, the first 5 s after the node registers); token authentication off
#: (a head started while ``~/.ray/auth_token`` exists turns it on by itself, e.g. after a
#: ``ray.init()`` of a local instance wrote that file, and then the second node, which joins by
#: address, cannot connect).
FAST_HEALTH = {
    "RAY_AUTH_MODE": "disabled",
    "RAY_health_check_period_ms": "1000",
    "RAY_health_check_timeout_ms": "10000",
    "RAY_health_check_failure_threshold": "3",
    "RAY_health_check_initial_delay_ms": "5000",
    "RAY_USAGE_STATS_ENABLED": "0",
    "RAY_DEDUP_LOGS": "0",
}


#: How many times a node that ends during start-up is started again.  Ray gives a raylet a
#: fixed 30 s to register with the GCS; on a loaded machine a start can miss that and end.
START_ATTEMPTS = 3


@contextlib.contextmanager
def machine_lock(name: str):
    """A lock that every process of this machine sees (a file lock in the temp dir)."""
    with open(Path(tempfile.gettempdir()) / f"tp-ray-{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def one_start_at_a_time():
    """The lock held while a node boots: two clusters on one machine (one per xdist worker)
    booting at the same moment load the CPUs enough that a raylet can miss Ray's 30 s
    registration deadline."""
    return machine_lock("start")


def _pids_with(var: str, value: str) -> list[int]:
    needle = f"{var}={value}".encode()
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/environ", "rb") as fh:
                if needle not in fh.read().split(b"\0"):
                    continue
            with open(f"/proc/{name}/stat", "rb") as fh:
                if fh.read().rsplit(b")", 1)[1].split()[0] in (b"Z", b"X"):
                    continue
        except OSError:
            continue
        found.append(int(name))
    return found


def _children(pid: int) -> list[int]:
    kids = []
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/children") as fh:
                kids += [int(k) for k in fh.read().split()]
    except OSError:
        pass
    return kids


def _comm(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/comm") as fh:
            return fh.read().strip()
    except OSError:
        return ""


class Node:
    """One ``ray start --block`` process."""

    def __init__(self, name: str, proc: subprocess.Popen, marker: str, log: Path,
                 port: int) -> None:
        self.name = name
        self.proc = proc
        self.marker = marker
        self.log = log
        #: Its raylet's ``--node-manager-port``: fresh for every start, so it tells this node
        #: from an earlier one of the same name that the cluster may still list.
        self.port = port

    def raylet_pid(self) -> int | None:
        """The pid of this node's raylet (a descendant of its ``ray start``)."""
        stack = [self.proc.pid]
        while stack:
            pid = stack.pop()
            if _comm(pid) == "raylet":
                return pid
            stack += _children(pid)
        return None

    def alive(self) -> bool:
        """Whether its ``ray start`` still runs and its raylet is up."""
        return self.proc.poll() is None and self.raylet_pid() is not None

    def stop(self) -> None:
        """SIGTERM its process group, then SIGKILL whatever of this node is left (its
        descendants, its group, and what carries its marker)."""
        tree, stack = [], [self.proc.pid]
        while stack:
            kids = _children(stack.pop())
            tree += kids
            stack += kids
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(self.proc.pid, sig)
            except OSError:
                pass
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline and self.proc.poll() is None:
                time.sleep(0.1)
            if self.proc.poll() is not None:
                break
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except OSError:
            pass
        for pid in tree + _pids_with(CLUSTER_VAR, self.marker):
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass


class NodeEnded(RuntimeError):
    """A node's ``ray start`` ended during start-up; the message holds the tails of its
    ``ray start`` output and of its raylet's and GCS's logs."""

    def __init__(self, node: Node, temp: Path) -> None:
        self.node = node
        parts = [f"ray node {node.name} ended during start-up:",
                 node.log.read_text(errors="replace")[-2000:]]
        for name in ("raylet.out", "raylet.err", "gcs_server.out", "gcs_server.err"):
            for log in sorted((temp / node.name).glob(f"session_*/logs/{name}")):
                tail = log.read_text(errors="replace")[-1500:]
                if tail.strip():
                    parts += [f"--- {log.name} (tail)", tail]
        super().__init__("\n".join(parts))


class Cluster:
    """A head node and a second node with the custom resource ``second`` (1 CPU each)."""

    def __init__(self, cpus: int = 1, hide: list[Path] | None = None,
                 head_resources: dict[str, float] | None = None, second_gpus: int = 0,
                 dashboard: bool = False) -> None:
        self.cpus = cpus
        #: Whether the head runs Ray's dashboard, which serves Ray Jobs (``ray job submit
        #: --address`` ``dashboard_address``); about 1-2 s more start-up.
        self.dashboard = dashboard
        self.dashboard_address = ""
        #: GPUs the second node declares (Ray counts them and sets CUDA_VISIBLE_DEVICES for the
        #: tasks it gives them; no device is needed for that).
        self.second_gpus = second_gpus
        self.head_resources = head_resources or {}
        self.hide = [Path(p) for p in hide or []]
        self.temp = Path(tempfile.mkdtemp(prefix="tp-ray-"))
        #: Every port reserved for this cluster's nodes (released when it stops).
        self.ports: list[int] = []
        self.port = self._port()
        self.address = f"127.0.0.1:{self.port}"
        #: The head's Ray Client server (``ray://`` addresses).
        self.client_address = f"ray://127.0.0.1:{self._port()}"
        self.head: Node | None = None
        self.second: Node | None = None
        self.started_s = 0.0
        #: Whether the second node runs with the hidden paths hidden (root, unshare).
        self.hidden = bool(self._hide_wrapper())

    def _port(self) -> int:
        port = reserve_port()
        self.ports.append(port)
        return port

    def _env(self, marker: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("RAY_", "PYTEST_", "TP_TEST_MARKER")) and k != "PYTHONPATH"}
        env.update(FAST_HEALTH)
        env[CLUSTER_VAR] = marker
        return env

    def _start(self, name: str, args: list[str], wrap: list[str] | None = None,
               gpus: int = 0) -> Node:
        marker = f"{name}-{uuid.uuid4().hex}"
        log = self.temp / f"{name}.log"
        temp_dir = self.temp / name
        temp_dir.mkdir(exist_ok=True)
        ports = ["--node-manager-port", "--object-manager-port", "--dashboard-agent-listen-port",
                 "--dashboard-agent-grpc-port", "--runtime-env-agent-port", "--metrics-export-port"]
        argv = [RAY, "start", "--block", "--node-name", name, "--node-ip-address", "127.0.0.1",
                "--num-cpus", str(self.cpus), "--num-gpus", str(gpus), "--disable-usage-stats",
                "--object-store-memory", "100000000", "--temp-dir", str(temp_dir), *args]
        chosen = {option: self._port() for option in ports}
        for option, port in chosen.items():
            argv += [option, str(port)]
        if wrap:
            argv = [*wrap, *argv]
        with open(log, "wb") as out:
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=out,
                                    env=self._env(marker), start_new_session=True, cwd=self.temp)
        return Node(name, proc, marker, log, chosen["--node-manager-port"])

    def _hide_wrapper(self) -> list[str] | None:
        """``unshare --mount`` with a tmpfs over each hidden path, the venv bound back."""
        if not self.hide or os.geteuid() != 0 or shutil.which("unshare") is None:
            return None
        venv = Path(sys.prefix).resolve()
        stash = self.temp / "venv-stash"
        stash.mkdir(exist_ok=True)
        lines = ["set -e", f"mount --bind '{venv}' '{stash}'"]
        for path in self.hide:
            lines.append(f"mount -t tmpfs tmpfs '{path.resolve()}'")
        lines += [f"mkdir -p '{venv}'", f"mount --bind '{stash}' '{venv}'", 'exec "$@"']
        return ["unshare", "--mount", "--propagation", "private", "sh", "-c",
                "\n".join(lines), "sh"]

    def start(self, timeout: float = 180.0) -> Cluster:
        """Start both nodes; return once the cluster has two live nodes.  A cluster that does
        not come up is stopped (by pid) before the error is raised: nothing is left running."""
        began = time.monotonic()
        try:
            self._attempts("head", self._start_head, timeout)
            self.start_second(timeout)
        except BaseException:
            self.stop()
            raise
        self.started_s = time.monotonic() - began
        return self

    def start_second(self, timeout: float = 180.0) -> None:
        """(Re)start the second node and wait until a driver sees both nodes alive."""
        self._attempts("second", self._start_second, timeout)
        self.wait_seen(timeout)

    def _attempts(self, name: str, start, timeout: float) -> None:
        """Run ``start`` (which boots node ``name`` and waits for it) under the start-up lock;
        when that node ends during start-up it is stopped and started again, up to
        START_ATTEMPTS times (another node's end is not mended by restarting this one: raised
        at once)."""
        for attempt in range(1, START_ATTEMPTS + 1):
            try:
                with one_start_at_a_time():
                    start(timeout)
                return
            except NodeEnded as ended:
                if ended.node.name != name:
                    raise
                ended.node.stop()
                if attempt == START_ATTEMPTS:
                    raise RuntimeError(f"{ended} (after {attempt} attempts)") from None
                print(f"ray_cluster: {ended.node.name} ended during start-up, starting it again "
                      f"(attempt {attempt + 1} of {START_ATTEMPTS})", file=sys.stderr)

    def _start_head(self, timeout: float) -> None:
        if self.head is not None:  # a retry: the ports may be what ended the last attempt
            self.port = self._port()
            self.address = f"127.0.0.1:{self.port}"
            self.client_address = f"ray://127.0.0.1:{self._port()}"
        dashboard = ["--include-dashboard=false"]
        if self.dashboard:
            port = self._port()
            self.dashboard_address = f"http://127.0.0.1:{port}"
            dashboard = ["--include-dashboard=true", "--dashboard-host", "127.0.0.1",
                         "--dashboard-port", str(port)]
        self.head = self._start("head", ["--head", "--port", str(self.port), *dashboard,
                                         "--resources", json.dumps(self.head_resources),
                                         "--ray-client-server-port",
                                         self.client_address.rsplit(":", 1)[1]])
        self._wait_head(self._port_open, "its port did not open", timeout)
        if self.dashboard:
            self._wait_head(self._dashboard_answers,
                            "its dashboard (the job server) did not answer", timeout)

    def _start_second(self, timeout: float) -> None:
        if self.second is not None:
            # The last second node's raylet log says it registered: gone, so that the wait
            # below reads only this start's.
            self.second.stop()
            shutil.rmtree(self.temp / "second", ignore_errors=True)
        self.second = self._start(
            "second", ["--address", self.address, "--resources", json.dumps({"second": 1})],
            wrap=self._hide_wrapper(), gpus=self.second_gpus)
        self.wait_nodes(2, timeout)

    def wait_seen(self, timeout: float = 180.0) -> None:
        """Wait until a driver lists the head and the second node alive, each by its own
        node-manager port: a restarted node's raylet says it registered a little before the
        cluster lists it, and the node it replaced can stay listed alive until its health
        checks fail, so a count of live nodes can be reached with the new one still missing."""
        probe = ("import ray, sys\nray.init(address=sys.argv[1], log_to_driver=False)\n"
                 "print(*(n['NodeManagerPort'] for n in ray.nodes() if n['Alive']))\n")
        nodes = [n for n in (self.head, self.second) if n is not None]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for node in nodes:
                if node.proc.poll() is not None:
                    raise NodeEnded(node, self.temp)
            out = subprocess.run([sys.executable, "-c", probe, self.address], check=False,
                                 capture_output=True, text=True, env=self._env("probe"),
                                 timeout=120).stdout.splitlines()
            listed = set(out[-1].split()) if out else set()
            if all(str(node.port) in listed for node in nodes):
                return
            time.sleep(0.5)
        raise RuntimeError(f"the ray cluster did not list its {len(nodes)} nodes alive in "
                           f"{timeout:.0f} s")

    def _wait_head(self, ready, what: str, timeout: float) -> None:
        """Wait until ``ready()`` is true (an OSError counts as not yet); a head that ends
        meanwhile raises NodeEnded."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.head is not None and self.head.proc.poll() is not None:
                raise NodeEnded(self.head, self.temp)
            try:
                if ready():
                    return
            except OSError:
                pass
            time.sleep(0.3)
        raise RuntimeError(f"ray head: {what} in {timeout:.0f} s")

    def _port_open(self) -> bool:
        socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
        return True

    def _dashboard_answers(self) -> bool:
        """Whether the head's job server answers (it starts after the GCS)."""
        import urllib.request

        with urllib.request.urlopen(f"{self.dashboard_address}/api/version",
                                    timeout=2) as answer:
            return answer.status == 200

    def wait_nodes(self, count: int, timeout: float = 180.0) -> None:
        """Wait until ``count`` nodes are alive with their raylets up (read from each node's
        raylet log: no driver is connected for it)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            nodes = [n for n in (self.head, self.second) if n is not None]
            for node in nodes:
                if node.proc.poll() is not None:
                    raise NodeEnded(node, self.temp)
            if len(nodes) >= count and all(self._registered(n) for n in nodes):
                return
            time.sleep(0.5)
        raise RuntimeError(f"the ray cluster did not reach {count} nodes in {timeout:.0f} s")

    def _registered(self, node: Node) -> bool:
        for log in (self.temp / node.name).glob("session_*/logs/raylet.out"):
            try:
                text = log.read_text(errors="replace")
            except OSError:
                continue
            if "Raylet of id" in text and "started" in text or "Registered to GCS" in text:
                return True
        return False

    def stop(self) -> None:
        """Stop both nodes by pid, remove the temp dir and release the ports."""
        for node in (self.second, self.head):
            if node is not None:
                node.stop()
        shutil.rmtree(self.temp, ignore_errors=True)
        for port in self.ports:
            release_port(port)
        self.ports = []


if __name__ == "__main__":  # a quick manual check: start, report, stop
    began = time.monotonic()
    cluster = Cluster(hide=[Path(__file__).resolve().parents[1]]).start()
    print(f"cluster at {cluster.address} up in {time.monotonic() - began:.1f} s")
    print("head raylet", cluster.head.raylet_pid(), "second raylet", cluster.second.raylet_pid())
    if len(sys.argv) > 1:
        time.sleep(float(sys.argv[1]))
    cluster.stop()
