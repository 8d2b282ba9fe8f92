"""What travels to the nodes and what comes back.

- Out: the controller's rootdir is the jobs' runtime environment (``working_dir``), without
  ``EXCLUDES`` and what ``.gitignore`` ignores; :class:`PackageRoots` finds the rootdir's
  folders from which a job imports the project's own packages, so that each job imports them
  from Ray's copy on its node.
- Back: the job's output folder arrives as a tar (:func:`unpack`); a failed job's log that
  names a missing file which exists here gets a hint that it did not travel
  (:func:`explain_missing_files`).
- A session that runs as a Ray Job's entrypoint runs in Ray's temporary copy of the project
  (:func:`in_ray_job_copy`).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

from training_plugin import safefs

MSG_OUTPUT_IN_JOB_COPY = (
    "outputs go to {out}, inside Ray's temporary copy of the project (this is a Ray Job): "
    "pass --output-dir=PATH (a folder that outlives the job) to keep them"
)
#: Appended to a failed job's log for each file it missed on its node that exists here.
MSG_NOT_SHIPPED = (
    "[training_plugin] {path} exists on the controller but did not travel to the node: "
    "files that .gitignore (or .rayignore) ignores stay behind. Keep such data where every "
    "node sees it, or set RAY_RUNTIME_ENV_IGNORE_GITIGNORE=1 for pytest to ship them.\n")
#: Folders never shipped to the nodes (besides what .gitignore ignores).
EXCLUDES = [".git", ".venv", "venv", "__pycache__", ".pytest_cache", ".mypy_cache",
            ".ruff_cache", ".tox", ".nox", "node_modules", "*.egg-info"]
#: Set by Ray's job supervisor for the driver of a Ray Job (``ray job submit``): the job's
#: runtime environment, which ``ray.init`` merges with the session's.
RAY_JOB_VAR = "RAY_JOB_CONFIG_JSON_ENV_VAR"
_MISSING_FILE = re.compile(r"No such file or directory: '([^']+)'")


#: Run by the controller's Python in the rootdir, as a job would start (without the current
#: folder on the path): for each of the rootdir's top-level names (name -> the rootdir's
#: folders holding it), where it would import from; prints the rootdir's folders a job needs
#: on its path (relative, JSON).  A name that imports from inside the rootdir needs the folder
#: it imports from.  One that imports from neither the rootdir nor the Python environment
#: (which the nodes share), but from a file identical to the rootdir's own, is the same code
#: at a path that only this machine may have: the checkout, when pytest runs in a copy of it
#: (a Ray Job's working_dir) and an editable install or a PYTHONPATH entry points at the
#: original; the rootdir's folder holding that file stands in for it.
_ROOTS_PROBE = """
import importlib.util, json, os, site, sys
del sys.path[0]
root = os.path.realpath(sys.argv[1])
env = [os.path.realpath(p) for p in [sys.prefix, sys.base_prefix, sys.exec_prefix,
       *site.getsitepackages(), site.getusersitepackages()] if p]
def inside(place, folder):
    return place == folder or place.startswith(folder + os.sep)
def read(path):
    try:
        with open(path, "rb") as fh:
            return fh.read()
    except OSError:
        return None
def same_code(place, name, folder):
    if os.path.isdir(place):
        mine = os.path.join(root, folder, name, "__init__.py")
        place = os.path.join(place, "__init__.py")
    else:
        mine = os.path.join(root, folder, name + ".py")
    text = read(place)
    return text is not None and text == read(mine)
found = set()
for name, folders in json.loads(sys.argv[2]).items():
    try:
        spec = importlib.util.find_spec(name)
    except Exception:
        continue
    if spec is None:
        continue
    places = list(spec.submodule_search_locations or ()) or [spec.origin or ""]
    for place in places:
        place = os.path.realpath(place) if place else ""
        if inside(place, root):
            found.add(os.path.relpath(os.path.dirname(place), root))
        elif os.path.isabs(place) and not any(inside(place, e) for e in env):
            found.update(f for f in folders if same_code(place, name, f))
