"""Up-to-date fingerprints of jobs, ``--skip-unchanged``, and "changed, and why".

A job's inputs fingerprint (``sha256`` of its components) covers:

- ``files``: the script and every repository module it imports, transitively (an ``ast`` walk
  of every ``import`` in the file, resolved against the script's folder, ``<rootdir>/src`` and
  the rootdir, never leaving the rootdir); files and folders named in its arguments (configs,
  data; a folder by its listing: names, sizes, modification times); files matching the job
  table's ``inputs`` globs.  Each by the sha256 of its contents.
- ``argv``: the resolved arguments, without the interpreter's path, with the job's output
  directory as ``<output-dir>`` and without the thread budget (``--n-jobs``), which changes
  with ``-n`` but not the model;
- ``env``: the job table's ``env``;
- ``python`` and ``packages``: the interpreter version, and the installed versions of the
  third-party distributions the script's imports come from, with their requirements,
  transitively (``importlib.metadata``).

The controller keeps, per job, the components of its last passing run in
``<output-dir>/<id>/fingerprint.json``; the history line holds the ``sha256``.  With
``--skip-unchanged`` a job whose fingerprint equals its last passing run's is skipped, with its
last metrics; ``--collect-only`` says per job "unchanged" or "changed" and what changed.
"""

from __future__ import annotations

import ast
import functools
import hashlib
import json
import os
import platform
import sys
from pathlib import Path
from typing import Any

import pytest

from training_plugin import results
from training_plugin.features import history

NAME = "training_plugin.fingerprint"
FINGERPRINT_FILE = "fingerprint.json"
#: The thread budget's option (``--n-jobs`` / ``--n_jobs``): left out of the resolved argv.
THREAD_OPTION = "n-jobs"
OUTPUT_DIR_TOKEN = "<output-dir>"
_FP_KEY = pytest.StashKey[dict[str, Any]]()

HELP_SKIP_UNCHANGED = (
    "skip a job whose inputs (script, repository modules it imports, files named in its "
    "arguments, argv, env, Python and package versions, the job table's inputs) equal those "
    "of its last passing run in <output-dir>/history.jsonl; its last metrics are reported"
)


def add_options(group: pytest.OptionGroup, parser: pytest.Parser) -> None:
    """``--skip-unchanged``."""
    group.addoption("--skip-unchanged", action="store_true", default=False,
                    dest="training_skip_unchanged", help=HELP_SKIP_UNCHANGED)


def add_ini(parser: pytest.Parser) -> None:
    """No ini keys."""


# ---------------------------------------------------------------------------------------------
# argv
# ---------------------------------------------------------------------------------------------
def _option_name(token: str) -> str:
    return token.split("=", 1)[0].lstrip("-").replace("_", "-").lower()


def _is_option(token: str) -> bool:
    if not token.startswith("-") or token == "-":
        return False
    try:
        float(token)
    except ValueError:
        return True
    return False  # a negative number is a value


def resolved_argv(spec: Any) -> list[str]:
    """The job's arguments as they decide its result (see the module docstring)."""
    out = str(spec.output_dir)
    argv = list(spec.argv[1:])
    resolved: list[str] = []
    i = 0
    while i < len(argv):
        token = argv[i]
        if _is_option(token) and _option_name(token) == THREAD_OPTION:
            i += 1 if "=" in token else 2
            continue
        if token == out:
            token = OUTPUT_DIR_TOKEN
        elif "=" in token and token.split("=", 1)[1] == out:
            token = token.split("=", 1)[0] + "=" + OUTPUT_DIR_TOKEN
        resolved.append(token)
        i += 1
    return resolved


def _parse_argv(argv: list[str]) -> tuple[dict[str, str | None], list[str]]:
    options: dict[str, str | None] = {}
    positionals: list[str] = []
    i = 0
    while i < len(argv):
        token = argv[i]
        if _is_option(token):
            if "=" in token:
                name, value = token.split("=", 1)
                options[name] = value
            elif i + 1 < len(argv) and not _is_option(argv[i + 1]):
                options[token] = argv[i + 1]
                i += 1
            else:
                options[token] = None
        else:
            positionals.append(token)
        i += 1
    return options, positionals


