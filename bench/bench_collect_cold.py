"""Benchmark: the first listing of a big repository, cold and warm, against parsing the tree.

    .venv/bin/python bench/bench_collect_cold.py [--scripts 300] [--modules 200] [--repeat 3]
                                                 [--timm] [--repo PATH] [--workers]

Generates a tree of ``--scripts`` argparse scripts in 10 folders, each importing helpers from a
shared package of ``--modules`` modules of about 400 lines (a helper adds its flags and calls
the next module's helper, in chains of four), with ``training_glob = *.py``: every file is a
candidate and the package's modules are not scripts (no entry point).  Times, best of
``--repeat`` interleaved rounds after a warm-up round:

- the floor: one Python process that reads and ``ast.parse``s every ``.py`` under the root once;
- ``pytest -p training_plugin --collect-only -q -p no:cacheprovider`` (cold: no flag cache);
- the same with the flag cache primed (warm);
- an empty pytest run (``pytest --collect-only -q`` in an empty folder): pytest's start-up;
- ``pytest --collect-only -q --ignore-glob=* .`` in the tree: pytest's start-up there, its
  initial conftests included.

Targets: cold <= 1.5x the floor; warm no slower than the floor (warm minus the empty run is
printed too).  ``--timm`` also downloads the sdist of pytorch-image-models (``pip download
--no-deps --no-binary :all: timm``) into the bench's temp folder and lists it cold and warm with
``training_glob = *.py``, counting scripts and not-scripts; ``--repo PATH`` does the same with
a copy of a checkout (the sdist lacks the repository's own scripts).  ``--workers`` times the flag
analysis of the synthetic scripts in one process against two worker processes
(``concurrent.futures``).  Prints figures, never asserts.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tarfile
import tempfile
import textwrap
import time
from pathlib import Path

from _bench import bench_env, best_times, timed_run

TARGET_COLD = 1.5
FOLDERS = 10
CHAIN = 4
FLOOR = '''\
import ast, os, sys
for root in sys.argv[1:]:
    for folder, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if not d.startswith(".") and d != "__pycache__"]
        for name in files:
            if name.endswith(".py"):
                path = os.path.join(folder, name)
                with open(path, "rb") as fh:
                    try:
                        ast.parse(fh.read(), filename=path)
                    except (SyntaxError, ValueError):
                        pass
'''
FILLER = '''
def compute_{n}_{k}(values, scale=1.0):
    """Filler {k} of module {n}: a small computation."""
    total = 0.0
    for index, value in enumerate(values):
        if index % 2:
            total += value * scale
        else:
            total -= value / (scale + 1)
    return total

'''
CLASS = '''
class Block{n}_{k}:
    """A filler class."""

    def __init__(self, width={k}):
        self.width = width

    def forward(self, x):
        return [v * self.width for v in x]

'''


def helper_module(n: int, modules: int) -> str:
    """Shared module ``n``: a flag helper calling the next module's, then ~380 lines of filler."""
    nxt = n + 1 if n % CHAIN != CHAIN - 1 and n + 1 < modules else None
    lines = [f'"""Shared helper module {n}."""', "import math", ""]
    if nxt is not None:
        lines.append(f"from shared import mod{nxt:03d}")
    lines += ["", "", f"def add_args_{n}(parser, *, default={n}):",
              f'    parser.add_argument("--opt-{n}", type=int, default=default)',
              f'    parser.add_argument("--flag-{n}", action="store_true")']
    if nxt is not None:
        lines.append(f"    mod{nxt:03d}.add_args_{nxt}(parser)")
    lines.append("    return parser\n")
    body = "\n".join(lines)
    k = 0
    while body.count("\n") < 390:
        body += (CLASS if k % 4 == 3 else FILLER).format(n=n, k=k)
        k += 1
    return body


def script(i: int, modules: int) -> str:
    """Script ``i``: argparse, three shared helpers (each the head of a chain), a __main__."""
    heads = sorted({(i * 7) % modules, (i * 13 + 1) % modules, (i * 29 + 2) % modules})
    imports = "\n".join(f"from shared.mod{h:03d} import add_args_{h}" for h in heads)
    calls = "\n".join(f"    add_args_{h}(parser)" for h in heads)
    return textwrap.dedent('''\
        """Generated training script {i}."""
        import argparse

        {imports}


        def train(args):
            return {{"roc_auc": 0.5 + args.seed % 7 / 100}}


        def main():
            parser = argparse.ArgumentParser(description="model {i}")
            parser.add_argument("--epochs", type=int, default=10)
            parser.add_argument("--seed", type=int, default=42)
            parser.add_argument("--output-dir")
        {calls}
            print(train(parser.parse_args()))


        if __name__ == "__main__":
            main()
        ''').format(i=i, imports=imports, calls=calls)


