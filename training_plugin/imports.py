"""Which repository file an import means: the one resolver behind the flag analysis
(``flags.follow``) and the up-to-date fingerprint (``ImportWalker``).

A training script runs as ``python path/to/script.py`` with the rootdir as its working
directory and the project installed editable.  Python then looks for a top-level module in
this order, and so does ``ImportResolver``:

1. the script's own folder: ``sys.path[0]`` (for a symlinked script, the folder of the file it
   links to).  It comes before everything else, the standard library included; only builtin
   modules (``sys``, ``builtins`` ...) never come from a file;
2. the standard library: a name it has is not looked up any further;
3. ``<rootdir>/src``: a src-layout project is installed with ``src/`` on ``sys.path`` (a
   ``.pth`` entry in site-packages, or ``PYTHONPATH=src``);
4. ``<rootdir>``: the top-level packages of a flat layout.  The working directory is not on
   ``sys.path`` when Python runs a script (it is for ``python -m`` and ``python -c``); these
   packages import because an editable install serves them through the finder it appends to
   ``sys.meta_path``, which Python asks after every ``sys.path`` entry, ``src/`` included.

Python asks the installed distributions (site-packages) between 2 and 3; the resolver reads
files only, never the environment, and takes a repository module to be the one imported.

Within one folder a regular package (``name/__init__.py``) comes before a module (``name.py``),
and both before a namespace package (a folder without ``__init__.py``).  A namespace package
spans that folder in every place of the search path, unless a later place has a regular
package or module of that name, which then wins (Python's path finder does the same).  A
submodule is looked up in its package's folders.  A relative import (``from .x import y``) is
looked up in the importing file's folder (``level - 1`` folders up).

Only repository files count: inside the rootdir once symlinks are resolved, and under no
dot-folder, ``site-packages`` or ``node_modules``.  An import Python would satisfy from another
file is neither followed by the flag analysis nor hashed by the fingerprint.
"""

from __future__ import annotations

import ast
import functools
import os
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import NamedTuple

#: Standard-library top-level names (never third-party distributions).
STDLIB = frozenset(sys.stdlib_module_names) | {"__future__"}
#: Modules compiled into the interpreter, and ``__future__`` (read by the compiler): no file
#: of any folder stands for them.
BUILTIN = frozenset(sys.builtin_module_names) | {"__future__"}
#: Folders whose files are never repository files (besides every dot-folder).
SKIPPED_FOLDERS = frozenset({"site-packages", "node_modules"})


class Found(NamedTuple):
    """Where an import leads inside the repository."""

    #: the module's own file (``x.py`` or ``x/__init__.py``); None for a namespace package, a
    #: submodule that is not there, or a file outside the repository
    file: Path | None
    #: the repository files that the import runs, outermost package first
    runs: tuple[Path, ...]
    #: where the module's submodules are (a package's ``__path__``); () for a plain module
    folders: tuple[Path, ...]


