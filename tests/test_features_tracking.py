"""MLflow tracking (``--mlflow``): runs on a real SQLite store and a real ``mlflow server``.

The sessions run ``pytest -p training_plugin`` in subprocesses with fake jobs; the runs are read
back with ``MlflowClient`` (SQLite) or over the REST API (server).  Nothing reaches the network:
telemetry is off and the server listens on 127.0.0.1.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import urllib.request
from pathlib import Path

import pytest
from ports import release_port, reserve_port

pytest_plugins = ["pytester"]
#: SQLAlchemy's deprecation notice from MLflow's store (read in this process) is not ours
pytestmark = pytest.mark.filterwarnings(r"ignore::DeprecationWarning:(mlflow|sqlalchemy)(\.|$)")

PLUGIN = ("-p", "training_plugin", "-p", "no:randomly", "-p", "no:cacheprovider")

#: A job that trains a tiny LogisticRegression on a frame with a categorical column and writes
#: what the AIMedRes jobs write: model.joblib (a bundle dict), manifest.json, figures/,
#: metrics.json (with candidate models and data provenance).
SKLEARN_JOB = textwrap.dedent('''
    import argparse, json, os
    import joblib, numpy as np, pandas as pd
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler
    p = argparse.ArgumentParser()
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--output-dir")
    p.add_argument("--penalty", default="l2")
    ns = p.parse_args()
    out = ns.output_dir
    os.makedirs(os.path.join(out, "figures"), exist_ok=True)
    rng = np.random.default_rng(0)
    X = pd.DataFrame({"age": rng.integers(40, 90, 40), "score": rng.normal(size=40),
                      "sex": ["F", "M"] * 20})
    y = (X["score"] > 0).astype(int)
    pre = ColumnTransformer([("num", StandardScaler(), ["age", "score"]),
                             ("cat", OneHotEncoder(handle_unknown="ignore"), ["sex"])])
    model = Pipeline([("preprocess", pre), ("model", LogisticRegression(penalty=ns.penalty))])
    model.fit(X, y)
    joblib.dump({"model": model, "classes": ["no", "yes"], "positive_label": "yes",
                 "features": list(X.columns), "target": "y", "task": "binary", "job": "good"},
                os.path.join(out, "model.joblib"))
    open(os.path.join(out, "figures", "roc.png"), "wb").write(b"\\x89PNG fake")
    data = {"source": "fake:frame", "synthetic": True, "rows": 40, "features": 3,
            "sha256": "ab" * 32}
    json.dump({"job": "good", "git": {"commit": "c0ffee" * 6 + "abcd"}, "data": data},
              open(os.path.join(out, "manifest.json"), "w"))
    json.dump({"job": "good", "task": "binary", "primary_metric": "roc_auc",
               "metrics": {"roc_auc": 0.91, "accuracy": 0.8},
               "models": {"logistic_regression": {"roc_auc": 0.91, "roc_auc_std": 0.02},
                          "dummy": {"roc_auc": 0.5}},
               "best_model": "logistic_regression", "data": data},
              open(os.path.join(out, "metrics.json"), "w"))
    print("trained good")
''')
BAD_JOB = "import sys\nprint('boom: the data file is missing', flush=True)\nsys.exit(3)\n"
SLOW_JOB = "import time\nprint('starting slow', flush=True)\ntime.sleep(60)\n"
#: A job killed by SIGKILL (an infrastructure failure) on its first attempt, passing on its next.
FLAKY_JOB = ("import os, signal\nif os.environ['TRAINING_ATTEMPT'] == '1':\n"
             "    os.kill(os.getpid(), signal.SIGKILL)\n")
#: Skips the job ``cached`` (as an up-to-date check would) and records whether mlflow was
#: imported in the pytest process.
CONFTEST = textwrap.dedent('''
    import json, os, sys
    from training_plugin.results import JobSkip

    def pytest_training_skip_job(item):
        if item.spec.id == "cached":
            return JobSkip("unchanged since the last run")

    def pytest_unconfigure(config):
        if not hasattr(config, "workerinput"):
            with open("imported.json", "w") as f:
                json.dump({"mlflow": "mlflow" in sys.modules,
                           "env": sorted(k for k in os.environ if k.startswith("MLFLOW_")
                                         and k != "MLFLOW_DISABLE_TELEMETRY")}, f)
''')
PYPROJECT = '[project]\nname = "demo-project"\n'
#: Job-table entries of the jobs that have one.
TABLE = {
    "good": '[tool.training_plugin.jobs.good]\nargs = ["--penalty", "l2"]\nmin = {roc_auc = 0.5}\n',
    "slow": "[tool.training_plugin.jobs.slow]\ntimeout = 2\n",
}


@pytest.fixture(scope="session", autouse=True)
def _mlflow_imported_once(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Load mlflow, its SQL store and pyfunc in this process before any pytester fixture takes
    its snapshot of sys.modules: modules first imported during a pytester test are dropped at
    its end, and importing mlflow or SQLAlchemy a second time in one process breaks them (and
    package metadata lookups of later tests in the same worker)."""
    import mlflow.pyfunc  # noqa: F401
    from mlflow import MlflowClient

    db = tmp_path_factory.mktemp("mlflow-warm") / "warm.db"
    MlflowClient(tracking_uri=f"sqlite:///{db}").search_experiments()


