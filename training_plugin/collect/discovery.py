"""Finding training scripts: roots, the file pattern, skip rules, job ids.

Pure functions over the file system; no pytest objects.  The walk is deterministic (sorted by
path relative to rootdir) so every xdist worker collects the same jobs in the same order.

A job id is the file stem without ``train_``.  Different scripts with one stem (a ``train.py``
per folder) get ids qualified by the shortest run of parent folders that tells them apart
(``classify/train``, ``segment/train``); identical copies are refused, naming both.

With an entry-point check (``find_scripts(entry_point=...)``; ini
``training_require_entry_point``, on by default), only scripts are jobs: a matching file
without an entry point (a library module, a package's ``__init__.py``) is listed as "not a
script" and never collected, so its identical copies stop nothing.  A file named as a root and
a file whose job id the job table names are always kept.
"""

from __future__ import annotations

import fnmatch
import hashlib
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

#: Directory names that are never searched (VCS, virtualenvs, build output, caches).
IGNORED_DIR_NAMES = frozenset(
    {
        ".git",
        ".hg",
        ".svn",
        ".venv",
        "venv",
        "build",
        "dist",
        "__pycache__",
        ".tox",
        ".nox",
        ".pytest_cache",
        ".mypy_cache",
        ".ruff_cache",
        "node_modules",
    }
)

MSG_DUPLICATE_ID = (
    "two jobs have the job id {id!r}: the discovered script {first} and a job declared in "
    "pyproject.toml with script = {second!r}; a job id must name one job.  Give the declared "
    "job another id (rename its [tool.training_plugin.jobs.{id}] table)"
)
MSG_IDENTICAL_COPY = (
    "identical copies have the job id {id!r}: {first} and {second}; a copy is never run "
    "twice.  Add the one that should not run to `training_skip` (pytest.ini), e.g.\n"
    "    training_skip =\n        {suggest}"
)
MSG_STRICT_ID = (
    "two training scripts have the job id {id!r}: {first} and {second}, and "
    "`training_unique_ids` is on.  Rename one, add one to `training_skip`, or set "
    "`training_unique_ids = false` to get ids qualified by folder ({qualified})"
)
MSG_MISSING_ROOT = (
    "training_paths entry {entry!r} does not exist under rootdir {rootdir}; "
    "fix or remove it in the `training_paths` ini setting"
)


@dataclass(frozen=True)
class Discovery:
    """What a search found: the scripts (jobs) and the matching files that are not scripts."""

    scripts: list[Script]
    not_scripts: tuple[str, ...] = ()  #: relpaths of matching files without an entry point


@dataclass(frozen=True)
class Script:
    """A discovered training script."""

    path: Path  #: absolute path
    relpath: str  #: posix path relative to rootdir
    id: str  #: job id (stem without ``train_``, qualified by folder when the stem is shared)
    qualified: bool = False  #: the id carries parent folders (another script has its stem)


def _id_of(path: str) -> str:
    """A script's id before folder qualification: its file stem without ``train_``
    (``train_als.py`` -> ``als``; ``train.py`` and ``train_.py`` keep their stem)."""
    stem = os.path.splitext(os.path.basename(path))[0]
    return stem[len("train_") :] if stem.startswith("train_") and len(stem) > 6 else stem


def is_ignored_dir(path: Path, name: str | None = None) -> bool:
    """True for directories that are never searched: VCS, virtualenvs, build, caches."""
    name = path.name if name is None else name
    if name in IGNORED_DIR_NAMES or name.endswith(".egg-info"):
        return True
    return os.path.exists(os.path.join(path, "pyvenv.cfg"))


