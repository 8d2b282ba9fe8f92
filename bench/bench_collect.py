"""Benchmark: listing 1,000 training scripts vs pytest walking the same tree.

    .venv/bin/python bench/bench_collect.py [--scripts 1000] [--repeat 5]

Generates N argparse scripts (each with its own flags plus a shared ``add_common_args`` helper
imported from a package in the tree, so the flag analysis follows an import) in 20 folders and
times, best of ``--repeat`` interleaved rounds after a warm-up round (the flag cache primed):

- ``pytest -p training_plugin --collect-only -q`` (discovery, flag analysis from the cache,
  job specs, one item per script);
- ``pytest --collect-only -q`` over the same tree without the plugin (pytest walks the folders
  and finds nothing to collect: exit 5);
- the plugin cold (``-p no:cacheprovider``: every script analyzed again), for reference.

Target: plugin / plain walk <= 1.5x (warm: flag cache primed, bytecode cache allowed even
when the calling shell sets PYTHONDONTWRITEBYTECODE).  Prints figures, never asserts.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

from _bench import best_times, reference_plugin, timed_run

TARGET = 1.5
FOLDERS = 20
COMMON = '''\
"""Shared training arguments (what the generated scripts import)."""


def add_common_args(parser, *, epochs=10):
    parser.add_argument("-e", "--epochs", type=int, default=epochs)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--output-dir")
    parser.add_argument("--n-jobs", type=int, default=1)
'''
SCRIPT = '''\
"""Generated training script {i}: --epochs in this docstring is not a flag."""
import argparse

from benchpkg.common import add_common_args


def train(args):
    return {{"roc_auc": 0.5 + args.seed % 7 / 100}}


def main():
    parser = argparse.ArgumentParser(description="model {i}")
    add_common_args(parser, epochs={i} % 50 + 1)
    group = parser.add_argument_group("model")
    group.add_argument("--hidden-{i}", type=int, default=64)
    group.add_argument("--dropout", type=float, default=0.1)
    parser.add_argument("--data", default="data/{i}.csv")
    print(train(parser.parse_args()))


if __name__ == "__main__":
    main()
'''


def make_tree(root: Path, count: int) -> None:
    """``count`` scripts in ``FOLDERS`` folders, the shared package, a pytest.ini."""
    (root / "pytest.ini").write_text("[pytest]\n")
    pkg = root / "src" / "benchpkg"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "common.py").write_text(COMMON)
    for i in range(count):
        folder = root / "models" / f"group{i % FOLDERS:02d}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"train_model{i:04d}.py").write_text(SCRIPT.format(i=i))


def main() -> None:
    """Run the benchmark and print the figures."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scripts", type=int, default=1000)
    ap.add_argument("--repeat", type=int, default=5)
    opts = ap.parse_args()
    py = sys.executable
    with tempfile.TemporaryDirectory(prefix="bench_collect_") as tmp_root:
        tmp = str(Path(tmp_root) / "tree")
        Path(tmp).mkdir()
        root = Path(tmp)
        make_tree(root, opts.scripts)
        # the usual shape of a collecting plugin: a File + a trivial Item per script as pytest
        # walks (training_plugin skips the walk and File nodes: discovery knows the scripts)
        floor_env = reference_plugin(Path(tmp + "_floor"), "bench_floor_plugin", "pass")
        plugin = [py, "-m", "pytest", "-p", "training_plugin", "--collect-only", "-q"]
        _, _, listing = timed_run(plugin, root)
        jobs = sum(1 for line in listing.splitlines() if "::" in line)
        best, best_cpu = best_times(
            {
                "plugin": (plugin, root, 0, None),
                "walk": ([py, "-m", "pytest", "--collect-only", "-q"], root, 5, None),
                "cold": (plugin + ["-p", "no:cacheprovider"], root, 0, None),
                "floor": ([py, "-m", "pytest", "-p", "bench_floor_plugin", "--collect-only",
                           "-q"], root, 0, floor_env),
            },
            opts.repeat,
        )
    ratio = best["plugin"] / best["walk"]
    print(f"bench_collect: {opts.scripts} argparse scripts ({jobs} jobs listed), best of "
          f"{opts.repeat} interleaved rounds, {os.cpu_count()} cpus")
    print(f"  pytest --collect-only -q (no plugin, nothing to collect)  {best['walk']:7.3f} s")
    print(f"  pytest -p training_plugin --collect-only -q (warm cache)  {best['plugin']:7.3f} s")
    print(f"  same, cold (-p no:cacheprovider: every script analyzed)   {best['cold']:7.3f} s")
    print(f"  reference: 15-line plugin, one File + bare Item per script {best['floor']:7.3f} s"
          f"  ({best['floor'] / best['walk']:.3f}x the walk)")
    print(f"  ratio warm plugin / plain walk   {ratio:.3f}x  (target <= {TARGET}x: "
          f"{'met' if ratio <= TARGET else 'MISSED'})")
    print(f"  CPU time (user+sys; steadier on a busy machine): walk {best_cpu['walk']:.3f} s, "
          f"reference {best_cpu['floor']:.3f} s, plugin {best_cpu['plugin']:.3f} s; ratios "
          f"plugin/walk {best_cpu['plugin'] / best_cpu['walk']:.3f}x, reference/walk "
          f"{best_cpu['floor'] / best_cpu['walk']:.3f}x")


if __name__ == "__main__":
    main()