@pytest.fixture(autouse=True)
def _offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """No telemetry, no inherited tracking settings."""
    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
    monkeypatch.setenv("DO_NOT_TRACK", "1")
    for name in ("MLFLOW_TRACKING_URI", "MLFLOW_EXPERIMENT_NAME", "MLFLOW_EXPERIMENT_ID",
                 "PYTEST_ADDOPTS"):
        monkeypatch.delenv(name, raising=False)


def project(pytester: pytest.Pytester, jobs: dict[str, str]) -> Path:
    pytester.makeini("[pytest]\n")
    (pytester.path / "pyproject.toml").write_text(
        PYPROJECT + "".join(TABLE[job] for job in jobs if job in TABLE))
    (pytester.path / "conftest.py").write_text(CONFTEST)
    for job, text in jobs.items():
        (pytester.path / "jobs").mkdir(exist_ok=True)
        (pytester.path / "jobs" / f"train_{job}.py").write_text(text)
    return pytester.path


def imported_mlflow(root: Path) -> bool:
    return json.loads((root / "imported.json").read_text())["mlflow"]


def children(client, experiment_id: str) -> tuple[object, dict[str, list]]:
    runs = client.search_runs([experiment_id], max_results=1000)
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    assert len(parents) == 1, [r.data.tags for r in runs]
    by_job: dict[str, list] = {}
    for run in runs:
        if run.data.tags.get("mlflow.parentRunId") == parents[0].info.run_id:
            by_job.setdefault(run.data.tags["job"], []).append(run)
    return parents[0], by_job