def describe_argv_change(old: list[str], new: list[str]) -> list[str]:
    """What differs between two argument lists, in words ("--epochs 10 instead of 200")."""
    if list(old) == list(new):
        return []
    old_opts, old_pos = _parse_argv(list(old))
    new_opts, new_pos = _parse_argv(list(new))
    changes: list[str] = []
    for name in new_opts:
        value = new_opts[name]
        shown = name if value is None else f"{name} {value}"
        if name not in old_opts:
            changes.append(f"{shown} added")
        elif old_opts[name] != value:
            before = "given as a switch" if old_opts[name] is None else old_opts[name]
            changes.append(f"{shown} instead of {before}")
    for name in old_opts:
        if name not in new_opts:
            value = old_opts[name]
            changes.append(f"{name} removed" + ("" if value is None else f" (was {value})"))
    if old_pos != new_pos:
        changes.append(f"arguments {' '.join(new_pos) or '(none)'} instead of "
                       f"{' '.join(old_pos) or '(none)'}")
    if not changes:
        changes.append(f"arguments reordered: {' '.join(new)} (was {' '.join(old)})")
    return changes


# ---------------------------------------------------------------------------------------------
# files: the script and the repository modules it imports
# ---------------------------------------------------------------------------------------------
_hash_cache: dict[tuple[str, int, int], str] = {}


def file_sha256(path: Path) -> str | None:
    """sha256 of a file's contents (cached by path, size and mtime), or None if unreadable."""
    try:
        st = path.stat()
    except OSError:
        return None
    key = (str(path), st.st_size, st.st_mtime_ns)
    if key not in _hash_cache:
        digest = hashlib.sha256()
        try:
            with open(path, "rb") as f:
                for chunk in iter(lambda: f.read(1 << 20), b""):
                    digest.update(chunk)
        except OSError:
            return None
        _hash_cache[key] = digest.hexdigest()
    return _hash_cache[key]


def _folder_sha256(folder: Path) -> str:
    """sha256 of a folder's listing: relative names, sizes and modification times."""
    digest = hashlib.sha256()
    for root, dirs, files in os.walk(folder):
        dirs.sort()
        for name in sorted(files):
            path = Path(root) / name
            try:
                st = path.stat()
            except OSError:
                continue
            digest.update(f"{path.relative_to(folder)}\0{st.st_size}\0{st.st_mtime_ns}\n"
                          .encode())
    return digest.hexdigest()


@functools.lru_cache(maxsize=4096)
def _imports_of(path: Path) -> tuple[tuple[str, int, tuple[str, ...]], ...]:
    """``(module, level, names)`` of every import statement in a file (anywhere in it)."""
    try:
        tree = ast.parse(path.read_bytes(), filename=str(path))
    except (OSError, SyntaxError, ValueError):
        return ()
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, 0, ()) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            found.append((node.module or "", node.level,
                          tuple(alias.name for alias in node.names if alias.name != "*")))
    return tuple(found)


