"""The Ray executor on a real two-node Ray cluster started by these tests (tests/ray_cluster.py).

The head has the custom resource ``head`` and Ray's dashboard (the job server of ``ray job
submit``), the second node ``second`` and one GPU (declared: Ray counts it and assigns it, no
device is needed); the second node runs in
its own mount namespace with the checkout and this session's temp dirs hidden under tmpfs
(only the Python environment is bound back), so it shares no files with the controller.
Every job's tree carries ``proctable.MARKER_VAR=<marker>`` through the job table's ``env``;
"nothing left" = no live process carries it.  Deselect with ``-m "not ray"``.
"""

from __future__ import annotations

import json
import os
import re
import select
import signal
import subprocess
import sys
import textwrap
import time
import uuid
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from fakejobs import busy_job, fake, job_was_ready, run_in_pty, tree_job
from ports import reserve_port
from proctable import MARKER_VAR, marked_pids
from ray_cluster import RAY, Cluster, machine_lock
from training_plugin.executors.base import MSG_OOM_HINT, MSG_OUTSIDE_SIGNAL, JobRun
from training_plugin.executors.ray import (
    MSG_NO_NODE_LEFT,
    MSG_NODE_LOST,
    MSG_OUTPUT_IN_JOB_COPY,
    MSG_RAY_OOM,
    MSG_UNREACHABLE,
    MSG_WORKER_DIED,
    TIMELINE_VAR,
    PackageRoots,
)
from training_plugin.executors.ray.resources import Node
from training_plugin.executors.ray.stream import (
    PEAK_ON_NODE,
    Flight,
    TaskFailure,
    attempt_cost,
    failure,
)
from training_plugin.plugin import MSG_RAY_WITH_XDIST

pytestmark = [pytest.mark.ray, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[1]
ARGS = ("-p", "training_plugin", "--output-dir", "out", "-p", "no:randomly",
        "-p", "no:cacheprovider", "-rA")
GONE_WITHIN_S = 30.0


#: A job that reports where it runs and writes the contract's files.
WHERE_JOB = textwrap.dedent(
    '''
    import json, os, sys
    out = os.environ["TRAINING_OUTPUT_DIR"]
    print("cwd=" + os.getcwd(), flush=True)
    print("shipped=" + json.dumps(sorted(os.listdir("."))), flush=True)
    print("sees-checkout=" + str(os.path.exists({project!r})), flush=True)
    os.makedirs(os.path.join(out, "model"), exist_ok=True)
    with open(os.path.join(out, "model", "weights.bin"), "wb") as fh:
        fh.write(b"w" * 300000)
    with open(os.path.join(out, "metrics.json"), "w") as fh:
        json.dump({{"job": os.environ["TRAINING_JOB_ID"], "task": "binary",
                   "primary_metric": "roc_auc", "metrics": {{"roc_auc": 0.75}}}}, fh)
    print("threads=" + os.environ.get("OMP_NUM_THREADS", "?"), flush=True)
    '''
)


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory):
    """One two-node cluster for this test process (each xdist worker gets its own, on its own
    ports and temp dirs)."""
    hide = [REPO, tmp_path_factory.getbasetemp()]
    started = Cluster(hide=hide, head_resources={"head": 1}, second_gpus=1,
                      dashboard=True).start()
    yield started
    started.stop()


@pytest.fixture
def ray_cluster(cluster: Cluster) -> Cluster:
    """The cluster with both nodes up (a test may have killed the second one)."""
    if not cluster.second.alive():
        cluster.start_second()
    return cluster


@pytest.fixture(autouse=True)
def one_ray_client_at_a_time(request: pytest.FixtureRequest):
    """Tests of ``ray://`` hold a machine-wide lock.  Every head's Ray Client server starts a
    server per client on the first free port of a fixed range (23000-24000) and binds it a
    moment later, so two clusters on one machine (one per xdist worker) can pick the same
    port, and a client then lands on the other cluster's server ("Runtime environment doesn't
    match").  One cluster per machine, as in real use, never races."""
    params = getattr(request.node, "callspec", None)
    if params is None or params.params.get("form") != "ray://":
        yield
        return
    with machine_lock("client"):
        yield


@pytest.fixture
def marker():
    """A unique value for MARKER_VAR; every marked process is killed afterwards."""
    value = uuid.uuid4().hex
    yield value
    for pid in marked_pids(value):
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass


def project(pytester: pytest.Pytester, marker: str, scripts: dict[str, str],
            table: str) -> Path:
    """A temp project: scripts, a job table that marks every job, its own pytest.ini."""
    pytester.makeini("[pytest]\n")
    for name, text in scripts.items():
        (pytester.path / f"{name}.py").write_text(text)
    env = f'env = {{ {MARKER_VAR} = "{marker}" }}\n'
    for job in (name.removeprefix("train_") for name in scripts):
        header = f"[tool.training_plugin.jobs.{job}]\n"
        table = table.replace(header, header + env) if header in table else table + header + env
    (pytester.path / "pyproject.toml").write_text(table)
    return pytester.path


#: The address forms ``--ray`` takes for a running cluster.
FORMS = ["HOST:PORT", "auto", "ray://"]


def connect(cluster: Cluster, form: str) -> tuple[tuple[str, ...], dict[str, str]]:
    """``--ray`` in one of FORMS, and the environment it needs: ``auto`` finds the cluster
    as Ray's own tools do, through ``RAY_ADDRESS``."""
    if form == "auto":
        return ("--ray", "auto"), {"RAY_ADDRESS": cluster.address}
    return ("--ray", cluster.client_address if form == "ray://" else cluster.address), {}


def session_env(marker: str, env: dict[str, str] | None = None) -> dict[str, str]:
    """A pytest session's environment: this one without pytest's, Ray's and the test run's
    own variables, plus ``env`` and the marker (which every job's tree inherits)."""
    return {k: v for k, v in os.environ.items()
            if not k.startswith(("PYTEST_", "RAY_")) and k != "PYTHONPATH"} | (env or {}) | {
        MARKER_VAR: marker}


def start(root: Path, marker: str, *args: str, env: dict[str, str] | None = None
          ) -> subprocess.Popen:
    """pytest in a subprocess, in its own process group, carrying the marker."""
    env = session_env(marker, env)
    return subprocess.Popen([sys.executable, "-m", "pytest", *ARGS, *args], cwd=root, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, process_group=0)


