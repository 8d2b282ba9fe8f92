"""training_plugin.imports: which repository file an import means, for the flag analysis and
the fingerprint alike, checked against what a real interpreter imports."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from training_plugin.flags import RESOLVED, Analyzer
from training_plugin.imports import ImportResolver, ImportWalker


def write(root: Path, rel: str, source: str = "") -> Path:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(source))
    return path


def helper(flag: str) -> str:
    return f"""
        def add_args(parser):
            parser.add_argument("{flag}", type=int, default=1)
    """


SCRIPT = """
    import argparse
    import helpers

    parser = argparse.ArgumentParser()
    helpers.add_args(parser)
    parser.add_argument("--epochs", type=int, default=1)

    if __name__ == "__main__":
        print(helpers.__file__)
        print(parser.parse_args())
"""


def python_imports(root: Path, script: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``python <script> args`` as a job runs (cwd = rootdir), with ``src/`` on the path after
    the script's folder, as a src-layout install puts it."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PYTHONPATH"] = os.pathsep.join([str(root / "src"), str(root)])
    return subprocess.run([sys.executable, str(script), *args], cwd=root, env=env,
                          capture_output=True, text=True, timeout=60, check=True)


def test_flags_and_fingerprint_read_the_helpers_python_imports(tmp_path: Path) -> None:
    """A helpers.py in the rootdir and in src/: the flags come from the file the fingerprint
    hashes, and that is the file Python imports (src/, which comes before the rootdir)."""
    write(tmp_path, "helpers.py", helper("--root-flag"))
    src_helpers = write(tmp_path, "src/helpers.py", helper("--src-flag"))
    script = write(tmp_path, "scripts/train_x.py", SCRIPT)

    info = Analyzer(tmp_path).analyze(script)
    files, external = ImportWalker(tmp_path).walk(script)
    ran = Path(python_imports(tmp_path, script).stdout.splitlines()[0])

    assert ran == src_helpers
    assert info.status == RESOLVED
    assert {o for f in info.flags for o in f.options} == {"--src-flag", "--epochs"}
    assert set(info.deps) == {str(src_helpers)}
    assert files == {script, src_helpers}
    assert {Path(p) for p in info.deps} <= files
    assert external == set()


def test_a_helper_beside_the_script_comes_first(tmp_path: Path) -> None:
    write(tmp_path, "helpers.py", helper("--root-flag"))
    write(tmp_path, "src/helpers.py", helper("--src-flag"))
    beside = write(tmp_path, "scripts/helpers.py", helper("--beside-flag"))
    script = write(tmp_path, "scripts/train_x.py", SCRIPT)

    info = Analyzer(tmp_path).analyze(script)
    files, _ = ImportWalker(tmp_path).walk(script)

    assert Path(python_imports(tmp_path, script).stdout.splitlines()[0]) == beside
    assert info.find("--beside-flag") is not None and info.find("--src-flag") is None
    assert set(info.deps) == {str(beside)}
    assert files == {script, beside}


PROBE = """
    import importlib, sys
    for name in sys.argv[1:]:
        try:
            module = importlib.import_module(name)
        except ImportError:
            print(name, "-")
        else:
            print(name, getattr(module, "__file__", None) or "-")