class ImportWalker:
    """Follows a script's imports through the repository (never leaving ``rootdir``)."""

    def __init__(self, rootdir: Path) -> None:
        self.rootdir = Path(rootdir)

    def _inside(self, path: Path) -> bool:
        try:
            rel = path.relative_to(self.rootdir)
        except ValueError:
            return False
        return not any(part.startswith(".") or part in ("site-packages", "node_modules")
                       for part in rel.parts[:-1])

    def _module_file(self, base: Path, parts: list[str]) -> list[Path]:
        """The files that importing ``parts`` under ``base`` runs (package inits included);
        [] when it is not there."""
        files: list[Path] = []
        here = base
        for i, part in enumerate(parts):
            package = here / part
            module = here / f"{part}.py"
            if (package / "__init__.py").is_file():
                files.append(package / "__init__.py")
                here = package
            elif module.is_file() and i == len(parts) - 1:
                files.append(module)
                return files
            elif package.is_dir() and i < len(parts) - 1:
                here = package  # a namespace package
            else:
                return [] if i == 0 else files
        return files

    def _resolve(self, bases: list[Path], parts: list[str]) -> list[Path] | None:
        for base in bases:
            found = self._module_file(base, parts)
            if found:
                return [f for f in found if self._inside(f)]
        return None

    def walk(self, script: Path) -> tuple[set[Path], set[str]]:
        """(repository files the script runs, third-party top-level module names)."""
        script = Path(script)
        roots = [script.parent, self.rootdir / "src", self.rootdir]
        seen: set[Path] = set()
        external: set[str] = set()
        todo = [script]
        stdlib = set(sys.stdlib_module_names) | {"__future__"}
        while todo:
            path = todo.pop()
            if path in seen:
                continue
            seen.add(path)
            for module, level, names in _imports_of(path):
                parts = [p for p in module.split(".") if p]
                if level:
                    base = path.parent
                    for _ in range(level - 1):
                        base = base.parent
                    bases = [base]
                else:
                    if not parts:
                        continue
                    if parts[0] in stdlib:
                        continue
                    bases = roots
                found = self._resolve(bases, parts) if parts else []
                if found is None:
                    if not level:
                        external.add(parts[0])
                    continue
                todo += found
                target = bases[0] if level else None
                for name in names:  # `from package import submodule`
                    sub = self._resolve([target] if target else bases, [*parts, name])
                    if sub:
                        todo += sub
        return seen, external


# ---------------------------------------------------------------------------------------------
# packages
# ---------------------------------------------------------------------------------------------
@functools.lru_cache(maxsize=1)
def _packages_distributions() -> dict[str, list[str]]:
    import importlib.metadata as md

    try:
        return dict(md.packages_distributions())
    except Exception:  # a broken installed distribution must not break the session
        return {}


@functools.lru_cache(maxsize=1024)
def _distribution(name: str) -> tuple[str, str, tuple[str, ...]] | None:
    """(name, version, requirement names) of an installed distribution, or None."""
    import importlib.metadata as md

    try:
        dist = md.distribution(name)
    except md.PackageNotFoundError:
        return None
    requires: list[str] = []
    try:
        from packaging.requirements import InvalidRequirement, Requirement

        for text in dist.requires or ():
            try:
                req = Requirement(text)
            except InvalidRequirement:
                continue
            if req.marker is not None and not req.marker.evaluate({"extra": ""}):
                continue
            requires.append(req.name)
    except ImportError:  # pragma: no cover - packaging comes with pytest
        pass
    return dist.metadata["Name"] or name, dist.version, tuple(requires)


def package_versions(top_level: set[str]) -> dict[str, str]:
    """Installed versions of the distributions providing these modules, with their
    requirements (transitively)."""
    todo: list[str] = []
    for module in sorted(top_level):
        if _distribution(module) is not None:  # most distributions share their module's name
            todo.append(module)
        else:  # e.g. sklearn -> scikit-learn: the full module map (slow to build, built once)
            todo += _packages_distributions().get(module, [])
    versions: dict[str, str] = {}
    seen: set[str] = set()
    while todo:
        name = todo.pop()
        key = name.lower().replace("_", "-").replace(".", "-")
        if key in seen:
            continue
        seen.add(key)
        info = _distribution(name)
        if info is None:
            continue
        versions[info[0]] = info[1]
        todo += info[2]
    return dict(sorted(versions.items()))


# ---------------------------------------------------------------------------------------------
# the fingerprint
# ---------------------------------------------------------------------------------------------
def _rel(path: Path, rootdir: Path) -> str:
    try:
        return path.relative_to(rootdir).as_posix()
    except ValueError:
        return str(path)