@pytest.mark.slow
def test_sqlite_store_holds_a_parent_run_and_one_child_run_per_job(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch,
) -> None:
    root = project(pytester, {"good": SKLEARN_JOB, "bad": BAD_JOB, "slow": SLOW_JOB,
                              "cached": SKLEARN_JOB, "flaky": FLAKY_JOB})
    stale = root / "training-results" / "bad" / "model.joblib"  # from an earlier run
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"old model")
    os.utime(stale, (time.time() - 3600, time.time() - 3600))
    result = pytester.runpytest_subprocess(*PLUGIN, "-n", "2", "--epochs", "3", "--mlflow",
                                           "--retries", "1")
    result.assert_outcomes(passed=2, failed=2, skipped=1)
    result.stdout.fnmatch_lines(["*mlflow: 4 job run(s) logged to sqlite:///*mlflow.db*"])
    assert imported_mlflow(root)
    # the controller's environment (which jobs inherit) gets no MLFLOW_* variables
    assert json.loads((root / "imported.json").read_text())["env"] == []
    db = root / "training-results" / "mlflow.db"
    assert db.is_file()
    assert (root / "training-results" / "good" / "metrics.json").is_file()  # results on disk

    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{db}")
    experiment = client.get_experiment_by_name("demo-project")  # pyproject [project] name
    assert experiment is not None
    assert experiment.artifact_location == (root / "training-results" / "mlartifacts").as_uri()
    parent, by_job = children(client, experiment.experiment_id)
    # under -n 2 each job is one run; the skipped (unchanged) job is not logged
    assert {job: len(runs) for job, runs in by_job.items()} == {
        "good": 1, "bad": 1, "slow": 1, "flaky": 1}
    assert parent.info.status == "FAILED"  # the session had failures
    assert parent.data.params["epochs"] == "3"
    assert parent.data.metrics["jobs_logged"] == 4
    # what every job cost, as summary.json has it: metrics of its run; the session's on the parent
    summary = json.loads((root / "training-results" / "summary.json").read_text())
    costs = {job["id"]: job["cost"] for job in summary["jobs"] if job["id"] in by_job}
    for job, cost in costs.items():
        metrics = by_job[job][0].data.metrics
        assert metrics["cost_wall_s"] == pytest.approx(cost["wall_s"])
        assert metrics["cost_cpu_s"] == pytest.approx(cost["cpu_s"])
        assert metrics["cost_peak_bytes"] == cost["peak_bytes"] > 0
        assert metrics["cost_peak_mib"] == pytest.approx(cost["peak_bytes"] / 2**20, abs=1e-3)
        assert metrics["cost_gpu_s"] == 0.0
    assert {job: runs[0].data.metrics["attempts"] for job, runs in by_job.items()} == {
        "good": 1, "bad": 1, "slow": 1, "flaky": 2}
    attempts = next(j for j in summary["jobs"] if j["id"] == "flaky")["attempts"]
    assert by_job["flaky"][0].data.metrics["cost_cpu_s_all_attempts"] == pytest.approx(
        sum(a["cost"]["cpu_s"] for a in attempts))
    assert parent.data.metrics["cost_peak_bytes"] == max(c["peak_bytes"] for c in costs.values())
    assert parent.data.metrics["cost_cpu_s"] == pytest.approx(sum(
        by_job[job][0].data.metrics.get("cost_cpu_s_all_attempts", c["cpu_s"])
        for job, c in costs.items()))

    good = by_job["good"][0]
    assert good.info.status == "FINISHED"
    assert good.data.params["epochs"] == "3"  # resolved flags of the job's argv
    assert good.data.params["penalty"] == "l2"
    assert good.data.params["output-dir"].endswith("training-results/good")
    assert good.data.params["job.args"] == "--penalty l2"  # job-table settings
    assert good.data.params["job.min.roc_auc"] == "0.5"
    assert good.data.metrics["roc_auc"] == pytest.approx(0.91)
    assert good.data.metrics["models.logistic_regression.roc_auc_std"] == pytest.approx(0.02)
    assert good.data.metrics["models.dummy.roc_auc"] == pytest.approx(0.5)
    tags = good.data.tags
    assert tags["script"] == "jobs/train_good.py"
    assert tags["git_commit"] == "c0ffee" * 6 + "abcd"
    assert tags["data_source"] == "fake:frame" and tags["data_sha256"] == "ab" * 32
    assert tags["synthetic"] == "true"
    assert tags["outcome"] == "passed" and tags["node"].startswith("local")
    top = {a.path for a in client.list_artifacts(good.info.run_id)}
    assert {"train.log", "metrics.json", "manifest.json", "model.joblib", "figures"} <= top
    assert [a.path for a in client.list_artifacts(good.info.run_id, "figures")] == [
        "figures/roc.png"]

    import mlflow.pyfunc
    import pandas as pd

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{db}")  # as a user's shell would
    served = mlflow.pyfunc.load_model(f"runs:/{good.info.run_id}/model")
    inputs = served.metadata.get_input_schema().input_names()
    assert inputs == ["age", "score", "sex"]
    rows = pd.DataFrame({"age": [50, 80, 61], "score": [-2.0, 2.0, 0.1], "sex": ["F", "M", "F"]})
    assert list(served.predict(rows)) == [0, 1, 1]
    assert good.data.tags["model"].startswith(f"runs:/{good.info.run_id}/model (models:/")

    bad = by_job["bad"][0]
    assert bad.info.status == "FAILED"
    assert bad.data.tags["outcome"] == "failed"
    assert "exit code 3" in bad.data.tags["story"]
    log = Path(client.download_artifacts(bad.info.run_id, "train.log", str(pytester.path)))
    assert "boom: the data file is missing" in log.read_text()
    assert "model.joblib" not in {a.path for a in client.list_artifacts(bad.info.run_id)}

    slow = by_job["slow"][0]
    assert slow.info.status == "KILLED"  # timed out
    assert "timed out" in slow.data.tags["story"]
    assert "train.log" in {a.path for a in client.list_artifacts(slow.info.run_id)}