"""


def test_the_resolver_agrees_with_the_interpreter(tmp_path: Path) -> None:
    """Packages before modules before namespace folders, namespace packages spanning src/ and
    the rootdir, a regular package hiding a later one, a module beside the script shadowing
    the standard library: the resolver names the file the interpreter imports."""
    layout = [
        "src/helpers.py", "helpers.py",                # src/ before the rootdir
        "rootonly.py",                                 # the rootdir last
        "src/both/__init__.py", "src/both.py",         # a package before a module
        "src/nsmod/data.txt", "nsmod.py",              # a later module before a namespace
        "src/ns/a.py", "ns/b.py",                      # one namespace over two places
        "src/pkg/__init__.py", "pkg/__init__.py", "pkg/extra.py",  # src/pkg hides pkg
        "src/deep/__init__.py", "src/deep/inner/__init__.py", "src/deep/inner/mod.py",
        "scripts/colorsys.py",                         # beside the script: before the stdlib
    ]
    for rel in layout:
        write(tmp_path, rel)
    probe = write(tmp_path, "scripts/probe.py", PROBE)
    names = ["helpers", "rootonly", "both", "nsmod", "ns", "ns.a", "ns.b", "pkg", "pkg.extra",
             "deep.inner.mod", "colorsys", "missing"]

    out = python_imports(tmp_path, probe, *names).stdout.split()
    python = {name: None if file == "-" else Path(file) for name, file in zip(out[::2], out[1::2])}
    resolver = ImportResolver(tmp_path)
    ours = {}
    for name in names:
        found = resolver.resolve(name, script=probe)
        ours[name] = found.file if found is not None else None

    assert ours == python
    assert python["helpers"] == tmp_path / "src/helpers.py"  # not the rootdir's, by design


def test_an_import_runs_every_package_init_on_its_way(tmp_path: Path) -> None:
    for rel in ("src/a/__init__.py", "src/a/b/__init__.py", "src/a/b/c.py", "src/a/b/d.py"):
        write(tmp_path, rel)
    script = write(tmp_path, "train_x.py", "import a.b.c\nfrom a.b import d\n")
    found = ImportResolver(tmp_path).resolve("a.b.c", script=script)

    assert found is not None
    assert found.runs == (tmp_path / "src/a/__init__.py", tmp_path / "src/a/b/__init__.py",
                          tmp_path / "src/a/b/c.py")
    files, _ = ImportWalker(tmp_path).walk(script)
    assert files == {script, *found.runs, tmp_path / "src/a/b/d.py"}


def test_relative_imports_are_looked_up_beside_the_importing_file(tmp_path: Path) -> None:
    write(tmp_path, "src/pkg/__init__.py")
    write(tmp_path, "src/pkg/common.py")
    write(tmp_path, "src/pkg/sub/__init__.py")
    mod = write(tmp_path, "src/pkg/sub/mod.py", "from .. import common\nfrom . import near\n")
    write(tmp_path, "src/pkg/sub/near.py")
    script = write(tmp_path, "train_x.py", "from pkg.sub import mod\n")
    resolver = ImportResolver(tmp_path)

    up = resolver.resolve("", level=2, from_file=mod, script=script)
    assert up is not None and up.file == tmp_path / "src/pkg/__init__.py"
    assert resolver.submodule(up.folders, "common").file == tmp_path / "src/pkg/common.py"
    files, _ = ImportWalker(tmp_path).walk(script)
    assert {tmp_path / "src/pkg/common.py", tmp_path / "src/pkg/sub/near.py", mod} <= files


def test_only_repository_files_count(tmp_path: Path) -> None:
    root = tmp_path / "repo"
    outside = write(tmp_path, "elsewhere/shared.py", helper("--outside-flag"))
    (root / "src").mkdir(parents=True)
    (root / "src/shared.py").symlink_to(outside)
    write(root, "calendar.py")                    # a standard-library name, not beside
    write(root, "scripts/sys.py")                 # a builtin module: never a file
    hidden = write(root, ".cache/train_h.py", "import near\n")
    write(root, ".cache/near.py")
    script = write(root, "scripts/train_x.py", """
        import argparse, calendar, sys
        import numpy.linalg
        import shared

        parser = argparse.ArgumentParser()
        shared.add_args(parser)
    """)

    files, external = ImportWalker(root).walk(script)
    info = Analyzer(root).analyze(script)
    resolver = ImportResolver(root)

    assert files == {script}
    assert external == {"numpy"}
    assert info.status != RESOLVED and not info.deps  # the helper is outside: not followed
    assert resolver.resolve("calendar", script=script) is None
    assert resolver.resolve("sys", script=script) is None
    found = resolver.resolve("near", script=hidden)
    assert found is not None and found.file is None and not found.runs


def test_the_old_flag_order_disagrees_with_the_fingerprint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With the rootdir searched before src/ (the order the flag analysis once had), the flags
    would come from the rootdir's helpers.py while the fingerprint hashes src/'s: the check of
    test_flags_and_fingerprint_read_the_helpers_python_imports catches exactly that."""
    write(tmp_path, "helpers.py", helper("--root-flag"))
    write(tmp_path, "src/helpers.py", helper("--src-flag"))
    script = write(tmp_path, "scripts/train_x.py", SCRIPT)
    analyzer = Analyzer(tmp_path)
    resolver = analyzer.follower.resolver
    monkeypatch.setattr(resolver, "search_path", lambda s: (
        resolver.script_folder(s), resolver.rootdir, resolver.rootdir / "src"))

    info = analyzer.analyze(script)
    files, _ = ImportWalker(tmp_path).walk(script)

    assert info.find("--root-flag") is not None
    assert not {Path(p) for p in info.deps} <= files


def test_an_edited_import_is_read_again(tmp_path: Path) -> None:
    write(tmp_path, "src/first.py")
    write(tmp_path, "src/second_one.py")
    script = write(tmp_path, "train_x.py", "import first\n")
    walker = ImportWalker(tmp_path)
    assert walker.walk(script)[0] == {script, tmp_path / "src/first.py"}
    script.write_text("import second_one\n")
    assert walker.walk(script)[0] == {script, tmp_path / "src/second_one.py"}