def compute(spec: Any, rootdir: Path) -> dict[str, Any]:
    """The fingerprint of a job: its components and their ``sha256``."""
    rootdir = Path(rootdir)
    walker = ImportWalker(rootdir)
    modules, external = walker.walk(Path(spec.script))
    files: dict[str, str | None] = {}
    for path in modules:
        files[_rel(path, rootdir)] = file_sha256(path)
    argv = resolved_argv(spec)
    out = Path(spec.output_dir)
    for token in argv:
        if token.startswith("-") and "=" in token:
            token = token.split("=", 1)[1]
        if not token or token == OUTPUT_DIR_TOKEN or len(token) > 4096:
            continue
        path = Path(os.path.normpath(rootdir / os.path.expanduser(token)))
        try:
            if path == out or out in path.parents or path == rootdir:
                continue
            if path.is_file():
                files[_rel(path, rootdir)] = file_sha256(path)
            elif path.is_dir():
                files[_rel(path, rootdir) + "/"] = _folder_sha256(path)
        except OSError:
            continue
    config = getattr(spec, "config", None)
    for pattern in getattr(config, "inputs", ()) or ():
        for path in sorted(rootdir.glob(pattern)):
            if path.is_file():
                files[_rel(path, rootdir)] = file_sha256(path)
    components = {
        "files": dict(sorted(files.items())),
        "argv": argv,
        "env": dict(sorted((spec.env or {}).items())),
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "packages": package_versions(external),
    }
    digest = hashlib.sha256(json.dumps(components, sort_keys=True).encode()).hexdigest()
    return {"sha256": digest, **components}


def of_item(item: Any) -> dict[str, Any]:
    """The job's fingerprint, worked out once per item (before it runs)."""
    fp = item.stash.get(_FP_KEY, None)
    if fp is None:
        fp = item.stash[_FP_KEY] = compute(item.spec, item.config.rootpath)
    return fp


def _diff(old: dict[str, Any], new: dict[str, Any], added: str, removed: str,
          changed: str) -> list[str]:
    """One phrase per key that was added, removed or changed (``str.format`` templates with
    ``name``, ``old`` and ``new``)."""
    phrases = []
    for name in sorted(set(old) | set(new)):
        if name not in old:
            phrases.append(added.format(name=name, new=new[name]))
        elif name not in new:
            phrases.append(removed.format(name=name, old=old[name]))
        elif old[name] != new[name]:
            phrases.append(changed.format(name=name, old=old[name], new=new[name]))
    return phrases