def test_without_mlflow_nothing_imports_mlflow(pytester: pytest.Pytester) -> None:
    root = project(pytester, {"bad": BAD_JOB})
    result = pytester.runpytest_subprocess(*PLUGIN)
    result.assert_outcomes(failed=1)
    assert not imported_mlflow(root)
    assert not (root / "training-results" / "mlflow.db").exists()
    assert "mlflow: " not in result.stdout.str()  # no tracking summary
    help_text = pytester.runpytest_subprocess("-p", "training_plugin", "--help").stdout.str()
    assert "--mlflow=[URI]" in help_text and "--mlflow-strict" in help_text


def test_unreachable_server_is_a_warning_and_keeps_the_results(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch,
) -> None:
    root = project(pytester, {"bad": BAD_JOB})
    (root / "jobs" / "train_ok.py").write_text(
        "import json, os\nout = os.environ['TRAINING_OUTPUT_DIR']\n"
        "json.dump({'metrics': {'accuracy': 0.9}}, open(os.path.join(out, 'metrics.json'), 'w'))\n"
    )
    port = reserve_port()  # reserved for this process, and nothing listens on it
    uri = f"http://127.0.0.1:{port}"
    result = pytester.runpytest_subprocess(*PLUGIN, f"--mlflow={uri}")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines([
        f"WARNING mlflow tracking is off for this session: cannot track to {uri}: *"
        "no tracking server answers*; the results are on disk in *training-results*",
    ])
    assert json.loads((root / "training-results" / "ok" / "metrics.json").read_text())

    # a bare --mlflow honours MLFLOW_TRACKING_URI; ini training_mlflow_uri turns tracking on
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri + "/env")
    from_env = pytester.runpytest_subprocess(*PLUGIN, "-k", "ok", "--mlflow")
    from_env.stdout.fnmatch_lines([f"WARNING mlflow tracking is off*cannot track to {uri}/env:*"])
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    from_ini = pytester.runpytest_subprocess(*PLUGIN, "-k", "ok",
                                             "-o", f"training_mlflow_uri={uri}/ini")
    from_ini.stdout.fnmatch_lines([f"WARNING mlflow tracking is off*cannot track to {uri}/ini:*"])

    strict = pytester.runpytest_subprocess(*PLUGIN, f"--mlflow={uri}", "--mlflow-strict",
                                           "--output-dir", "strict-out")
    assert strict.ret == pytest.ExitCode.USAGE_ERROR
    strict.stderr.fnmatch_lines([f"*--mlflow-strict: cannot track to {uri}: *"])
    assert not (root / "strict-out").exists()  # nothing ran

    # a database that cannot be written (its folder is a file; root ignores permissions)
    (root / "not-a-folder").write_text("a file\n")
    unwritable = f"sqlite:///{root / 'not-a-folder' / 'mlflow.db'}"
    blocked = pytester.runpytest_subprocess(*PLUGIN, "-k", "ok", f"--mlflow={unwritable}",
                                            "--output-dir=db-out")
    blocked.assert_outcomes(passed=1)
    blocked.stdout.fnmatch_lines([
        f"WARNING mlflow tracking is off for this session: cannot track to {unwritable}: *"])
    assert json.loads((root / "db-out" / "ok" / "metrics.json").read_text())