def finish(proc: subprocess.Popen, within_s: float = 300) -> tuple[int, str]:
    out, _ = proc.communicate(timeout=within_s)
    return proc.returncode, out.decode(errors="replace")


def lose_the_second_node(ray_cluster, proc: subprocess.Popen, ready) -> tuple[int, str]:
    """Once ``ready()`` returned, SIGKILL the second node's raylet; the session's end (the
    session is killed if anything fails or it overruns)."""
    try:
        ready()
        os.kill(ray_cluster.second.raylet_pid(), signal.SIGKILL)
        return finish(proc, 180)
    finally:
        if proc.poll() is None:
            proc.kill()


def run(root: Path, marker: str, *args: str, env: dict[str, str] | None = None
        ) -> tuple[int, str]:
    return finish(start(root, marker, *args, env=env))


def wait_log(root: Path, job: str, text: str, proc: subprocess.Popen, within_s: float = 120):
    """Wait until the controller's copy of ``job``'s log contains ``text`` (it streams)."""
    log = root / "out" / job / "train.log"
    deadline = time.monotonic() + within_s
    while True:
        try:
            if text in log.read_text(errors="replace"):
                return
        except OSError:
            pass
        if proc.poll() is not None:
            raise AssertionError(f"pytest ended before {job} printed {text!r}: "
                                 f"{proc.stdout.read().decode(errors='replace')}")
        assert time.monotonic() < deadline, f"{job} never printed {text!r}"
        time.sleep(0.1)


def wait_gone(marker: str, within_s: float = GONE_WITHIN_S) -> list[int]:
    deadline = time.monotonic() + within_s
    while (pids := marked_pids(marker)) and time.monotonic() < deadline:
        time.sleep(0.2)
    return pids


def summary(root: Path) -> dict[str, dict]:
    data = json.loads((root / "out" / "summary.json").read_text())
    return {job["id"]: job for job in data["jobs"]}