def describe_change(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """What differs between two fingerprints, in words."""
    changes = _diff(old.get("files") or {}, new.get("files") or {},
                    "{name} is a new input", "{name} is no longer an input", "{name} edited")
    changes += describe_argv_change(old.get("argv") or [], new.get("argv") or [])
    changes += _diff(old.get("env") or {}, new.get("env") or {}, "env {name}={new} set",
                     "env {name} unset (was {old})", "env {name}={new} instead of {old}")
    if old.get("python") != new.get("python"):
        changes.append(f"{new.get('python')} instead of {old.get('python')}")
    changes += _diff(old.get("packages") or {}, new.get("packages") or {},
                     "{name} {new} is a new dependency", "{name} {old} no longer a dependency",
                     "{name} {new} instead of {old}")
    return changes


def when(entry: dict[str, Any]) -> str:
    """A history line's time as "YYYY-MM-DD HH:MM UTC"."""
    text = str(entry.get("time") or "")
    return text[:16].replace("T", " ") + " UTC" if len(text) >= 16 else text or "an earlier run"


def metric_phrase(entry: dict[str, Any]) -> str:
    """The primary metric of a history line, e.g. "roc_auc 0.917" ("" when none)."""
    name = entry.get("primary_metric")
    value = (entry.get("metrics") or {}).get(name) if name else None
    return f"{name} {value:.4g}" if isinstance(value, (int, float)) else ""


class Fingerprints:
    """Puts each job's fingerprint into its result; skips unchanged jobs; explains changes."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.skip_unchanged = bool(config.getoption("training_skip_unchanged", False))

    def pytest_unconfigure(self, config: pytest.Config) -> None:
        """Unregister."""
        config.pluginmanager.unregister(self, NAME)

    def pytest_training_skip_job(self, item: Any) -> results.JobSkip | None:
        """``--skip-unchanged``: skip a job whose fingerprint is its last passing run's."""
        if not self.skip_unchanged:
            return None
        last = history.last_passing(self.config).get(item.spec.id)
        fp = of_item(item)
        if last is None or last.get("fingerprint") != fp["sha256"]:
            return None
        phrase = metric_phrase(last)
        reason = f"unchanged since {when(last)}" + (f"; {phrase}" if phrase else "")
        metrics = results.JobMetrics(
            metrics={k: float(v) for k, v in (last.get("metrics") or {}).items()
                     if isinstance(v, (int, float)) and not isinstance(v, bool)},
            primary_metric=last.get("primary_metric"),
            synthetic=last.get("synthetic"),
        )
        return results.JobSkip(reason, metrics, extra={
            "fingerprint": {"sha256": fp["sha256"]},
            "unchanged_since": last.get("time"),
        })

    def pytest_training_job_started(self, item: Any) -> None:
        """Fingerprint the inputs before the job runs."""
        of_item(item)

    def pytest_training_job_finished(self, item: Any, result: results.JobResult) -> None:
        """The fingerprint travels with the result (history, fingerprint.json)."""
        result.extra["fingerprint"] = of_item(item)

    def pytest_training_job_report(self, config: pytest.Config, report: pytest.TestReport,
                                   record: dict[str, Any]) -> None:
        """A passing job's fingerprint components go to ``<output-dir>/<id>/fingerprint.json``."""
        fp = (record.get("extra") or {}).get("fingerprint")
        if record.get("outcome") != "passed" or not isinstance(fp, dict) or "files" not in fp:
            return
        path = Path(record["output_dir"]) / FINGERPRINT_FILE
        try:
            results.write_json_atomic(path, fp, indent=1, sort_keys=True)
        except OSError:
            pass

    def status(self, item: Any) -> str:
        """"unchanged since ..." or "changed: why" for one job."""
        spec = item.spec
        last = history.last_passing(self.config).get(spec.id)
        if last is None:
            return "changed: no passing run"
        fp = of_item(item)
        if last.get("fingerprint") == fp["sha256"]:
            phrase = metric_phrase(last)
            return f"unchanged since {when(last)}" + (f" ({phrase})" if phrase else "")
        try:
            old = json.loads((Path(spec.output_dir) / FINGERPRINT_FILE).read_text("utf-8"))
        except (OSError, ValueError):
            old = None
        if not isinstance(old, dict) or old.get("sha256") != last.get("fingerprint"):
            why = ["what changed is unknown (its fingerprint.json is gone)"]
            if last.get("argv"):
                old_argv = list(last["argv"][1:])
                out = str(spec.output_dir)
                old_argv = [OUTPUT_DIR_TOKEN if a == out else a for a in old_argv]
                why = describe_argv_change(old_argv, fp["argv"]) or why
        else:
            why = describe_change(old, fp) or ["fingerprint differs"]
        return f"changed since {when(last)}: " + "; ".join(why)

    def pytest_report_collectionfinish(self, config: pytest.Config,
                                       items: list[pytest.Item]) -> list[str] | None:
        """``--collect-only``: per job, unchanged or changed, and why."""
        if not config.getoption("collectonly") or config.get_verbosity() < 0:
            return None
        from training_plugin.items import TrainingItem

        lines = [f"    {item.spec.id}: {self.status(item)}"
                 for item in items if isinstance(item, TrainingItem)]
        if not lines:
            return None
        where = _rel(history.history_path(config), Path(config.rootpath))
        return [f"up to date? (each job against its last passing run in {where})", *lines]


def configure(config: pytest.Config) -> None:
    """Register the fingerprint plugin object (every session: the history records it)."""
    config.pluginmanager.register(Fingerprints(config), NAME)
