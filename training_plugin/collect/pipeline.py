"""The collect pipeline of a session: discovery -> flags -> specs -> items.

``Collector`` is a plugin object (registered by the entry in ``pytest_configure``, which also
reads the job table then).  ``Collector.prepare`` runs at session start (called by the session
object): it finds the scripts, reads their flags (through the flag cache), builds the job specs
and raises usage errors before anything runs.  Its collection hooks turn the specs into items.
The result, a ``CollectState``, is what the rest of the session reads (``state_of``).
"""

from __future__ import annotations

import contextlib
import gc
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from training_plugin import pytest_compat
from training_plugin.collect import discovery, sweeps
from training_plugin.collect.items import TrainingFile, TrainingRoot
from training_plugin.collect.specs import JobSpec, build_specs, check_train_args
from training_plugin.collect.table import JobConfig, load_job_table
from training_plugin.flags import Analyzer, FlagCache
from training_plugin.options import Settings, settings_of

#: The name the collector is registered under.
NAME = "training_plugin.collector"
CACHE_DIR = "training_plugin"
MSG_OUTPUT_DIR_IS_FILE = "output directory {path} is a file; pass another --output-dir"
MSG_UNUSED_TRAIN_ARG = (
    "--train-arg {name}={value} reaches no training job: no job's parser accepts --{name} "
    "(check the spelling; --collect-only lists each job's flags)"
)
_STATE_KEY = pytest.StashKey["CollectState"]()