def make_tree(root: Path, scripts: int, modules: int) -> None:
    """The synthetic tree: scripts, the shared package (src layout), a pytest.ini."""
    (root / "pytest.ini").write_text("[pytest]\ntraining_glob = *.py\n")
    pkg = root / "src" / "shared"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text('"""The shared package."""\n')
    for n in range(modules):
        (pkg / f"mod{n:03d}.py").write_text(helper_module(n, modules))
    for i in range(scripts):
        folder = root / "models" / f"group{i % FOLDERS:02d}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"train_model{i:04d}.py").write_text(script(i, modules))


def tree_lines(root: Path) -> tuple[int, int]:
    """(.py files, lines) under ``root``."""
    files = lines = 0
    for path in root.rglob("*.py"):
        files += 1
        lines += path.read_bytes().count(b"\n")
    return files, lines


def compare(name: str, root: Path, floor_py: Path, empty: Path, repeat: int) -> None:
    """Time floor, cold, warm and an empty pytest run in ``root``; print the figures."""
    py = sys.executable
    plugin = [py, "-m", "pytest", "-p", "training_plugin", "--collect-only", "-q"]
    # prime the flag cache; the full listing's lines; exit 5 when no file is a script
    first = subprocess.run(plugin[:-1], cwd=root, capture_output=True, text=True,
                           env=bench_env(), check=False)
    rc, listing = first.returncode, first.stdout
    jobs = sum(1 for line in timed_run(plugin, root, expect_rc=rc)[2].splitlines()
               if "::" in line)
    not_scripts = re.search(r"not scripts \(no entry point\): (\d+) files?", listing)
    budget = [line.strip() for line in listing.splitlines() if "budget" in line]
    best, cpu = best_times(
        {
            "floor": ([py, str(floor_py), str(root)], root, 0, None),
            "cold": (plugin + ["-p", "no:cacheprovider"], root, rc, None),
            "warm": (plugin, root, rc, None),
            "empty": ([py, "-m", "pytest", "--collect-only", "-q"], empty, 5, None),
            # pytest's start-up in this tree: it loads ./conftest.py and ./test*/conftest.py
            # before any plugin runs (the timm sdist's tests/conftest.py imports torch), then
            # ignores every file (exit 5)
            "startup": ([py, "-m", "pytest", "--collect-only", "-q", "--ignore-glob=*", "."],
                        root, 5, None),
        },
        repeat,
    )
    files, lines = tree_lines(root)
    count = not_scripts.group(1) if not_scripts else ("all" if rc == 5 else "no")
    print(f"{name}: {files} .py files, {lines} lines; {jobs} jobs listed, {count} not "
          f"scripts; best of {repeat} interleaved rounds, {os.cpu_count()} cpus")
    for line in budget[:3]:
        print(f"  listing says: {line}")
    print(f"  floor: read + ast.parse every .py once          {best['floor']:7.3f} s "
          f"(cpu {cpu['floor']:.3f} s)")
    print(f"  cold --collect-only (-p no:cacheprovider)        {best['cold']:7.3f} s "
          f"(cpu {cpu['cold']:.3f} s)  {best['cold'] / best['floor']:.2f}x the floor "
          f"(target <= {TARGET_COLD}x: {'met' if best['cold'] <= TARGET_COLD * best['floor'] else 'MISSED'})")
    print(f"  warm --collect-only (flag cache primed)          {best['warm']:7.3f} s "
          f"(cpu {cpu['warm']:.3f} s)  {best['warm'] / best['floor']:.2f}x the floor "
          f"(target <= 1x: {'met' if best['warm'] <= best['floor'] else 'MISSED'})")
    print(f"  empty pytest run (pytest's start-up)             {best['empty']:7.3f} s; "
          f"warm minus empty {best['warm'] - best['empty']:.3f} s, cold minus empty "
          f"{best['cold'] - best['empty']:.3f} s")
    start = best["startup"]
    print(f"  pytest's start-up in this tree (its conftests)   {start:7.3f} s; warm minus it "
          f"{best['warm'] - start:.3f} s, cold minus it {best['cold'] - start:.3f} s "
          f"({(best['cold'] - start) / best['floor']:.2f}x the floor)")