@pytest.mark.parametrize("form", FORMS)
def test_placement_code_shipping_and_outputs_come_back(pytester, ray_cluster, marker, form):
    scripts = {"train_far": "", "train_near": ""}
    root = pytester.path
    scripts = {k: WHERE_JOB.format(project=str(root)) for k in scripts}
    (root / ".gitignore").write_text("secret.txt\n")
    (root / "secret.txt").write_text("never shipped")
    (root / ".git").mkdir()
    (root / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    project(pytester, marker, scripts, textwrap.dedent('''
        [tool.training_plugin.jobs.far]
        resources = { second = 1 }
        [tool.training_plugin.jobs.near]
        cpus = 1
        resources = { head = 1 }
        '''))
    args, env = connect(ray_cluster, form)
    rc, out = run(root, marker, *args, "-n", "2", "--junitxml", "junit.xml", env=env)
    assert rc == 0, out
    assert f"training: Ray at {args[1]}: 2 node(s)" in out, out
    assert MSG_RAY_WITH_XDIST.format(n=2) in out  # -n is turned off, and said so
    jobs = summary(root)
    assert jobs["far"]["node"] == "ray:second" and jobs["near"]["node"] == "ray:head", jobs
    assert re.search(r"^far\s+passed .* ray:second", out, re.M), out
    props = {(case.get("name"), p.get("name")): p.get("value")
             for case in ET.parse(root / "junit.xml").iter("testcase")
             for p in case.iter("property")}
    assert props[("far", "node")] == "ray:second", props
    for job in ("far", "near"):
        out_dir = root / "out" / job
        log = (out_dir / "train.log").read_text()
        cwd = re.search(r"^cwd=(.*)$", log, re.M).group(1)
        assert cwd != str(root) and "working_dir" in cwd, log  # Ray's copy, not the checkout
        shipped = json.loads(re.search(r"^shipped=(.*)$", log, re.M).group(1))
        assert "train_far.py" in shipped and "pyproject.toml" in shipped, shipped
        assert "secret.txt" not in shipped and ".git" not in shipped, shipped
        assert "out" not in shipped, shipped
        assert "threads=1" in log, log  # cpus is the thread budget
        # everything the job wrote is here, as after a local run
        assert (out_dir / "model" / "weights.bin").stat().st_size == 300000
        assert json.loads((out_dir / "metrics.json").read_text())["metrics"]["roc_auc"] == 0.75
    if ray_cluster.hidden:
        assert "sees-checkout=False" in (root / "out" / "far" / "train.log").read_text()


def test_a_job_sees_the_gpus_ray_gave_it_and_no_other(pytester, ray_cluster, marker):
    # The second node declares one GPU.  The job that asks for it sees Ray's assignment, not
    # the controller's CUDA_VISIBLE_DEVICES; the job beside it that asks for none sees none.
    job = "import os\nprint('visible=' + repr(os.environ.get('CUDA_VISIBLE_DEVICES')))\n"
    root = project(pytester, marker, {"train_gpu": job, "train_cpu": job},
                   '[tool.training_plugin.jobs.gpu]\ngpus = 1\n'
                   '[tool.training_plugin.jobs.cpu]\nresources = { second = 1 }\n')
    rc, out = run(root, marker, "--ray", ray_cluster.address,
                  env={"CUDA_VISIBLE_DEVICES": "5,6"})
    assert rc == 0, out
    assert "1 GPUs" in out, out
    jobs = summary(root)
    assert jobs["gpu"]["node"] == jobs["cpu"]["node"] == "ray:second", jobs
    assert "visible='0'" in (root / "out" / "gpu" / "train.log").read_text()
    assert "visible=''" in (root / "out" / "cpu" / "train.log").read_text()


def on_node(name: str) -> str:
    """A regex of the peak method of a job measured on the node named ``name``."""
    return re.escape(PEAK_ON_NODE).replace(re.escape("{node}"), rf"\S+ \({name}\)")


def test_what_a_job_cost_on_the_cluster_is_measured_on_its_node(pytester, ray_cluster, marker):
    # A job of known cost (about 1 s of CPU time, a 200 MiB buffer) on each node: the one
    # that asks for a GPU runs on the second node (it declares one), the other on the head.
    # Each one's supervisor measures it on its node as locally: the CPU time of its tree, the
    # sampled peak of its RSS (the node named), GPU-seconds.
    job = fake(pre=busy_job(1.0, 200))
    root = project(pytester, marker, {"train_gpu": job, "train_cpu": job},
                   "[tool.training_plugin.jobs.gpu]\ngpus = 1\n"
                   "[tool.training_plugin.jobs.cpu]\nresources = { head = 1 }\n")
    rc, out = run(root, marker, "--ray", ray_cluster.address, "--junitxml=junit.xml")
    assert rc == 0, out
    jobs = summary(root)
    assert (jobs["gpu"]["node"], jobs["cpu"]["node"]) == ("ray:second", "ray:head"), jobs
    history = [json.loads(line) for line in
               (root / "out" / "history.jsonl").read_text().splitlines()]
    for name, node, gpus in (("gpu", "second", 1), ("cpu", "head", 0)):
        cost = jobs[name]["cost"]
        assert cost is not None, jobs[name]
        assert 0.8 <= cost["cpu_s"] <= 5.0, cost
        assert 150 * 2**20 <= cost["peak_bytes"] <= 600 * 2**20, cost
        assert re.fullmatch(on_node(node), cost["peak_method"]), cost
        assert cost["wall_s"] >= 0.8 and cost["memory_limit"] is None, cost
        assert cost["gpus"] == gpus and cost["gpu_s"] == pytest.approx(gpus * cost["wall_s"],
                                                                        abs=0.01), cost
        # the attempt carries it as locally, and so does the history
        assert [a["cost"] for a in jobs[name]["attempts"]] == [cost], jobs[name]
        assert [h["cost"] for h in history if h["job"] == name] == [cost], history
        # the summary table's cost column
        assert re.search(rf"^\s*{name}\b.*\bpassed\b.*cpu \d+\.\ds, peak \d+ MiB"
                         + (r", gpu \d+\.\ds" if gpus else ""), out, re.M), out
    props = {case.get("name"): {p.get("name"): p.get("value") for p in case.iter("property")}
             for case in ET.parse(root / "junit.xml").getroot().iter("testcase")}
    assert float(props["gpu"]["cost.cpu_s"]) >= 0.8, props
    assert re.fullmatch(on_node("second"), props["gpu"]["cost.peak_memory_method"]), props
    assert float(props["gpu"]["cost.gpu_s"]) > 0 and "cost.gpu_s" not in props["cpu"], props
    assert wait_gone(marker) == []


def test_an_attempt_that_did_not_end_on_its_node_costs_its_wall_time_and_gpus_only():
    # The figures come with the job's end from its node: a task whose node was lost brings
    # none, and costs what the controller knows (its wall time, the GPUs it held).
    job = JobRun(id="j", argv=["python"], cwd=Path("."), env={}, output_dir=Path("o"),
                 log_path=Path("o/train.log"))
    node = Node("n" * 56, "10.0.0.3", "gpu-2", {"CPU": 4, "GPU": 2})
    lost = Flight(job=job, request={"CPU": 1, "GPU": 1}, node=node)
    cost = attempt_cost(lost, 12.0)
    assert (cost.cpu_s, cost.peak_bytes, cost.peak_method, cost.gpus, cost.gpu_s) == (
        None, None, None, 1.0, 12.0)
    ended = Flight(job=job, request={"CPU": 1, "GPU": 0.5}, node=node,
                   exit={"returncode": 0, "cpu_s": 3.5, "peak_bytes": 2**30, "gpus": 1})
    cost = attempt_cost(ended, 10.0)
    assert (cost.cpu_s, cost.peak_bytes, cost.gpus, cost.gpu_s) == (3.5, 2**30, 0.5, 5.0)
    assert cost.peak_method == PEAK_ON_NODE.format(node="10.0.0.3 (gpu-2)")
    assert cost.phrase() == "cpu 3.5s, peak 1.0 GiB, gpu 5.0s"


def test_collect_only_shows_resources_and_placement(pytester, ray_cluster, marker):
    root = project(pytester, marker, {"train_far": "", "train_big": ""}, textwrap.dedent('''
        [tool.training_plugin.jobs.far]
        resources = { second = 1 }
        [tool.training_plugin.jobs.big]
        cpus = 64
        memory = "1GiB"
        '''))
    rc, out = run(root, marker, "--ray", ray_cluster.address, "--collect-only")
    assert rc == 0, out
    assert "resources: cpus=1, resources={'second': 1.0}" in out, out
    assert re.search(r"job far:.*\n(.*\n)*?\s+runs on: .*ray:second", out), out
    assert re.search(r"runs on: nowhere: asks for cpus=64", out), out
    assert not (root / "out").exists()


def test_infeasible_resources_fail_at_once_naming_asked_and_offered(pytester, ray_cluster,
                                                                   marker):
    root = project(pytester, marker, {"train_big": "print('ran')\n", "train_ok": "print(1)\n"},
                   '[tool.training_plugin.jobs.big]\ncpus = 3\nresources = { bigmem = 1 }\n')
    rc, out = run(root, marker, "--ray", ray_cluster.address)
    assert rc == 1, out
    jobs = summary(root)
    assert jobs["ok"]["outcome"] == "passed" and jobs["big"]["outcome"] == "failed", jobs
    story = jobs["big"]["story"]
    assert "cpus=3, bigmem=1" in story and "which no node of the cluster has" in story, story
    assert "second=1" in story and "cpus=1" in story, story  # what the nodes offer
    assert "ran" not in (root / "out" / "big" / "train.log").read_text()


@pytest.mark.parametrize("form", ["HOST:PORT", "ray://"])
def test_timeout_kills_the_whole_tree_on_its_node(pytester, ray_cluster, marker, form):
    root = project(pytester, marker, {"train_slow": tree_job(300)},
                   '[tool.training_plugin.jobs.slow]\ntimeout = 4\nresources = { second = 1 }\n')
    args, env = connect(ray_cluster, form)
    rc, out = run(root, marker, *args, env=env)
    assert rc == 1, out
    assert "timed out after 4 s" in out, out
    assert "ready" in (root / "out" / "slow" / "train.log").read_text()
    assert wait_gone(marker) == []


@pytest.mark.parametrize(("how", "form"), [("SIGINT", "HOST:PORT"), ("SIGTERM", "HOST:PORT"),
                                           ("SIGKILL", "HOST:PORT"), ("SIGKILL", "ray://")])
def test_stopping_pytest_leaves_nothing_running_on_any_node(pytester, ray_cluster, marker,
                                                           how, form):
    root = project(pytester, marker,
                   {"train_far": tree_job(300), "train_near": tree_job(300)},
                   '[tool.training_plugin.jobs.far]\nresources = { second = 1 }\n'
                   '[tool.training_plugin.jobs.near]\nresources = { head = 1 }\n')
    args, env = connect(ray_cluster, form)
    proc = start(root, marker, *args, env=env)
    try:
        wait_log(root, "far", "ready", proc)  # the log streams live from the node
        wait_log(root, "near", "ready", proc)
        assert len(marked_pids(marker)) >= 2 * 4 + 1
        proc.send_signal(getattr(signal, how))
        rc, out = finish(proc, 120)
    finally:
        if proc.poll() is None:
            proc.kill()
    if how == "SIGTERM":
        assert rc == 2, out  # interrupted, like Ctrl-C
        assert "pytest received SIGTERM" in out, out
    if how == "SIGINT":  # Ctrl-C
        assert rc == 2 and "KeyboardInterrupt" in out, out
    assert wait_gone(marker) == []


def test_the_progress_line_shows_every_job_running_on_the_cluster(pytester, ray_cluster,
                                                                  marker):
    # Two jobs run at once, one per node, while pytest waits on the first item: the status
    # line names both, with each one's last log line (streamed from its node).
    job = "import time\nprint('epoch 1 of {job}', flush=True)\ntime.sleep(8)\n"
    root = project(pytester, marker, {f"train_{j}": job.format(job=j) for j in ("far", "near")},
                   '[tool.training_plugin.jobs.far]\nresources = { second = 1 }\n'
                   '[tool.training_plugin.jobs.near]\nresources = { head = 1 }\n')
    out = run_in_pty(root, "--ray", ray_cluster.address, env=session_env(marker))
    assert "2 passed" in out, out
    assert re.search(r"running 2: (far|near) \d+s \(epoch 1 of \1\) \| "
                     r"(far|near) \d+s \(epoch 1 of \2\)", out), out


def test_exitfirst_cancels_every_job_still_on_the_cluster(pytester, ray_cluster, marker):
    # -x: the first failure ends the session; the job still running on the other node is
    # cancelled with its whole tree, and reported as not run to the end.
    root = project(pytester, marker,
                   {"train_long": tree_job(300),
                    "train_bad": "import time, sys\ntime.sleep(3)\nsys.exit(3)\n"},
                   '[tool.training_plugin.jobs.long]\nresources = { second = 1 }\n'
                   '[tool.training_plugin.jobs.bad]\nresources = { head = 1 }\n')
    rc, out = run(root, marker, "--ray", ray_cluster.address, "-x")
    assert rc == 1, out
    assert "exit code 3" in out and "stopping after 1 failures" in out, out
    assert "ready" in (root / "out" / "long" / "train.log").read_text()  # it was running
    assert wait_gone(marker) == []


def lost_node_story(job: dict) -> str | None:
    """The infrastructure cause of ``job``'s summary row when it names the lost second node."""
    pattern = re.escape(MSG_NODE_LOST).replace(re.escape("{node}"), r"\S+ \(second\)")
    cause = job["infrastructure"] or ""
    return cause if re.fullmatch(pattern, cause) else None


@pytest.mark.parametrize("form", ["HOST:PORT", "ray://"])
def test_a_lost_node_is_an_infrastructure_error_of_its_job_and_no_other(pytester, ray_cluster,
                                                                        marker, form):
    root = project(pytester, marker,
                   {"train_far": tree_job(300),
                    "train_near": tree_job(0) + "import time; time.sleep(1)\n"},
                   '[tool.training_plugin.jobs.far]\nresources = { second = 1 }\n'
                   '[tool.training_plugin.jobs.near]\nresources = { head = 1 }\n')
    args, env = connect(ray_cluster, form)
    proc = start(root, marker, *args, "--retries", "0", "--junitxml", "junit.xml", env=env)
    rc, out = lose_the_second_node(ray_cluster, proc,
                                   lambda: wait_log(root, "far", "ready", proc))
    assert rc == 1, out
    assert re.search(r"\b1 passed, 1 error\b", out), out
    jobs = summary(root)
    assert jobs["near"]["outcome"] == "passed" and jobs["near"]["attempt"] == 1, jobs
    far = jobs["far"]
    assert far["outcome"] == "error", far  # not the job's own failure
    assert lost_node_story(far), far
    assert f"infrastructure: {far['infrastructure']}" in far["story"], far["story"]
    assert [(a["attempt"], a["node"], a["infrastructure"]) for a in far["attempts"]] == [
        (1, "ray:second", True)], far["attempts"]  # --retries 0: not retried
    case = next(c for c in ET.parse(root / "junit.xml").iter("testcase") if c.get("name") == "far")
    assert case.find("error") is not None and case.find("failure") is None, ET.tostring(case)
    ray_cluster.second.stop()
    assert wait_gone(marker) == []


def test_each_kind_of_task_failure_is_told_apart_from_the_jobs_own():
    # Ray's own exceptions, as a failed task raises them on the controller (no cluster needed):
    # a lost node, Ray's memory monitor and a dead worker are infrastructure failures; a
    # runtime environment that cannot be set up, and a cancellation, are not.
    import ray

    errors = ray.exceptions
    node = Node("ab" * 28, "10.0.0.3", "gpu-2", {"CPU": 1.0})
    job = JobRun(id="j", argv=[], cwd=Path("."), env={}, output_dir=Path("o"),
                 log_path=Path("o/train.log"))

    def failed(exc: BaseException, on: Node | None = node, live=(node,)) -> TaskFailure:
        flight = Flight(job=job)
        flight.node = on
        return failure(ray, flight, exc, lambda: {n.node_id: n for n in live})

    died = errors.NodeDiedError(f"Task failed because the node it was running on is dead or "
                                f"unavailable. Node IP: 10.0.0.3, node ID: {node.node_id}.")
    lost = TaskFailure(MSG_NODE_LOST.format(node="10.0.0.3 (gpu-2)"), True, node.node_id)
    assert failed(died) == lost
    assert failed(died, on=None) == lost  # before it began: the node Ray's message names
    assert failed(died, on=None, live=()) == TaskFailure(
        MSG_NODE_LOST.format(node="10.0.0.3"), True, node.node_id)
    assert failed(errors.WorkerCrashedError(), live=()) == lost  # its node is gone too
    assert failed(errors.WorkerCrashedError(), on=None) == TaskFailure(
        MSG_WORKER_DIED.format(why=str(errors.WorkerCrashedError()).splitlines()[0]), True)
    oom = errors.OutOfMemoryError("Task was killed due to the node running low on memory.")
    assert failed(oom) == TaskFailure(MSG_RAY_OOM.format(node="10.0.0.3 (gpu-2)"), True)
    assert failed(errors.RuntimeEnvSetupError("pip failed")).infrastructure is False
    assert failed(errors.TaskCancelledError()) == TaskFailure("cancelled")


#: A driver that holds the head's CPU with an actor until its stdin closes (while it holds it,
#: a job of one CPU can only start on the second node).
HOLDER = textwrap.dedent(
    """
    import sys, ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy
    ray.init(address=sys.argv[1], log_to_driver=False)
    head = next(n["NodeID"] for n in ray.nodes() if n["Alive"] and n["NodeName"] == "head")
    hold = ray.remote(num_cpus=1)(type("Hold", (), {"ready": lambda self: True})).options(
        scheduling_strategy=NodeAffinitySchedulingStrategy(head, soft=False)).remote()
    ray.get(hold.ready.remote())
    print("holding", flush=True)
    sys.stdin.read()
    """
)


def hold_the_heads_cpu(cluster: Cluster, marker: str, within_s: float = 120
                       ) -> subprocess.Popen:
    """Start HOLDER; return once it holds the head's CPU (close its stdin to let go)."""
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, cluster.address],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, env=session_env(marker),
                              process_group=0)
    deadline = time.monotonic() + within_s
    seen = b""
    while b"holding" not in seen:
        left = deadline - time.monotonic()
        ready, _, _ = select.select([holder.stdout], [], [], max(0.0, left))
        chunk = os.read(holder.stdout.fileno(), 65536) if ready else b""
        if not chunk:
            holder.kill()
            raise AssertionError(f"the holder never held the head's CPU: {seen.decode()}")
        seen += chunk
    return holder