def test_a_value_that_is_no_tracking_uri_is_a_usage_error(pytester: pytest.Pytester) -> None:
    root = project(pytester, {"bad": BAD_JOB})
    result = pytester.runpytest_subprocess(*PLUGIN, "--mlflow", "jobs/train_bad.py")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--mlflow jobs/train_bad.py: not a tracking URI*"
                                 "write --mlflow after it, or --mlflow=default*"])
    assert not (root / "training-results").exists()


# ---------------------------------------------------------------------------------------------
# a real tracking server
# ---------------------------------------------------------------------------------------------
#: Starts of the tracking server tried (each on a new port) before the fixture gives up.
SERVER_STARTS = 3


def _start_server(where: Path, port: int, log: object) -> subprocess.Popen:
    env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "1",
           "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}  # no background job workers
    return subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port),
         "--backend-store-uri", f"sqlite:///{where / 'server.db'}",
         "--artifacts-destination", str(where / "artifacts"), "--workers", "1"],
        cwd=where, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )


def _stop_server(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGTERM)  # its group: the server and its workers
    except ProcessLookupError:
        pass
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def _healthy(uri: str) -> bool:
    try:
        with urllib.request.urlopen(uri + "/health", timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory):
    """``mlflow server`` on 127.0.0.1 with a reserved port (tests/ports.py) and its own store,
    started once per module in its own process group and stopped by its pid.  A server that
    ends while starting (e.g. its port was taken after all) is started again on a new port."""
    where = tmp_path_factory.mktemp("mlflow-server")
    log_path = where / "server.log"
    proc: subprocess.Popen | None = None
    port: int | None = None
    try:
        for _ in range(SERVER_STARTS):
            port = reserve_port()
            with open(log_path, "ab") as log:
                proc = _start_server(where, port, log)
            uri = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 180
            while proc.poll() is None and not _healthy(uri):
                if time.monotonic() > deadline:
                    pytest.fail("mlflow server did not answer within 180 s:\n"
                                + log_path.read_text(errors="replace")[-3000:])
                time.sleep(0.5)
            if proc.poll() is None:
                break
            _stop_server(proc)
            release_port(port)
            proc = port = None
        if proc is None:
            pytest.fail(f"mlflow server did not start ({SERVER_STARTS} tries):\n"
                        + log_path.read_text(errors="replace")[-3000:])
        yield uri
    finally:
        if proc is not None:
            _stop_server(proc)
        if port is not None:
            release_port(port)


