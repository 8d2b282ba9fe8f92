"""Benchmark: running N trivial training scripts through the plugin vs a plain shell loop.

    .venv/bin/python bench/bench_run_overhead.py [--scripts 100] [--repeat 3]

Generates N trivial scripts in a temporary tree and times (best of ``--repeat`` interleaved
rounds, after one warm-up round):

- a plain shell loop ``for f in ...; do python "$f"; done``;
- ``pytest -p training_plugin -q`` over the same tree (runs every script as a job);
- ``pytest -p training_plugin --collect-only -q`` (pytest's fixed start-up + collection);
- a minimal 15-line pytest plugin running each script with a bare ``subprocess.run`` (pytest's
  own share: the floor for any plugin), and ``pytest`` alone with nothing to collect.

Prints the times, the ratio plugin/loop (target <= 1.10x), the floor (minimal plugin / loop)
and the plugin's own cost over that floor.  Never asserts: figures are for humans and CI logs.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import tempfile
from pathlib import Path

from _bench import best_times, reference_plugin

TARGET = 1.10
SCRIPT = "import sys\nprint('trained', sys.argv[0])\n"
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


def main() -> None:
    """Run the benchmark and print the figures."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scripts", type=int, default=100)
    ap.add_argument("--repeat", type=int, default=3)
    opts = ap.parse_args()
    py = sys.executable
    with tempfile.TemporaryDirectory(prefix="bench_run_") as tmp:
        root = Path(tmp) / "tree"
        scripts = make_tree(root, opts.scripts)
        # The least any pytest plugin can do: one item per script whose run is a bare
        # subprocess.run (no output dir, no reaper, no metrics, no summary).  What it costs
        # over the loop is pytest's own share (start-up, per-item protocol).
        minimal_env = reference_plugin(
            Path(tmp) / "minimal", "bench_minimal_plugin",
            "subprocess.run([sys.executable, str(self.path)], stdout=subprocess.DEVNULL, "
            "check=True)",
        )
        empty = Path(tmp) / "empty"
        empty.mkdir()
        (empty / "pytest.ini").write_text("[pytest]\n")
        loop = "for f in " + " ".join(shlex.quote(str(s)) for s in scripts)
        loop += f'; do {shlex.quote(py)} "$f" >/dev/null || exit 1; done'
        base = [py, "-m", "pytest", "-p", "training_plugin", "-q"]
        minimal = [py, "-m", "pytest", "-p", "bench_minimal_plugin", "-q", "-p",
                   "no:cacheprovider", "jobs"]
        t, cpu = best_times(
            {
                "loop": (["bash", "-c", loop], root, 0, None),
                "plugin": (base, root, 0, None),
                "collect": (base + ["--collect-only"], root, 0, None),
                "minimal": (minimal, root, 0, minimal_env),
                "pytest": ([py, "-m", "pytest", "-q"], empty, 5, None),
            },
            opts.repeat,
        )
    n = opts.scripts
    ratio = t["plugin"] / t["loop"]
    floor = t["minimal"] / t["loop"]
    print(f"bench_run_overhead: {n} trivial scripts, best of {opts.repeat} interleaved rounds "
          f"(warm), {os.cpu_count()} cpus")
    print(f"  shell loop                                   {t['loop']:7.3f} s")
    print(f"  pytest -p training_plugin                    {t['plugin']:7.3f} s")
    print(f"  pytest -p training_plugin --collect-only     {t['collect']:7.3f} s")
    print(f"  minimal plugin (bare subprocess.run per item){t['minimal']:7.3f} s")
    print(f"  pytest alone, nothing to collect             {t['pytest']:7.3f} s"
          f"  ({t['pytest'] / t['loop'] * 100:.1f}% of the loop)")
    print(f"  ratio plugin / loop                          {ratio:7.3f}x  (target <= "
          f"{TARGET:.2f}x: {'met' if ratio <= TARGET else 'MISSED'})")
    print(f"  floor: minimal plugin / loop                 {floor:7.3f}x  (pytest's own share)")
    print(f"  plugin / minimal plugin                      {t['plugin'] / t['minimal']:7.3f}x"
          f"  ({(t['plugin'] - t['minimal']) / n * 1000:.1f} ms per job over the floor)")
    print(f"  CPU time (user+sys, all processes; steadier on a busy machine): loop "
          f"{cpu['loop']:.3f} s, plugin {cpu['plugin']:.3f} s, minimal {cpu['minimal']:.3f} s, "
          f"pytest alone {cpu['pytest']:.3f} s")
    print(f"    ratios plugin / loop {cpu['plugin'] / cpu['loop']:.3f}x, minimal / loop "
          f"{cpu['minimal'] / cpu['loop']:.3f}x")


if __name__ == "__main__":
    main()