def _inside(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


def relpath(path: Path | str, rootdir: Path | str) -> str:
    """``path`` relative to ``rootdir`` in posix spelling (absolute posix when outside it)."""
    text, root = os.fspath(path), os.fspath(rootdir).rstrip(os.sep)
    if text.startswith(root + os.sep):
        text = text[len(root) + 1 :]
    elif text == root:
        text = "."
    return text.replace(os.sep, "/")


def _norecurse_matcher(patterns: Iterable[str]) -> Callable[[str, str], bool]:
    """``(path, name) -> bool`` for pytest's ``norecursedirs`` patterns (a pattern without a
    path separator matches the folder name, one with a separator the whole path)."""
    names = [p for p in patterns if p and os.sep not in p and "/" not in p]
    paths = [p for p in patterns if p and (os.sep in p or "/" in p)]

    def match(path: str, name: str) -> bool:
        return any(fnmatch.fnmatchcase(name, p) for p in names) or any(
            fnmatch.fnmatch(path, "*" + os.sep + p.replace("/", os.sep)) for p in paths
        )

    return match


def _never(path: str, name: str) -> bool:
    return False


def _walk(
    directory: str,
    *,
    pattern: str,
    skip: frozenset[str],
    real_root: str,
    seen: set[str],
    norecurse: Callable[[str, str], bool] = _never,
    real_dir: str | None = None,
) -> Iterator[str]:
    """Yield matching files under ``directory`` (not sorted); ``real_dir`` is its realpath."""
    if real_dir is None:
        real_dir = os.path.realpath(directory)
    try:
        entries = list(os.scandir(directory))
    except OSError:
        return
    for entry in entries:
        path = entry.path
        if path in skip:
            continue
        try:
            is_link = entry.is_symlink()
            if is_link:
                real = os.path.realpath(path)
                if not _inside(real, real_root):
                    continue  # symlinks that leave the root are not followed
            is_dir = entry.is_dir()
        except OSError:
            continue
        if is_dir:
            if is_ignored_dir(Path(path), entry.name) or norecurse(path, entry.name):
                continue
            if not is_link:
                real = os.path.join(real_dir, entry.name)
            if real in seen:
                continue  # a symlink loop, or a second way into the same folder
            seen.add(real)
            yield from _walk(path, pattern=pattern, skip=skip, real_root=real_root, seen=seen,
                             norecurse=norecurse, real_dir=real)
        elif fnmatch.fnmatchcase(entry.name, pattern):
            yield path


def find_scripts(
    roots: Iterable[Path],
    *,
    rootdir: Path,
    pattern: str = "train_*.py",
    skip: Iterable[str] = (),
    check_roots: bool = True,
    norecursedirs: Iterable[str] = (),
    unique_ids: bool = False,
    entry_point: Callable[[Path], object] | None = None,
    keep_ids: Iterable[str] = (),
) -> Discovery:
    """Find training scripts under ``roots`` (files or directories).

    ``skip`` holds paths relative to ``rootdir`` that are never searched; folders matching a
    ``norecursedirs`` pattern (pytest's ini key, e.g. ``.*``, ``build``) are not entered.
    With ``entry_point`` (path -> truthy for a script), a matching file without an entry
    point is not a script, unless it is a root itself or its job id is in ``keep_ids`` (the
    job table names it).  Scripts sharing a stem get ids qualified by folder (see
    ``qualify_ids``).  Raises ``pytest.UsageError`` for identical copies of scripts (naming
    both and the fix), for any shared stem with ``unique_ids``, and, with ``check_roots``,
    when a root does not exist.
    """
    rootdir = Path(os.path.abspath(rootdir))
    real_root = os.path.realpath(rootdir)
    skip_set = frozenset(os.path.normpath(os.path.join(rootdir, s)) for s in skip if s.strip())
    norecurse = _norecurse_matcher(norecursedirs) if norecursedirs else _never
    found: set[str] = set()
    named: set[str] = set()
    for root in roots:
        root_s = os.path.normpath(os.path.join(rootdir, root))
        if root_s in skip_set:
            continue
        if os.path.isfile(root_s):
            if fnmatch.fnmatchcase(os.path.basename(root_s), pattern):
                found.add(root_s)
                named.add(root_s)
            continue
        if not os.path.isdir(root_s):
            if check_roots:
                raise pytest.UsageError(MSG_MISSING_ROOT.format(entry=str(root), rootdir=rootdir))
            continue
        real_dir = os.path.realpath(root_s)
        seen = {real_dir}
        found.update(_walk(root_s, pattern=pattern, skip=skip_set, real_root=real_root, seen=seen,
                           norecurse=norecurse, real_dir=real_dir))
    scripts = [Script(path=Path(p), relpath=relpath(p, rootdir), id=_id_of(p)) for p in found]
    scripts.sort(key=lambda s: s.relpath)
    not_scripts: tuple[str, ...] = ()
    if entry_point is not None:
        keep = set(keep_ids)
        kept = [s for s in scripts
                if str(s.path) in named or s.id in keep or entry_point(s.path)]
        if len(kept) != len(scripts):
            ours = {s.relpath for s in kept}
            not_scripts = tuple(s.relpath for s in scripts if s.relpath not in ours)
        scripts = kept
    return Discovery(qualify_ids(scripts, unique_ids=unique_ids), not_scripts)


def _sha256(path: Path) -> str | None:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None


def _suggest(script: Script) -> str:
    return str(Path(script.relpath).parent.as_posix())


def qualify_ids(scripts: list[Script], *, unique_ids: bool = False) -> list[Script]:
    """``scripts`` (sorted by relpath) with distinct ids.

    Scripts that share an id get ``<parent folders>/<id>``, with the fewest trailing parent
    folders that make every id of the group distinct (``classify/train``, ``segment/train``;
    ``a/x/train``, ``b/x/train``).  Raises ``pytest.UsageError`` when two of them have
    identical contents (a copy is never run twice), and for any shared id with ``unique_ids``.
    """
    groups: dict[str, list[Script]] = {}
    for script in scripts:
        groups.setdefault(script.id, []).append(script)
    renamed: dict[str, str] = {}
    for job, group in groups.items():
        if len(group) == 1:
            continue
        seen: dict[str | None, Script] = {}
        for script in group:
            digest = _sha256(script.path)
            other = seen.get(digest) if digest is not None else None
            if other is not None:
                raise pytest.UsageError(MSG_IDENTICAL_COPY.format(
                    id=job, first=other.relpath, second=script.relpath, suggest=_suggest(script)))
            seen[digest] = script
        parents = [Path(s.relpath).parent.parts for s in group]
        depth = max(len(p) for p in parents)
        for k in range(1, depth + 1):
            ids = ["/".join((*p[-k:], job)) if p else job for p in parents]
            if len(set(ids)) == len(ids):
                break
        if unique_ids:
            raise pytest.UsageError(MSG_STRICT_ID.format(
                id=job, first=group[0].relpath, second=group[1].relpath,
                qualified=", ".join(ids)))
        for script, new in zip(group, ids):
            renamed[script.relpath] = new
    if not renamed:
        return scripts
    result: list[Script] = []
    for script in scripts:
        new = renamed.get(script.relpath, script.id)
        result.append(Script(script.path, script.relpath, new, qualified=new != script.id))
    return result


def check_unique(scripts: Iterable[Script]) -> None:
    """Raise ``pytest.UsageError`` when two jobs (a discovered script, then a job declared in
    the job table) have the same job id."""
    by_id: dict[str, Script] = {}
    for script in scripts:
        other = by_id.get(script.id)
        if other is not None and other.path != script.path:
            raise pytest.UsageError(
                MSG_DUPLICATE_ID.format(
                    id=script.id,
                    first=other.relpath,
                    second=script.relpath,
                )
            )
        by_id[script.id] = script
