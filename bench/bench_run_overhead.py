"""Benchmark: running N trivial training scripts through the plugin vs a plain shell loop.

    .venv/bin/python bench/bench_run_overhead.py [--scripts 100] [--repeat 3]

Generates N trivial scripts in a temporary tree and times (best of ``--repeat`` interleaved
rounds, after one warm-up round):

- a plain shell loop ``for f in ...; do python "$f"; done``;
- ``pytest -p training_plugin -q`` over the same tree (runs every script as a job);
- ``pytest -p training_plugin --collect-only -q`` (pytest's fixed start-up + collection).

Prints the times, the ratio plugin/loop (target <= 1.10x) and the ratio after subtracting the
fixed start-up; and the plugin with the runner swapped for a bare ``subprocess.run`` (to tell
the plugin's own per-job cost from the process-safety runner's).  Never asserts: figures are for humans and CI logs.
"""

from __future__ import annotations

import argparse
import os
import resource
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TARGET = 1.10
SCRIPT = "import sys\nprint('trained', sys.argv[0])\n"
#: conftest that swaps the runner for a bare subprocess.run, to separate the plugin's own
#: per-job cost from the process-safety runner's (reaper, process-table sweep).
BARE_RUNNER_CONFTEST = """\
import subprocess, time
from training_plugin import runner

def _bare_run_job(argv, *, cwd, env, log_path, timeout=None):
    log_path.parent.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()
    with open(log_path, "wb") as log:
        rc = subprocess.run(argv, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL).returncode
    return runner.RunResult(rc, time.monotonic() - start, False, timeout, log_path)

def pytest_configure(config):
    runner.run_job = _bare_run_job
"""


def make_tree(root: Path, count: int) -> list[Path]:
    """``count`` trivial scripts under ``root/jobs`` plus a pytest.ini."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "pytest.ini").write_text("[pytest]\n")
    scripts = []
    for i in range(count):
        path = root / "jobs" / f"train_job{i:04d}.py"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(SCRIPT)
        scripts.append(path)
    return scripts


#: "Warm" includes Python's bytecode cache (even when the calling shell sets
#: PYTHONDONTWRITEBYTECODE=1); applies to the loop's scripts and to pytest alike.
ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_once(cmd: list[str], cwd: Path, check_rc: int = 0) -> tuple[float, float]:
    """(wall, CPU) seconds of one run, CPU = user+sys of the command and all its children
    (exits with the output when the command fails)."""
    cpu0 = _children_cpu()
    start = time.perf_counter()
    proc = subprocess.run(
        cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=ENV
    )
    elapsed = time.perf_counter() - start
    if proc.returncode != check_rc:
        sys.exit(f"{shlex.join(cmd)} exited {proc.returncode}:\n{proc.stdout.decode()[-3000:]}")
    return elapsed, _children_cpu() - cpu0


def best_times(
    variants: dict[str, tuple[list[str], Path]], repeat: int
) -> tuple[dict[str, float], dict[str, float]]:
    """Best wall and best CPU time per variant; variants are interleaved in every round (a
    shared, busy machine then slows all of them alike) after one warm-up round."""
    wall: dict[str, list[float]] = {name: [] for name in variants}
    cpu: dict[str, list[float]] = {name: [] for name in variants}
    for round_no in range(repeat + 1):
        for name, (cmd, cwd) in variants.items():
            w, c = run_once(cmd, cwd)
            if round_no:
                wall[name].append(w)
                cpu[name].append(c)
    return ({n: min(v) for n, v in wall.items()}, {n: min(v) for n, v in cpu.items()})


def main() -> None:
    """Run the benchmark and print the figures."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scripts", type=int, default=100)
    ap.add_argument("--repeat", type=int, default=3)
    opts = ap.parse_args()
    py = sys.executable
    with tempfile.TemporaryDirectory(prefix="bench_run_") as tmp:
        root = Path(tmp) / "tree"
        bare_root = Path(tmp) / "tree_bare_runner"
        scripts = make_tree(root, opts.scripts)
        make_tree(bare_root, opts.scripts)
        (bare_root / "conftest.py").write_text(BARE_RUNNER_CONFTEST)
        loop = "for f in " + " ".join(shlex.quote(str(s)) for s in scripts)
        loop += f'; do {shlex.quote(py)} "$f" >/dev/null || exit 1; done'
        base = [py, "-m", "pytest", "-p", "training_plugin", "-q"]
        t, cpu = best_times(
            {
                "loop": (["bash", "-c", loop], root),
                "plugin": (base, root),
                "collect": (base + ["--collect-only"], root),
                "bare": (base, bare_root),
            },
            opts.repeat,
        )
    n = opts.scripts
    ratio = t["plugin"] / t["loop"]
    print(f"bench_run_overhead: {n} trivial scripts, best of {opts.repeat} interleaved rounds "
          f"(warm), {os.cpu_count()} cpus")
    print(f"  shell loop                         {t['loop']:7.3f} s")
    print(f"  pytest -p training_plugin          {t['plugin']:7.3f} s")
    print(f"  pytest ... --collect-only (fixed)  {t['collect']:7.3f} s")
    print(f"  ratio plugin / loop                {ratio:7.3f}x  (target <= {TARGET:.2f}x: "
          f"{'met' if ratio <= TARGET else 'MISSED'})")
    print(f"  ratio without fixed start-up       {(t['plugin'] - t['collect']) / t['loop']:7.3f}x")
    print(f"  per-job overhead                   "
          f"{(t['plugin'] - t['collect'] - t['loop']) / n * 1000:7.1f} ms")
    print(f"  CPU time (user+sys, all processes; steadier on a busy machine): loop "
          f"{cpu['loop']:.3f} s, plugin {cpu['plugin']:.3f} s, collect-only "
          f"{cpu['collect']:.3f} s")
    print(f"    ratio plugin / loop {cpu['plugin'] / cpu['loop']:.3f}x, without start-up "
          f"{(cpu['plugin'] - cpu['collect']) / cpu['loop']:.3f}x")
    print("  runner swapped for a bare subprocess.run (the plugin's own cost, no reaper):")
    print(f"    pytest -p training_plugin        {t['bare']:7.3f} s   ratio "
          f"{t['bare'] / t['loop']:.3f}x, without start-up "
          f"{(t['bare'] - t['collect']) / t['loop']:.3f}x, per job "
          f"{(t['bare'] - t['collect'] - t['loop']) / n * 1000:.1f} ms")


if __name__ == "__main__":
    main()
