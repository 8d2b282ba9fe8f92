"""Benchmark: the Ray executor on a two-node Ray cluster on this machine (one CPU per node).

    .venv/bin/python bench/bench_ray.py [--trivial 10]

Starts a private two-node cluster (tests/ray_cluster.py: own ports and temp dirs, stopped by
pid), then:

- makespan: eight sleeping jobs (2, 2, 4, 4, 6, 6, 8, 12 s; 44 s of work on 2 CPUs, optimum
  22 s).  One warm-up session first (the plugin remembers durations: longest first), then the
  measured one.  The jobs' makespan is the session's wall time minus that of the same session
  with every job deselected (pytest start-up + connecting to the cluster); cluster start-up is
  not counted.  Target: within 10% of 22 s.
- per-job overhead of Ray against the local executor on trivial scripts: one trivial job
  (latency), and ``--trivial`` of them (per job), each minus the empty session, best of 3.

Prints the figures and, per job, its timeline (``TRAINING_RAY_TIMELINE``: handed to the
executor, released to Ray, began on its node, started, ended, node); never asserts.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from _bench import bench_env  # noqa: E402
from ray_cluster import Cluster  # noqa: E402

from training_plugin.executors.ray import TIMELINE_VAR  # noqa: E402

SLEEPS = (2, 2, 4, 4, 6, 6, 8, 12)
OPTIMUM_S = 22.0
TARGET = 1.10


def session(root: Path, *args: str, timeline: Path | None = None) -> float:
    """Wall time of one ``pytest -p training_plugin`` session in ``root`` (with each Ray job's
    timeline appended to ``timeline`` when given)."""
    extra = {TIMELINE_VAR: str(timeline)} if timeline is not None else {}
    began = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "pytest", "-p", "training_plugin", "-q",
                           "-p", "no:randomly", *args], cwd=root, env=bench_env(**extra),
                          capture_output=True, text=True)
    took = time.monotonic() - began
    if proc.returncode not in (0, 5):
        raise SystemExit(f"session failed ({proc.returncode}):\n{proc.stdout[-3000:]}"
                         f"{proc.stderr[-3000:]}")
    return took


def show_timeline(path: Path, label: str) -> float:
    """Per job, its place in the executor's release order (#) and seconds from the first
    submission: handed to the executor, released to Ray, the task's first line on its node,
    the job's process started, its end seen by the controller; and the node."""
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    path.unlink()
    if not rows:
        return 0.0
    t0 = min(r["submitted"] for r in rows)

    def at(row: dict, key: str) -> str:
        return f"{row[key] - t0:8.2f}" if row.get(key) is not None else "       -"

    def gap(row: dict, a: str, b: str) -> str:
        return f"{row[b] - row[a]:6.2f}" if row.get(a) and row.get(b) else "     -"

    print(f"{label}: per job, s from the first submission; queued = submitted -> released "
          "to Ray, ray = released -> task began on its node, setup = began -> job started")
    print(f"  {'job':8} {'#':>2} {'submitted':>9} {'released':>8} {'began':>8} {'started':>8} "
          f"{'ended':>8} {'queued':>6} {'ray':>6} {'setup':>6}  node")
    for row in sorted(rows, key=lambda r: r.get("spawned") or r["ended"]):
        print(f"  {row['job']:8} {row.get('release') or '-':>2} {at(row, 'submitted'):>9} "
              f"{at(row, 'released')} "
              f"{at(row, 'began')} {at(row, 'spawned')} {at(row, 'ended')} "
              f"{gap(row, 'submitted', 'released')} {gap(row, 'released', 'began')} "
              f"{gap(row, 'began', 'spawned')}  {row['node']}")
    return max(r["ended"] for r in rows) - t0


def best(root: Path, *args: str, repeat: int = 3) -> float:
    return min(session(root, *args) for _ in range(repeat))


def project(root: Path, scripts: dict[str, str]) -> Path:
    root.mkdir(parents=True)
    (root / "pytest.ini").write_text("[pytest]\n")
    for name, text in scripts.items():
        (root / f"train_{name}.py").write_text(text)
    return root


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trivial", type=int, default=10,
                        help="trivial jobs for the overhead (0: makespan only)")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-ray-"))
    began = time.monotonic()
    cluster = Cluster(cpus=1).start()
    print(f"cluster: 2 nodes x 1 CPU at {cluster.address}, up in "
          f"{time.monotonic() - began:.1f} s (not counted)")
    try:
        ray = ("--ray", cluster.address)
        sleeps = project(tmp / "sleeps", {
            f"s{i}_{s}": f"import time\ntime.sleep({s})\nprint('slept {s}')\n"
            for i, s in enumerate(SLEEPS)})
        session(sleeps, *ray)  # a first session: durations remembered, working_dir on the nodes
        timeline = tmp / "timeline.jsonl"
        total = session(sleeps, *ray, timeline=timeline)
        empty = best(sleeps, *ray, "-k", "no_such_job")
        makespan = total - empty
        print(f"makespan: {makespan:.1f} s for jobs of {SLEEPS} s "
              f"(session {total:.1f} s - empty session {empty:.1f} s); optimum {OPTIMUM_S:.0f} s, "
              f"ratio {makespan / OPTIMUM_S:.3f}x (target <= {TARGET:.2f}x: "
              f"{'met' if makespan / OPTIMUM_S <= TARGET else 'MISSED'})")
        span = show_timeline(timeline, "makespan session")
        print(f"first job handed to the executor -> last job ended: {span:.1f} s "
              f"({span / OPTIMUM_S:.3f}x; leaves out the connection, which overlaps "
              "the scripts' analysis, which the empty session pays too)")

        if args.trivial <= 0:
            return 0
        trivial = "print('trained')\n"
        one = project(tmp / "one", {"job": trivial})
        many = project(tmp / "many", {f"job{i:03d}": trivial for i in range(args.trivial)})
        session(one, *ray)
        session(many, *ray, timeline=timeline)
        show_timeline(timeline, f"{args.trivial} trivial jobs (warm-up session)")
        figures = {}
        for label, extra in (("local", ()), ("ray", ray)):
            base = best(one, *extra, "-k", "no_such_job")
            figures[label] = (best(one, *extra) - base,
                              (best(many, *extra) - base) / args.trivial)
        for label, (latency, per_job) in figures.items():
            print(f"{label:5}: one trivial job {latency * 1000:.0f} ms; "
                  f"{args.trivial} trivial jobs: {per_job * 1000:.0f} ms per job")
        print(f"ray overhead per trivial job: latency +{(figures['ray'][0] - figures['local'][0]) * 1000:.0f} ms, "
              f"throughput {(figures['ray'][1] - figures['local'][1]) * 1000:+.0f} ms per job "
              "(ray runs 2 at once on 2 nodes; local runs them one by one)")
    finally:
        cluster.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