@dataclass
class CollectState:
    """What collection found: the settings, the specs per script, where they came from."""

    settings: Settings
    specs: dict[Path, list[JobSpec]]
    training_only: bool  #: no command-line paths: only the jobs are collected
    roots: list[str]  #: the searched roots, relative to rootdir
    #: matching files that are not scripts (no entry point), relative to rootdir
    not_scripts: tuple[str, ...] = ()
    by_path: dict[str, list[JobSpec]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.by_path = {str(p): s for p, s in self.specs.items()}

    @property
    def ids(self) -> list[str]:
        """All job ids, sorted."""
        return sorted(spec.id for specs in self.specs.values() for spec in specs)


def state_of(config: pytest.Config) -> CollectState | None:
    """The session's collect state, once ``pytest_sessionstart`` has built it."""
    return config.stash.get(_STATE_KEY, None)


def _flag_cache_file(config: pytest.Config) -> Path | None:
    """``.pytest_cache/d/training_plugin/flags.json`` (None with ``-p no:cacheprovider``)."""
    cache = getattr(config, "cache", None)
    if cache is None:
        return None
    try:
        return Path(cache.mkdir(CACHE_DIR)) / "flags.json"
    except OSError:
        return None


@contextlib.contextmanager
def _no_cyclic_gc() -> Iterator[None]:
    """The cyclic garbage collector paused: the session's module table keeps every parsed
    tree alive while scripts are analysed, and the collector's passes over those objects cost
    three to four times the parsing itself (bench/bench_collect_cold.py).  The trees hold no
    reference cycles; reference counting frees them with the table."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _load_conftests(config: pytest.Config, folders: set[Path]) -> None:
    """Load the conftest.py files on the way to each script folder, as pytest's walk would
    (their ``collect_ignore`` and hooks then apply to the jobs)."""
    for folder in sorted(folders):
        try:
            pytest_compat.load_conftests(config, folder)
        except Exception as exc:  # ConftestImportFailure and friends
            raise pytest.UsageError(
                f"a conftest.py on the way to {discovery.relpath(folder, config.rootpath)} "
                f"failed to import: {exc}"
            ) from None


def _ignore_rules_exist(config: pytest.Config) -> bool:
    """Whether a pytest ignore rule could drop a script: ``--ignore``/``--ignore-glob``, a
    loaded conftest's ``collect_ignore``/``collect_ignore_glob``, or a ``pytest_ignore_collect``
    besides pytest's own (which, for a ``.py`` file, applies only those rules).  Asking the hook
    costs more than finding the scripts, so it is asked only when it can say yes."""
    if config.getoption("ignore", None) or config.getoption("ignore_glob", None):
        return True
    if pytest_compat.other_ignore_hooks(config):
        return True
    return any(
        getattr(plugin, "collect_ignore", None) or getattr(plugin, "collect_ignore_glob", None)
        for plugin in config.pluginmanager.get_plugins()
    )


def _explicit_roots(config: pytest.Config) -> list[Path]:
    base = Path(config.invocation_params.dir)
    roots = []
    for arg in config.args:
        path = Path(os.path.normpath(base / arg.split("::", 1)[0]))
        if path.exists():
            roots.append(path)
    return roots


def _warn_unused_train_args(config: pytest.Config, settings: Settings,
                            specs: dict[Path, list[JobSpec]]) -> None:
    """A --train-arg that no job accepts is a mistake worth a warning, not a silent no-op."""
    parsers = [spec.parser for group in specs.values() for spec in group]
    if not parsers or any(not p.resolved for p in parsers):
        return
    for name, value in settings.train_args:
        if all(p.find(name) is None for p in parsers):
            config.issue_config_time_warning(
                pytest.PytestConfigWarning(MSG_UNUSED_TRAIN_ARG.format(name=name, value=value)),
                stacklevel=2,
            )


class Collector:
    """The job table at configure time; discovery, flags and specs at session start; the
    collection nodes."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.controller = pytest_compat.is_controller(config)
        try:
            self.table: dict[str, JobConfig] | pytest.UsageError = load_job_table(config.rootpath)
        except pytest.UsageError as exc:
            self.table = exc  # raised at session start, so --help and --markers still work
        if isinstance(self.table, dict):
            for marker in sorted({m for cfg in self.table.values() for m in cfg.markers}):
                config.addinivalue_line(
                    "markers", f"{marker}: training jobs marked in [tool.training_plugin.jobs]"
                )

    def prepare(self) -> CollectState:
        """Discover scripts, analyze their flags, build job specs; raise usage errors early."""
        config = self.config
        if self.controller:
            hijack = pytest_compat.rootdir_hijack(config)
            if hijack is not None:
                raise pytest.UsageError(hijack)
        if isinstance(self.table, pytest.UsageError):
            raise self.table
        settings = settings_of(config)
        if settings.output_dir.is_file():
            raise pytest.UsageError(MSG_OUTPUT_DIR_IS_FILE.format(path=settings.output_dir))
        with _no_cyclic_gc():
            state = self._collect_specs(settings)
        config.stash[_STATE_KEY] = state
        if state.training_only:
            # Collect the training jobs only, not the test suite: one collector at rootdir
            # (pytest_collect_directory) yields them all; pytest walks nothing.
            pytest_compat.collect_from(config, settings.rootdir)
        return state

    def _collect_specs(self, settings: Settings) -> CollectState:
        config, rootdir = self.config, settings.rootdir
        pattern = str(config.getini("training_glob")).strip()
        if not pattern:
            raise pytest.UsageError("training_glob is empty; e.g. training_glob = train_*.py")
        skip = [s.strip().rstrip("/") for s in config.getini("training_skip") if s.strip()]
        training_only = config.args_source != pytest.Config.ArgsSource.ARGS
        if training_only:
            ini_roots = [r.strip() for r in config.getini("training_paths") if r.strip()]
            roots = [Path(r) for r in ini_roots] or [rootdir]
            restrict = None
        else:
            roots = _explicit_roots(config)
            restrict = roots
        cache_file = _flag_cache_file(config)
        # one module table for the session: the entry-point check and the flag analysis
        # read and parse each file once
        flag_cache = FlagCache(Analyzer(rootdir), FlagCache.read(cache_file))
        assert isinstance(self.table, dict)
        require = config.getini("training_require_entry_point")
        sweep: sweeps.Sweep | None = None  # read once (its --seed warning is said once)
        # the entry points decided late (``FlagCache.settle``: files without ``__main__``,
        # once the analysis has parsed what it follows) may add scripts: then look again
        while True:
            try:
                found = discovery.find_scripts(
                    roots, rootdir=rootdir, pattern=pattern, skip=skip,
                    check_roots=training_only, norecursedirs=config.getini("norecursedirs"),
                    unique_ids=config.getini("training_unique_ids"),
                    entry_point=flag_cache.entry_point if require else None,
                    keep_ids=[job for job, cfg in self.table.items() if cfg.script is None],
                )
                scripts = found.scripts
                _load_conftests(config, {s.path.parent for s in scripts})
                if _ignore_rules_exist(config):
                    # --ignore, --ignore-glob, collect_ignore, plugins: pytest's own rules
                    ignore = config.hook.pytest_ignore_collect
                    scripts = [s for s in scripts
                               if not ignore(collection_path=s.path, config=config)]
                if sweep is None:
                    sweep = sweeps.sweep_of(config)
                specs = build_specs(scripts, self.table, settings, flag_cache.get,
                                    pyproject=str(rootdir / "pyproject.toml"),
                                    restrict=restrict, sweep=sweep)
            except pytest.UsageError:
                if not flag_cache.settle():
                    raise
                continue
            if not flag_cache.settle():
                break
        if cache_file is not None and flag_cache.changed and self.controller:
            flag_cache.write(cache_file)
        check_train_args(specs)
        if self.controller:
            _warn_unused_train_args(config, settings, specs)
        where = [discovery.relpath(Path(os.path.normpath(rootdir / r)), rootdir) for r in roots]
        return CollectState(settings, specs, training_only, where, found.not_scripts)

    @pytest.hookimpl(tryfirst=True)
    def pytest_collect_directory(self, path: Path,
                                 parent: pytest.Collector) -> pytest.Collector | None:
        """Training-only sessions: every job from one ``TrainingRoot`` (no walk, no File nodes)."""
        state = state_of(self.config)
        if state is None or not state.training_only or path != state.settings.rootdir:
            return None
        return TrainingRoot.from_parent(parent, path=path, specs=state.specs)

    @pytest.hookimpl(wrapper=True)
    def pytest_collect_file(self, file_path: Path, parent: pytest.Collector) -> Any:
        """Training scripts become ``TrainingFile``s (never python test modules)."""
        result = yield
        state = state_of(self.config)
        specs = state.by_path.get(str(file_path)) if state is not None else None
        if specs is None:
            return result
        kept = [node for node in result or [] if not isinstance(node, pytest.Module)]
        kept.append(TrainingFile.from_parent(parent, path=Path(file_path), specs=specs))
        return kept