#: A job that says its attempt; attempt 1 runs a tree job (ready, then sleeps), later ones end.
RETRIED_JOB = tree_job(300, extra=textwrap.dedent(
    """
    import os, sys
    print("attempt=" + os.environ["TRAINING_ATTEMPT"], flush=True)
    if os.environ["TRAINING_ATTEMPT"] != "1":
        sys.exit(0)
    """))


@pytest.mark.parametrize("form", ["HOST:PORT", "ray://"])
def test_a_job_whose_node_was_lost_passes_on_its_retry_on_the_surviving_node(
        pytester, ray_cluster, marker, form):
    # The job asks only for a CPU, which both nodes have.  While another driver holds the
    # head's CPU, attempt 1 can only start on the second node; its raylet is killed mid-job.
    # The holder lets go once the retry is under way: attempt 2 runs on the head and passes.
    root = project(pytester, marker, {"train_far": RETRIED_JOB}, "")
    holder = hold_the_heads_cpu(ray_cluster, marker)
    proc = None
    try:
        args, env = connect(ray_cluster, form)
        proc = start(root, marker, *args, "--retries", "1", "--html=report.html",
                     "--self-contained-html", env=env)
        wait_log(root, "far", "ready", proc)
        assert "attempt=1" in (root / "out" / "far" / "train.log").read_text()
        os.kill(ray_cluster.second.raylet_pid(), signal.SIGKILL)
        kept = root / "out" / "far" / "train.attempt-1.log"  # kept as the retry begins
        deadline = time.monotonic() + 120
        while not kept.exists():
            assert proc.poll() is None, finish(proc)[1]
            assert time.monotonic() < deadline, "the job was never retried"
            time.sleep(0.1)
        holder.stdin.close()  # the head's CPU is free: the retry can start there
        rc, out = finish(proc, 180)
    finally:
        for started in (proc, holder):
            if started is not None and started.poll() is None:
                started.kill()
        holder.wait(30)
    assert rc == 0, out
    far = summary(root)["far"]
    assert far["outcome"] == "passed" and far["attempt"] == 2, far
    first, second = far["attempts"]
    assert (first["node"], first["infrastructure"]) == ("ray:second", True), first
    assert lost_node_story({"infrastructure": first["result"]}), first
    assert (second["node"], second["result"]) == ("ray:head", "ok"), second
    assert far["node"] == "ray:head", far
    assert f"passed on attempt 2 (attempt 1: {first['result']})" in out, out
    assert "attempt=1" in kept.read_text() and "ready" in kept.read_text()
    assert "attempt=2" in (root / "out" / "far" / "train.log").read_text()
    # the lost attempt's CPU time died with its node: the session's total says it leaves it out
    assert first["cost"]["cpu_s"] is None and second["cost"]["cpu_s"] is not None, far
    assert "in all (1 of 2 attempts measured)" in (root / "report.html").read_text()
    ray_cluster.second.stop()
    assert wait_gone(marker) == []