class ImportResolver:
    """Resolves imports to files inside ``rootdir``, in Python's order (module docstring).

    What it looks up is remembered for the resolver's lifetime (one session's flag analysis,
    one job's fingerprint).
    """

    def __init__(self, rootdir: Path) -> None:
        self.rootdir = Path(os.path.abspath(rootdir))
        self._real_root = os.path.realpath(self.rootdir)
        self._found: dict[tuple[tuple[Path, ...], str], Found | None] = {}
        self._ours: dict[tuple[Path, bool], bool] = {}
        self._folders: dict[Path, Path] = {}

    # -- places ----------------------------------------------------------------------------
    def script_folder(self, script: Path) -> Path:
        """``sys.path[0]`` of ``python script``: its folder, or its target's when a symlink."""
        folder = self._folders.get(script)
        if folder is None:
            folder = self._folders[script] = self._script_folder(script)
        return folder

    def _script_folder(self, script: Path) -> Path:
        script = Path(os.path.abspath(script))
        if not script.is_symlink():
            return script.parent
        real = Path(os.path.realpath(script)).parent
        rel = os.path.relpath(real, self._real_root)
        inside = rel != ".." and not rel.startswith(".." + os.sep)
        return self.rootdir / rel if inside else real

    def search_path(self, script: Path) -> tuple[Path, ...]:
        """Where a top-level module is looked for, in order: the script's folder,
        ``<rootdir>/src``, ``<rootdir>`` (the standard library sits after the first)."""
        return (self.script_folder(script), self.rootdir / "src", self.rootdir)

    def is_repository_path(self, path: Path, *, folder: bool = False) -> bool:
        """Whether ``path`` (a file, or a folder with ``folder=True``) is the repository's:
        inside the rootdir once symlinks are resolved, under no dot-folder or skipped folder."""
        key = (path, folder)
        if key not in self._ours:
            rel = os.path.relpath(os.path.realpath(path), self._real_root)
            if rel == ".." or rel.startswith(".." + os.sep):
                self._ours[key] = False
            else:
                parts = [] if rel == "." else rel.split(os.sep)
                folders = parts if folder else parts[:-1]
                self._ours[key] = not any(p.startswith(".") or p in SKIPPED_FOLDERS
                                          for p in folders)
        return self._ours[key]

    # -- resolution ------------------------------------------------------------------------
    def _find(self, folders: Iterable[Path], name: str) -> Found | None:
        """Module ``name`` in the first of ``folders`` that has it (namespace portions
        gathered from every folder), unfiltered; None when none has it."""
        key = (tuple(folders), name)
        if key not in self._found:
            self._found[key] = _find_in(key[0], name)
        return self._found[key]

    def _in_repository(self, found: Found) -> Found:
        """``found`` without what lies outside the repository."""
        file = found.file if found.file and self.is_repository_path(found.file) else None
        return Found(
            file,
            tuple(p for p in found.runs if self.is_repository_path(p)),
            tuple(p for p in found.folders if self.is_repository_path(p, folder=True)),
        )

    def shadows(self, folder: Path, name: str) -> bool:
        """Whether ``folder`` holds a module, package or namespace portion ``name``: what a
        script in that folder imports in place of a module of that name anywhere else."""
        return self._find((folder,), name) is not None

    def submodule(self, folders: Iterable[Path], name: str) -> Found | None:
        """Submodule ``name`` of the package whose ``__path__`` is ``folders``."""
        found = self._find(folders, name)
        return None if found is None else self._in_repository(found)

    def resolve(
        self, name: str, *, script: Path, level: int = 0, from_file: Path | None = None
    ) -> Found | None:
        """Where ``import name`` (``level`` dots relative to ``from_file``) leads when
        ``script`` runs; None when no repository module or file is what Python imports
        (the standard library, a third-party distribution, a missing module)."""
        parts = [p for p in name.split(".") if p]
        if level:
            if from_file is None:
                return None
            base = Path(os.path.abspath(from_file)).parent
            for _ in range(level - 1):
                base = base.parent
            init = base / "__init__.py"
            found: Found | None = Found(init if init.is_file() else None, (), (base,))
        else:
            if not parts or parts[0] in BUILTIN:
                return None
            places = self.search_path(script)
            if parts[0] in STDLIB:
                places = places[:1]  # only sys.path[0] comes before the standard library
            found = self._find(places, parts.pop(0))
        runs: list[Path] = []
        for part in parts:
            if found is None:
                break
            runs += found.runs
            found = self._find(found.folders, part) or Found(None, (), ())
        if found is None:
            return None
        found = Found(found.file, (*runs, *found.runs), found.folders)
        if found.file is None and not found.runs and not found.folders:
            return None  # not there at all (e.g. `ns.missing` of a namespace folder)
        return self._in_repository(found)


def _find_in(folders: tuple[Path, ...], name: str) -> Found | None:
    """``ImportResolver._find`` without the memo."""
    portions: list[Path] = []
    for folder in folders:
        package = folder / name
        init = package / "__init__.py"
        if init.is_file():
            return Found(init, (init,), (package,))
        module = folder / f"{name}.py"
        if module.is_file():
            return Found(module, (module,), ())
        if package.is_dir():
            portions.append(package)
    return Found(None, (), tuple(portions)) if portions else None


def imports_of(path: Path) -> tuple[tuple[str, int, tuple[str, ...]], ...]:
    """``(module, level, names)`` of every import statement in a file (anywhere in it); ()
    when it cannot be read or parsed.  Parsed once per version of the file (size, mtime)."""
    try:
        st = os.stat(path)
    except OSError:
        return ()
    return _imports_of_version(Path(path), st.st_size, st.st_mtime_ns)


@functools.lru_cache(maxsize=4096)
def _imports_of_version(
    path: Path, size: int, mtime_ns: int
) -> tuple[tuple[str, int, tuple[str, ...]], ...]:
    del size, mtime_ns  # the cache key: a new version of the file is parsed again
    try:
        tree = ast.parse(path.read_bytes(), filename=str(path))
    except (OSError, SyntaxError, ValueError, RecursionError):
        return ()
    found: list[tuple[str, int, tuple[str, ...]]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, 0, ()) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            found.append((node.module or "", node.level,
                          tuple(alias.name for alias in node.names if alias.name != "*")))
    return tuple(found)


class ImportWalker:
    """Follows a script's imports through the repository, transitively."""

    def __init__(self, rootdir: Path) -> None:
        self.resolver = ImportResolver(rootdir)

    def walk(self, script: Path) -> tuple[set[Path], set[str]]:
        """(repository files the script runs, itself included; third-party top-level module
        names it imports)."""
        script = Path(os.path.abspath(script))
        resolver = self.resolver
        seen: set[Path] = set()
        external: set[str] = set()
        todo = [script]
        while todo:
            path = todo.pop()
            if path in seen:
                continue
            seen.add(path)
            for module, level, names in imports_of(path):
                found = resolver.resolve(module, level=level, from_file=path, script=script)
                if found is None:
                    top = module.split(".")[0]
                    if not level and top and top not in STDLIB:
                        external.add(top)
                    continue
                todo += found.runs
                for name in names:  # `from package import submodule`
                    sub = resolver.submodule(found.folders, name)
                    if sub is not None:
                        todo += sub.runs
        return seen, external