WORKERS = '''\
import gc, os, sys, time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from training_plugin.flags import Analyzer, FlagCache

def chunk(args):
    # what a cold session does per file: the entry-point check, then a script's analysis
    gc.disable()
    root, paths = args
    cache = FlagCache(Analyzer(Path(root)))
    statuses = [cache.get(Path(p)).status for p in paths if cache.entry_point(Path(p))]
    cache.settle()  # the files without __main__, decided after the analysis
    return statuses

if __name__ == "__main__":
    root, procs = sys.argv[1], int(sys.argv[2])
    paths = sorted(os.path.join(d, n) for d, _, names in os.walk(root) for n in names
                   if n.endswith(".py"))
    start = time.perf_counter()
    if procs == 1:
        chunk((root, paths))
    else:
        with ProcessPoolExecutor(procs) as pool:
            list(pool.map(chunk, [(root, paths[i::procs]) for i in range(procs)]))
    print(time.perf_counter() - start)
'''


def workers(root: Path, tmp: Path, repeat: int) -> None:
    """A cold session's work (entry-point check of every file, analysis of the scripts):
    one process against two worker processes, each with half the files."""
    prog = tmp / "bench_workers.py"
    prog.write_text(WORKERS)
    times: dict[int, list[float]] = {1: [], 2: []}
    for _ in range(repeat):
        for procs in (1, 2):
            out = subprocess.run([sys.executable, str(prog), str(root), str(procs)],
                                 check=True, capture_output=True, text=True, env=bench_env())
            times[procs].append(float(out.stdout.strip()))
    one, two = min(times[1]), min(times[2])
    print(f"  worker processes (entry points + flag analysis, timed in-process): 1 process "
          f"{one:.3f} s, 2 workers {two:.3f} s ({one / two:.2f}x speed-up)")


def fetch_timm(tmp: Path) -> Path | None:
    """The timm sdist, unpacked under ``tmp`` (None, saying why, when pip cannot get it)."""
    dest = tmp / "dl"
    proc = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary",
                           ":all:", "timm", "-d", str(dest), "-q"],
                          capture_output=True, text=True, env=bench_env(), check=False)
    archives = sorted(dest.glob("timm-*.tar.gz")) if dest.exists() else []
    if proc.returncode or not archives:
        print(f"timm: pip download failed (exit {proc.returncode}): {proc.stderr.strip()[-300:]}")
        return None
    with tarfile.open(archives[0]) as tar:
        tar.extractall(tmp / "timm", filter="data")
    root = next((tmp / "timm").iterdir())
    (root / "pytest.ini").write_text("[pytest]\ntraining_glob = *.py\n")
    print(f"timm: {archives[0].name} (sdist: the package and its tests, not the repository's "
          "top-level scripts)")
    return root


def copy_repo(source: Path, tmp: Path) -> Path:
    """A copy of the checkout ``source`` (its .py files) with ``training_glob = *.py``."""
    root = tmp / "repo"
    for path in source.rglob("*.py"):
        rel = path.relative_to(source)
        if any(part.startswith(".") for part in rel.parts):
            continue
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(path.read_bytes())
    (root / "pytest.ini").write_text("[pytest]\ntraining_glob = *.py\n")
    return root


def main() -> None:
    """Run the benchmark and print the figures."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scripts", type=int, default=300)
    ap.add_argument("--modules", type=int, default=200)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--timm", action="store_true", help="also list the timm sdist")
    ap.add_argument("--workers", action="store_true", help="also time 2 worker processes")
    ap.add_argument("--repo", type=Path, help="also list a copy of this checkout (e.g. of "
                    "pytorch-image-models) with training_glob = *.py")
    opts = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench_collect_cold_") as tmp_root:
        tmp = Path(tmp_root)
        floor_py = tmp / "floor.py"
        floor_py.write_text(FLOOR)
        empty = tmp / "empty"
        empty.mkdir()
        (empty / "pytest.ini").write_text("[pytest]\n")
        root = tmp / "tree"
        root.mkdir()
        start = time.perf_counter()
        make_tree(root, opts.scripts, opts.modules)
        print(f"(tree generated in {time.perf_counter() - start:.1f} s)")
        compare(f"synthetic: {opts.scripts} scripts, {opts.modules} shared modules", root,
                floor_py, empty, opts.repeat)
        if opts.workers:
            workers(root, tmp, opts.repeat)
        if opts.timm:
            timm = fetch_timm(tmp)
            if timm is not None:
                compare("timm (pytorch-image-models sdist), training_glob = *.py", timm,
                        floor_py, empty, opts.repeat)
        if opts.repo:
            repo = copy_repo(opts.repo, tmp)
            compare(f"{opts.repo.name} (a checkout), training_glob = *.py", repo, floor_py,
                    empty, opts.repeat)
            if opts.workers:
                workers(repo, tmp, opts.repeat)


if __name__ == "__main__":
    main()