def main_process(marker: str, script: str) -> int:
    """The pid of the marked process that runs ``script`` (a job's main process)."""
    for pid in marked_pids(marker):
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if any(arg.endswith(script.encode()) for arg in argv):
            return pid
    raise AssertionError(f"no process runs {script}")


def kill_from_outside(root: Path, marker: str, job: str, *args: str) -> tuple[int, str]:
    """A session of ``job`` under ``--retries 1``: once attempt 1 is ready, SIGKILL its main
    process on its node (not a signal of the plugin's); the session's end."""
    proc = start(root, marker, *args, "--retries", "1")
    try:
        wait_log(root, job, "ready", proc)
        os.kill(main_process(marker, f"train_{job}.py"), signal.SIGKILL)
        return finish(proc, 180)
    finally:
        if proc.poll() is None:
            proc.kill()


def test_a_signal_from_outside_on_a_node_is_an_infrastructure_failure_and_retried(
        pytester, ray_cluster, marker):
    # Someone (an OOM killer, an operator) SIGKILLs the job's main process on its node: not the
    # job's own failure, so it is retried; the retry passes.
    root = project(pytester, marker, {"train_far": RETRIED_JOB},
                   "[tool.training_plugin.jobs.far]\nresources = { second = 1 }\n")
    rc, out = kill_from_outside(root, marker, "far", "--ray", ray_cluster.address)
    assert rc == 0, out
    far = summary(root)["far"]
    assert far["outcome"] == "passed" and far["attempt"] == 2, far
    first, second = far["attempts"]
    killed = MSG_OUTSIDE_SIGNAL.format(signal="SIGKILL", hint=MSG_OOM_HINT)
    assert (first["result"], first["infrastructure"], first["node"]) == (
        killed, True, "ray:second"), first
    assert second["result"] == "ok", second
    for attempt in (first, second):  # each attempt's cost, measured on its node
        assert attempt["cost"]["cpu_s"] is not None, attempt
        assert re.fullmatch(on_node("second"), attempt["cost"]["peak_method"]), attempt
    assert far["cost"] == second["cost"], far
    assert "attempt=1" in (root / "out" / "far" / "train.attempt-1.log").read_text()
    assert wait_gone(marker) == []


