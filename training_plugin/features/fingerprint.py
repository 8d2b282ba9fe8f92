"""Up-to-date fingerprints of jobs, ``--skip-unchanged``, and "changed, and why".

A job's inputs fingerprint (``sha256`` of its components) covers:

- ``files``: the script and every repository module it imports, transitively
  (``training_plugin.imports.ImportWalker``: the resolver the flag analysis uses too); files and folders named in its arguments (configs,
  data; a folder by its listing: names, sizes, modification times); files matching the job
  table's ``inputs`` globs.  Each by the sha256 of its contents.
- ``argv``: the resolved arguments (``collect.argv.resolved_argv``);
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

import functools
import hashlib
import json
import os
import platform
from pathlib import Path
from typing import Any

import pytest

from training_plugin import results, safefs, schema, store
from training_plugin.collect.argv import (OUTPUT_DIR_TOKEN, describe_argv_change,
                                          resolved_argv)
from training_plugin.collect.items import TrainingItem
from training_plugin.imports import ImportWalker
from training_plugin.provenance import when

NAME = "training_plugin.fingerprint"
FINGERPRINT_FILE = "fingerprint.json"
_FP_KEY = pytest.StashKey[dict[str, Any]]()

HELP_SKIP_UNCHANGED = (
    "skip a job whose inputs (script, repository modules it imports, files named in its "
    "arguments, argv, env, Python and package versions, the job table's inputs) equal those "
    "of its last passing run in <output-dir>/history.jsonl; its last metrics are reported"
)


def add_ini(parser: pytest.Parser) -> None:
    """No ini keys."""


def pytest_addoption(parser: pytest.Parser) -> None:
    """``--skip-unchanged``."""
    from training_plugin.options import training_group

    training_group(parser).addoption("--skip-unchanged", action="store_true", default=False,
                                     dest="training_skip_unchanged", help=HELP_SKIP_UNCHANGED)


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


def read_fingerprint(path: Path) -> dict[str, Any] | None:
    """A ``fingerprint.json`` checked by ``schema.fingerprint``; None when it is missing or
    bad (a bad one is a one-line ``schema`` warning)."""
    try:
        doc = schema.load(path, max_bytes=results.MAX_JSON_BYTES)
    except FileNotFoundError:
        return None
    except schema.BadFile as exc:
        schema.warn(f"{exc}; not used")
        return None
    problem = schema.fingerprint(doc)
    if problem:
        schema.warn(f"{path}: {problem}; not used")
        return None
    return doc


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
        last = store.last_passing(self.config).get(item.spec.id)
        fp = of_item(item)
        if last is None or last.get("fingerprint") != fp["sha256"]:
            return None
        phrase = store.metric_phrase(last)
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
                                   record: results.JobRecord) -> None:
        """A passing job's fingerprint components go to ``<output-dir>/<id>/fingerprint.json``."""
        fp = (record.extra or {}).get("fingerprint")
        if record.outcome != "passed" or not isinstance(fp, dict) or "files" not in fp:
            return
        path = Path(record.output_dir) / FINGERPRINT_FILE
        try:
            results.write_json_atomic(path, fp, indent=1, sort_keys=True)
        except OSError as exc:  # a full disk, a link at fingerprint.json: a summary warning
            safefs.note_write_failure(config, path, exc)

    def status(self, item: Any) -> str:
        """"unchanged since ..." or "changed: why" for one job."""
        spec = item.spec
        last = store.last_passing(self.config).get(spec.id)
        if last is None:
            return "changed: no passing run"
        fp = of_item(item)
        if last.get("fingerprint") == fp["sha256"]:
            phrase = store.metric_phrase(last)
            return f"unchanged since {when(last)}" + (f" ({phrase})" if phrase else "")
        old = read_fingerprint(Path(spec.output_dir) / FINGERPRINT_FILE)
        if old is None or old.get("sha256") != last.get("fingerprint"):
            why = ["what changed is unknown (its fingerprint.json is gone or unusable)"]
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
        lines = [f"    {item.spec.id}: {self.status(item)}"
                 for item in items if isinstance(item, TrainingItem)]
        if not lines:
            return None
        where = _rel(store.history_path(config), Path(config.rootpath))
        return [f"up to date? (each job against its last passing run in {where})", *lines]


def pytest_configure(config: pytest.Config) -> None:
    """Register the fingerprint plugin object (every session: the history records it)."""
    config.pluginmanager.register(Fingerprints(config), NAME)