print(json.dumps(sorted(found)))
"""


class PackageRoots:
    """The rootdir's folders from which a job imports the project's own packages locally
    (``.`` and ``src`` here: an editable install maps ``aimedres`` to ``<rootdir>/src``), and
    those holding a package that imports from an identical file outside both the rootdir and
    the Python environment (in a Ray Job, pytest runs in Ray's copy of the checkout, and the
    editable install still points at the original).  On a node those paths are the
    controller's, and may not exist (no checkout) or hold other code; each job gets Ray's copy
    of these folders first on its ``PYTHONPATH`` instead.

    Asked of a fresh interpreter (started at once, read by ``get``), because pytest's own
    ``sys.path`` is not what a job sees."""

    def __init__(self, rootdir: Path) -> None:
        names: dict[str, list[str]] = {}
        bases = [rootdir] + sorted(
            d for d in _listdir(rootdir) if d.is_dir() and not d.name.startswith(".")
            and d.name not in EXCLUDES and not (d / "__init__.py").exists())
        for base in bases:
            for entry in _listdir(base):
                name = entry.stem if entry.suffix == ".py" else entry.name
                if name.isidentifier() and (entry.suffix == ".py" or (
                        entry.is_dir() and (entry / "__init__.py").exists())):
                    names.setdefault(name, []).append(base.relative_to(rootdir).as_posix())
        self.roots: list[str] | None = None
        try:
            self._proc: Any = subprocess.Popen(
                [sys.executable, "-c", _ROOTS_PROBE, str(rootdir), json.dumps(names)],
                cwd=rootdir, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        except OSError:
            self._proc, self.roots = None, []

    def get(self) -> list[str]:
        """The folders, relative to the rootdir (``[]`` when the probe failed)."""
        if self.roots is None:
            try:
                out, _ = self._proc.communicate(timeout=60)
                roots = json.loads(out)
                self.roots = [r for r in roots if isinstance(r, str)]
            except Exception:  # noqa: BLE001 - no probe: Ray's working_dir alone is on the path
                self._proc.kill()
                self.roots = []
        return self.roots


def _listdir(folder: Path) -> list[Path]:
    try:
        return sorted(folder.iterdir())
    except OSError:
        return []


def in_ray_job_copy(rootdir: Path) -> bool:
    """Whether ``rootdir`` is inside the copy of a Ray Job's ``working_dir`` that this session
    runs in (``ray job submit --working-dir``): a folder Ray unpacked and deletes later."""
    try:
        job = json.loads(os.environ.get(RAY_JOB_VAR) or "{}")
        uri = str((job.get("runtime_env") or {}).get("working_dir") or "")
    except (ValueError, AttributeError):
        return False
    package = uri.rsplit("/", 1)[-1].removesuffix(".zip")
    return bool(package) and package in Path(rootdir).resolve().parts


def inside(path: Path, folder: Path) -> bool:
    """Whether ``path`` is ``folder`` or below it (symlinks resolved)."""
    return Path(path).resolve().is_relative_to(Path(folder).resolve())


def explain_missing_files(log_path: Path, rootdir: Path, workdir: str | None) -> None:
    """A failed job's log says a file was missing: when that file exists in the controller's
    rootdir, it did not travel (ignored); say so at the end of the log, which the failure
    report shows."""
    from training_plugin.run.logs import log_tail

    tail = log_tail(log_path, lines=None)
    notes = []
    for name in dict.fromkeys(_MISSING_FILE.findall(tail)):
        rel = name
        if workdir and name.startswith(workdir.rstrip("/") + "/"):
            rel = name[len(workdir.rstrip("/")) + 1:]
        if os.path.isabs(rel) or not rel:
            continue
        if (rootdir / rel).exists():
            notes.append(MSG_NOT_SHIPPED.format(path=rel))
    if notes:
        try:
            safefs.append_text(log_path, "".join(notes))
        except OSError:
            pass


def write_note(log_path: Path, message: str) -> None:
    """Put why a job did not run where the user looks first: its log."""
    try:
        log_path.parent.mkdir(parents=True, exist_ok=True)
        fd = safefs.open_no_follow(log_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(message + "\n")
    except OSError:
        pass


def unpack(tar_path: str, output_dir: Path) -> None:
    """The job's output folder from its node, into ``<output-dir>/<id>/`` here."""
    import tarfile

    output_dir.mkdir(parents=True, exist_ok=True)
    try:
        with tarfile.open(tar_path) as tar:
            if hasattr(tarfile, "data_filter"):
                tar.extractall(output_dir, filter="data")
            else:  # pragma: no cover - Python without extraction filters
                tar.extractall(output_dir)
    finally:
        try:
            os.unlink(tar_path)
        except OSError:
            pass