@pytest.mark.parametrize("queue", ["executor", "ray"])
def test_a_retry_after_a_signal_from_outside_goes_to_another_node(
        pytester, ray_cluster, marker, queue):
    # The job asks only for a CPU, which both nodes have.  Its main process is SIGKILLed from
    # outside on whichever node it started: the retry shuns that node, and runs on the other.
    root = project(pytester, marker, {"train_any": RETRIED_JOB}, "")
    pytester.makeini(f"[pytest]\ntraining_ray_queue = {queue}\n")
    rc, out = kill_from_outside(root, marker, "any", "--ray", ray_cluster.address)
    assert rc == 0, out
    job = summary(root)["any"]
    first, second = job["attempts"]
    assert first["infrastructure"] is True and second["result"] == "ok", job
    assert {first["node"], second["node"]} == {"ray:head", "ray:second"}, job
    assert wait_gone(marker) == []


@pytest.mark.parametrize("queue", ["executor", "ray"])
def test_a_job_only_the_lost_node_could_hold_ends_as_an_error_instead_of_waiting(
        pytester, ray_cluster, marker, queue):
    # Two jobs need the second node's resource; it holds one at a time.  Its raylet is killed
    # while one runs: that one's retry, and the other job (waiting in the executor's queue, or
    # with `ray` in Ray's), can run nowhere now.  Each ends at once as an error naming the lost
    # node and what no live node has, instead of waiting forever.
    names = ("far1", "far2")
    root = project(pytester, marker, {f"train_{n}": tree_job(300) for n in names},
                   "".join(f"[tool.training_plugin.jobs.{n}]\nresources = {{ second = 1 }}\n"
                           for n in names))
    pytester.makeini(f"[pytest]\ntraining_ray_queue = {queue}\n")
    proc = start(root, marker, "--ray", ray_cluster.address, "--retries", "1")

    def one_ready() -> None:
        deadline = time.monotonic() + 120
        while not any(job_was_ready(root / "out" / n / "train.log") for n in names):
            assert proc.poll() is None, finish(proc)[1]
            assert time.monotonic() < deadline, "no job got ready"
            time.sleep(0.1)

    rc, out = lose_the_second_node(ray_cluster, proc, one_ready)
    assert rc == 1, out
    jobs = summary(root)
    ran = next(n for n in names if jobs[n]["attempts"][0]["node"] == "ray:second")
    nowhere = re.escape(MSG_NO_NODE_LEFT).replace(re.escape("{node}"), r"\S+ \(second\)")
    nowhere = nowhere.replace(re.escape("{why}"), r"asks for cpus=1, second=1, which no node.*")
    for name in names:
        assert jobs[name]["outcome"] == "error", jobs[name]
        assert re.fullmatch(nowhere, jobs[name]["infrastructure"]), jobs[name]
    assert lost_node_story({"infrastructure": jobs[ran]["attempts"][0]["result"]}), jobs[ran]
    assert len(jobs[ran]["attempts"]) == 2, jobs[ran]  # the retry found no node
    ray_cluster.second.stop()
    assert wait_gone(marker) == []


#: A job that takes --seed and says it in its log and its own output folder.
SEEDED_JOB = textwrap.dedent(
    """
    import argparse, json, os
    parser = argparse.ArgumentParser()
    parser.add_argument("--seed", type=int, default=0)
    seed = parser.parse_args().seed
    out = os.environ["TRAINING_OUTPUT_DIR"]
    print(f"seed={seed} job={os.environ['TRAINING_JOB_ID']} out={out}", flush=True)
    with open(os.path.join(out, "seed.txt"), "w") as fh:
        fh.write(str(seed))
    with open(os.path.join(out, "metrics.json"), "w") as fh:
        json.dump({"task": "binary", "primary_metric": "roc_auc",
                   "metrics": {"roc_auc": 0.5 + seed / 100}}, fh)
    """
)


def test_sweep_cells_run_on_the_cluster_each_in_its_own_folder(pytester, ray_cluster, marker):
    root = project(pytester, marker, {"train_mri": SEEDED_JOB}, "")
    rc, out = run(root, marker, "--ray", ray_cluster.address, "--sweep", "seed=0:3")
    assert rc == 0, out
    # three cells, and their configuration (a testcase of its own)
    assert re.search(r"\b4 passed\b", out), out
    assert sorted(re.findall(r"^PASSED train_mri\.py::(mri\[seed_\d\])$", out, re.M)) == [
        f"mri[seed_{seed}]" for seed in range(3)], out
    jobs = summary(root)
    assert sorted(jobs) == [f"mri[seed_{seed}]" for seed in range(3)], jobs
    for seed in range(3):
        cell = jobs[f"mri[seed_{seed}]"]
        assert cell["outcome"] == "passed" and cell["node"].startswith("ray:"), cell
        assert cell["metrics"]["roc_auc"] == pytest.approx(0.5 + seed / 100), cell
        folder = root / "out" / "mri" / f"seed_{seed}"
        assert (folder / "seed.txt").read_text() == str(seed)
        log = (folder / "train.log").read_text()
        assert f"seed={seed} job=mri[seed_{seed}]" in log, log
    assert not (root / "out" / "mri" / "metrics.json").exists()
    assert wait_gone(marker) == []


@pytest.mark.parametrize("scheme", ["", "ray://"])
def test_an_address_where_nothing_answers_is_a_usage_error(pytester, marker, scheme):
    root = project(pytester, marker, {"train_a": "print(1)\n"}, "")
    address = f"{scheme}127.0.0.1:{reserve_port()}"
    rc, out = run(root, marker, "--ray", address)
    assert rc == 4, out
    assert MSG_UNREACHABLE.split("(")[0].format(address=address) in out, out
    assert "--ray local" in out, out
    assert not (root / "out").exists()


def test_ray_local_starts_a_private_instance_and_stops_it(pytester, marker):
    root = project(pytester, marker, {"train_a": "import os; print('on', os.getcwd())\n"}, "")
    rc, out = run(root, marker, "--ray", "local")
    assert rc == 0, out
    assert "a private Ray instance" in out, out
    assert summary(root)["a"]["node"].startswith("ray:"), out
    assert wait_gone(marker) == []  # pytest and its private Ray instance are gone