def _rest(uri: str, path: str, body: dict | None = None) -> dict:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(uri + path, data=data,
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


@pytest.mark.slow
def test_runs_logged_to_a_tracking_server_read_back_over_rest(
    pytester: pytest.Pytester, mlflow_server: str,
) -> None:
    project(pytester, {"good": SKLEARN_JOB, "bad": BAD_JOB})
    pytester.makeini("[pytest]\ntraining_mlflow_experiment = server-demo\n")
    result = pytester.runpytest_subprocess(*PLUGIN, "--mlflow", mlflow_server)
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines([f"*mlflow: 2 job run(s) logged to {mlflow_server}*"])

    experiment = _rest(mlflow_server,
                       "/api/2.0/mlflow/experiments/get-by-name?experiment_name=server-demo")
    found = _rest(mlflow_server, "/api/2.0/mlflow/runs/search",
                  {"experiment_ids": [experiment["experiment"]["experiment_id"]],
                   "max_results": 100})
    runs = found["runs"]
    tags = [{t["key"]: t["value"] for t in r["data"].get("tags", [])} for r in runs]
    parent_ids = [r["info"]["run_id"] for r, t in zip(runs, tags)
                  if "mlflow.parentRunId" not in t]
    assert len(parent_ids) == 1
    jobs = {t["job"]: r for r, t in zip(runs, tags) if t.get("mlflow.parentRunId") in parent_ids}
    assert set(jobs) == {"good", "bad"}
    assert jobs["good"]["info"]["status"] == "FINISHED"
    assert jobs["bad"]["info"]["status"] == "FAILED"
    metrics = {m["key"]: m["value"] for m in jobs["good"]["data"]["metrics"]}
    assert metrics["roc_auc"] == pytest.approx(0.91)
    assert metrics["cost_cpu_s"] > 0 and metrics["cost_peak_bytes"] > 0  # what the job cost
    assert metrics["attempts"] == 1
    params = {p["key"]: p["value"] for p in jobs["good"]["data"]["params"]}
    assert params["penalty"] == "l2"
    artifacts = _rest(mlflow_server, "/api/2.0/mlflow/artifacts/list?run_id="
                      + jobs["bad"]["info"]["run_id"])
    assert "train.log" in {f["path"] for f in artifacts.get("files", [])}


@pytest.mark.slow
def test_an_interrupted_job_is_a_killed_run_that_keeps_its_log(pytester: pytest.Pytester) -> None:
    root = project(pytester, {"slow": SLOW_JOB})
    (root / "pyproject.toml").write_text(PYPROJECT)  # no timeout: the job runs until stopped
    proc = subprocess.Popen([sys.executable, "-m", "pytest", *PLUGIN, "--mlflow"], cwd=root,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    log = root / "training-results" / "slow" / "train.log"
    deadline = time.monotonic() + 120
    while not (log.is_file() and "starting slow" in log.read_text()):
        assert proc.poll() is None and time.monotonic() < deadline, proc.stdout.read()
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)  # ends the session like Ctrl-C
    out = proc.communicate(timeout=300)[0].decode()
    assert proc.returncode == pytest.ExitCode.INTERRUPTED, out
    assert "mlflow: 1 job run(s) logged" in out

    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{root / 'training-results' / 'mlflow.db'}")
    parent, by_job = children(client, client.get_experiment_by_name("demo-project").experiment_id)
    assert parent.info.status == "KILLED"
    slow = by_job["slow"][0]
    assert slow.info.status == "KILLED" and slow.data.tags["outcome"] == "interrupted"
    saved = Path(client.download_artifacts(slow.info.run_id, "train.log", str(root)))
    assert "starting slow" in saved.read_text()


def test_a_session_stopped_at_start_after_tracking_began_ends_its_parent_run(
        pytester: pytest.Pytester) -> None:
    # Another plugin refuses the session after tracking has started the parent run: pytest
    # then skips sessionfinish; the parent run must still end (FAILED), not stay RUNNING.
    root = project(pytester, {"bad": BAD_JOB})
    (root / "conftest.py").write_text(CONFTEST + textwrap.dedent('''
        import pytest

        @pytest.hookimpl(trylast=True)
        def pytest_sessionstart(session):
            raise pytest.UsageError("refused by a later plugin")
        '''))
    result = pytester.runpytest_subprocess(*PLUGIN, "--mlflow")
    assert result.ret == pytest.ExitCode.USAGE_ERROR, result.stdout.str()
    result.stderr.fnmatch_lines(["*refused by a later plugin*"])

    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{root / 'training-results' / 'mlflow.db'}")
    parent, by_job = children(client, client.get_experiment_by_name("demo-project").experiment_id)
    assert parent.info.status == "FAILED" and parent.info.end_time, parent.info
    assert by_job == {}