@pytest.mark.parametrize("queue", ["executor", "ray"])
def test_jobs_are_released_in_the_order_given_as_nodes_free_up(pytester, ray_cluster, marker,
                                                               tmp_path, queue):
    # Five jobs of one CPU each, each its own resource shape (Ray queues each shape apart), on
    # two 1-CPU nodes, in collection order a..e (no remembered durations).  The executor's own
    # timeline says in which order it released them to Ray and which jobs were still running
    # at each release: with its queue, a and b go at once and c, d, e each when a job ended;
    # with Ray's queue, all five at once.  (When each job then starts on its node is Ray's
    # and the machine's business, not asserted.)
    jobs = "abcde"
    table = "".join(f'[tool.training_plugin.jobs.{job}]\nmemory = "{i + 1}MiB"\n'
                    for i, job in enumerate(jobs))
    root = project(pytester, marker,
                   {f"train_{job}": "import time\nprint('ran', flush=True)\ntime.sleep(0.5)\n"
                    for job in jobs}, table)
    pytester.makeini(f"[pytest]\ntraining_ray_queue = {queue}\n")
    timeline = tmp_path / "timeline.jsonl"
    rc, out = run(root, marker, "--ray", ray_cluster.address,
                  env={TIMELINE_VAR: str(timeline)})
    assert rc == 0, out
    rows = {row["job"]: row for row in map(json.loads, timeline.read_text().splitlines())}
    assert sorted(rows) == list(jobs), rows
    assert sorted(rows, key=lambda job: rows[job]["release"]) == list(jobs), rows
    assert [rows[job]["release"] for job in jobs] == [1, 2, 3, 4, 5], rows
    alongside = {job: sorted(rows[job]["alongside"]) for job in jobs}
    if queue == "executor":  # never more released than the two CPUs hold: c, d, e waited
        assert alongside["a"] == [] and alongside["b"] == ["a"], alongside
        assert all(len(alongside[job]) <= 1 for job in "cde"), alongside
    else:  # everything at once, before any job ended
        assert alongside == {job: list(jobs[:i]) for i, job in enumerate(jobs)}, alongside
    for job in jobs:
        assert "ran" in (root / "out" / job / "train.log").read_text()


def test_a_bad_queue_setting_is_a_usage_error(pytester, ray_cluster, marker):
    root = project(pytester, marker, {"train_a": "print(1)\n"}, "")
    pytester.makeini("[pytest]\ntraining_ray_queue = fifo\n")
    rc, out = run(root, marker, "--ray", ray_cluster.address)
    assert rc == 4, out
    assert "training_ray_queue = 'fifo': expected executor" in out, out
    assert not (root / "out" / "a").exists()


def test_a_venv_inside_the_project_is_replaced_by_the_nodes_python(pytester, ray_cluster,
                                                                    marker):
    # The common layout: pytest runs from <project>/.venv.  That venv never travels (.venv is
    # excluded), so the job must run on the node's Python, not on Ray's copy of the project
    # joined with .venv/bin/python.
    job = "import sys\nprint('python=' + sys.executable, flush=True)\n"
    root = project(pytester, marker, {"train_far": job},
                   "[tool.training_plugin.jobs.far]\nresources = { second = 1 }\n")
    venv = root / ".venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    site_packages = next(venv.glob("lib/python*/site-packages"))
    outer = next(Path(sys.prefix).glob("lib/python*/site-packages"))  # the plugin and Ray
    (site_packages / "outer.pth").write_text(f"import site; site.addsitedir({str(outer)!r})\n")
    proc = subprocess.Popen([str(venv / "bin" / "python"), "-m", "pytest", *ARGS, "--ray",
                             ray_cluster.address], cwd=root, env=session_env(marker),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    rc, out = finish(proc)
    assert rc == 0, out
    log = (root / "out" / "far" / "train.log").read_text()
    assert f"python={sys.executable}" in log, log  # the node's (the cluster's) Python


def src_layout_project(pytester: pytest.Pytester, marker: str) -> Path:
    """A project whose package ``mypkg`` lives in ``src/``; its jobs ``far`` (second node) and
    ``near`` (head) print where they imported it from and their working directory."""
    job = ("import os, mypkg\nprint('mypkg=' + mypkg.__file__, flush=True)\n"
           "print('cwd=' + os.getcwd(), flush=True)\n")
    root = project(pytester, marker, {"train_far": job, "train_near": job},
                   "[tool.training_plugin.jobs.far]\nresources = { second = 1 }\n"
                   "[tool.training_plugin.jobs.near]\nresources = { head = 1 }\n")
    (root / "src" / "mypkg").mkdir(parents=True)
    (root / "src" / "mypkg" / "__init__.py").write_text("")
    return root


def imported_from_rays_copy(log_path: Path) -> bool:
    """Whether the job of ``src_layout_project`` that wrote ``log_path`` imported mypkg from
    Ray's copy of the project (its working directory), not from the checkout."""
    log = log_path.read_text()
    cwd = re.search(r"^cwd=(.*)$", log, re.M).group(1)
    return "working_dir" in cwd and f"mypkg={cwd}/src/mypkg/__init__.py" in log


def test_the_projects_own_packages_come_from_rays_copy(pytester, ray_cluster, marker):
    # A src layout: locally the job imports mypkg from <project>/src (here through PYTHONPATH;
    # an editable install does the same).  On the nodes it must import Ray's copy: the second
    # node has no checkout, and on the head the checkout is not the code that was shipped.
    root = src_layout_project(pytester, marker)
    rc, out = run(root, marker, "--ray", ray_cluster.address,
                  env={"PYTHONPATH": str(root / "src")})
    assert rc == 0, out
    assert "imports from src)" in out, out
    for job in ("far", "near"):
        log = root / "out" / job / "train.log"
        assert imported_from_rays_copy(log), log.read_text()


@pytest.mark.parametrize("same", [True, False], ids=["the-checkout", "another-library"])
def test_a_package_from_outside_the_project_stands_for_its_own_only_when_identical(
        tmp_path, monkeypatch, same):
    # In a Ray Job, pytest runs in a copy of the checkout while an editable install (here a
    # PYTHONPATH entry) still points at the original: the same code, so the copy ships in its
    # place.  An unrelated library of the same name is what the jobs import locally: it stays.
    project, original = tmp_path / "project", tmp_path / "original"
    for root, text in ((project, "VERSION = 1\n"),
                       (original, "VERSION = 1\n" if same else "VERSION = 2\n")):
        (root / "src" / "mypkg").mkdir(parents=True)
        (root / "src" / "mypkg" / "__init__.py").write_text(text)
    monkeypatch.setenv("PYTHONPATH", str(original / "src"))
    assert ("src" in PackageRoots(project).get()) is same


def ray_job(cluster: Cluster, root: Path, marker: str, verb: str, *args: str,
            env_vars: dict[str, str] | None = None, options: tuple[str, ...] = ()
            ) -> subprocess.CompletedProcess:
    """``ray job <verb>`` against the cluster's job server.  ``submit`` ships ``root`` as the
    job's working_dir and runs pytest with ``--ray auto`` and ``args`` as its entrypoint (on
    the head, under this Python); other verbs take ``args`` as they are."""
    cmd = [RAY, "job", verb, "--address", cluster.dashboard_address, *options]
    if verb == "submit":
        cmd += ["--working-dir", str(root), "--runtime-env-json",
                json.dumps({"env_vars": env_vars or {}}), "--", sys.executable, "-m", "pytest",
                "-p", "training_plugin", "-p", "no:cacheprovider", "--ray", "auto"]
    return subprocess.run([*cmd, *args], cwd=root, capture_output=True, text=True, timeout=300,
                          check=False, env=session_env(marker, {"RAY_AUTH_MODE": "disabled"}))


def test_pytest_as_a_ray_job_entrypoint_runs_like_any_session(pytester, ray_cluster, marker):
    # `ray job submit --working-dir .`: Ray ships the project, unpacks it on the head and runs
    # pytest there as the job's driver.  The job's working_dir and the session's would clash
    # (Ray refuses two); the session's copy of the rootdir wins.  The job's PYTHONPATH points at
    # the original checkout, as an editable install would; the second node has no checkout, and
    # both nodes must import the copy that was submitted.
    root = src_layout_project(pytester, marker)
    kept = root / "kept"
    env_vars = {"PYTHONPATH": str(root / "src")}

    def submit(*args: str) -> str:
        done = ray_job(ray_cluster, root, marker, "submit", *args, env_vars=env_vars)
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout + done.stderr

    out = submit(f"--output-dir={kept}")
    assert re.search(r"^far\s+passed .* ray:second", out, re.M), out
    assert "imports from " in out and "src" in out.split("imports from ", 1)[1], out
    assert "temporary copy" not in out, out
    for job in ("far", "near"):
        log = kept / job / "train.log"  # outputs where --output-dir said
        assert imported_from_rays_copy(log), log.read_text()
    # Left inside the job's copy of the project, outputs would be deleted with it: said so.
    out = submit("--collect-only", "--output-dir=out")
    said = re.escape(MSG_OUTPUT_IN_JOB_COPY.format(out="OUT")).replace("OUT", r"/\S+/out")
    assert re.search(said, out), out
    assert not marked_pids(marker)


def test_ray_job_stop_leaves_nothing_running_on_any_node(pytester, ray_cluster, marker):
    # `ray job stop` is how a Ray Job is cancelled: Ray's job supervisor sends the entrypoint
    # SIGTERM (SIGKILL a few seconds later).  Every job of the session ends with it.
    root = project(pytester, marker,
                   {"train_far": tree_job(300), "train_near": tree_job(300)},
                   '[tool.training_plugin.jobs.far]\nresources = { second = 1 }\n'
                   '[tool.training_plugin.jobs.near]\nresources = { head = 1 }\n')
    kept = root / "kept"
    job_id = f"tp-{marker}"
    submitted = ray_job(ray_cluster, root, marker, "submit", f"--output-dir={kept}",
                        env_vars={MARKER_VAR: marker},  # pytest, the job's driver, too
                        options=("--no-wait", "--submission-id", job_id))
    assert submitted.returncode == 0, submitted.stdout + submitted.stderr
    deadline = time.monotonic() + 120
    while not all(job_was_ready(kept / job / "train.log") for job in ("far", "near")):
        assert time.monotonic() < deadline, ray_job(ray_cluster, root, marker, "logs",
                                                    job_id).stdout
        time.sleep(0.2)
    assert len(marked_pids(marker)) >= 2 * 4 + 1
    stopped = ray_job(ray_cluster, root, marker, "stop", job_id)
    assert stopped.returncode == 0, stopped.stdout + stopped.stderr
    assert wait_gone(marker) == []
    logs = ray_job(ray_cluster, root, marker, "logs", job_id).stdout
    assert "pytest received SIGTERM" in logs, logs


def test_a_project_too_big_to_ship_is_a_usage_error_naming_the_fix(pytester, ray_cluster,
                                                                  marker):
    # Ray refuses a working_dir over its gRPC message size (512 MiB by default); the
    # controller's limit is lowered to 2 MB here so that a 3 MB file is too big.
    root = project(pytester, marker, {"train_a": "print(1)\n"}, "")
    (root / "data.bin").write_bytes(os.urandom(3_000_000))
    rc, out = run(root, marker, "--ray", ray_cluster.address,
                  env={"RAY_max_grpc_message_size": "2000000"})
    assert rc == 4, out
    assert "could not open a session on the Ray cluster" in out, out
    assert "exceeds the maximum size" in out and ".gitignore" in out, out
    assert not (root / "out").exists()


def test_data_that_gitignore_keeps_behind_is_explained(pytester, ray_cluster, marker):
    # data/ is ignored, so it does not travel: the job fails on the node and its log (shown in
    # the failure report) says why and what to do; Ray's switch ships it.
    job = "print(open('data/visits.csv').read().strip())\n"
    root = project(pytester, marker, {"train_far": job},
                   "[tool.training_plugin.jobs.far]\nresources = { second = 1 }\n")
    (root / ".gitignore").write_text("data/\n")
    (root / "data").mkdir()
    (root / "data" / "visits.csv").write_text("id,visits\n")
    rc, out = run(root, marker, "--ray", ray_cluster.address)
    assert rc == 1, out
    assert "FileNotFoundError" in out, out
    assert ("data/visits.csv exists on the controller but did not travel to the node" in out
            and "RAY_RUNTIME_ENV_IGNORE_GITIGNORE=1" in out), out
    rc, out = run(root, marker, "--ray", ray_cluster.address,
                  env={"RAY_RUNTIME_ENV_IGNORE_GITIGNORE": "1"})
    assert rc == 0, out
    assert "id,visits" in (root / "out" / "far" / "train.log").read_text()
