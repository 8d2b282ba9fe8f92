"""pytest options and hooks of training_plugin (thin: the work lives in the other modules).

Loaded with ``pytest -p training_plugin``.  Without command-line paths the session collects the
training jobs only (from the ``training_paths`` ini roots); with paths it collects what they
name, plus the training scripts under them.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path
from typing import Any

import pytest

from training_plugin import budget, discovery, jobs, pytest_compat
from training_plugin import items as items_mod
from training_plugin import session as session_mod
from training_plugin.flags import Analyzer, FlagCache

_STATE_KEY = pytest.StashKey["_State"]()
_TABLE_KEY = pytest.StashKey["dict[str, jobs.JobConfig] | pytest.UsageError"]()

CACHE_DIR = "training_plugin"
DEFAULT_GLOB = "train_*.py"
DEFAULT_OUTPUT_DIR = "training-results"
_NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_-]*$")

HELP_EPOCHS = "epochs for every job that accepts --epochs (int >= 1)"
HELP_FOLDS = "cross-validation folds for every job that accepts --folds (int >= 2)"
HELP_SEED = "random seed for every job that accepts --seed"
HELP_OUTPUT_DIR = (
    "root of the jobs' output directories (<dir>/<job id>/); relative to rootdir; "
    "default: ini training_output_dir or training-results"
)
HELP_TRAIN_ARG = "forward --NAME VALUE to every job that accepts --NAME (repeatable)"
HELP_RAY = (
    "run the jobs on a Ray cluster: auto, HOST:PORT, ray://HOST:PORT (what ray.init takes), "
    "or local (a private Ray instance for this session); default: ini training_ray_address"
)
MSG_RAY_WITH_XDIST = (
    "--ray runs every selected job at once on the cluster, placed by its resources; "
    "-n {n} is not needed and was turned off (the jobs do not run on xdist workers)"
)


class _State:
    """Per-session results of discovery (in ``config.stash``)."""

    def __init__(self, settings: jobs.Settings, specs: dict[Path, list[jobs.JobSpec]],
                 training_only: bool, roots: list[str]) -> None:
        self.settings = settings
        self.specs = specs
        self.training_only = training_only
        self.roots = roots
        self.by_path: dict[str, list[jobs.JobSpec]] = {str(p): s for p, s in specs.items()}

    @property
    def ids(self) -> list[str]:
        """All job ids, sorted."""
        return sorted(spec.id for specs in self.specs.values() for spec in specs)


# ---------------------------------------------------------------------------------------------
# option validators (argparse `type=`): a UsageError (exit 4) with the fix in the message
# ---------------------------------------------------------------------------------------------
def _int_at_least(option: str, minimum: int | None) -> Any:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise pytest.UsageError(
                f"{option} expects a whole number, got {text!r}; e.g. {option} "
                f"{minimum if minimum is not None else 42}"
            ) from None
        if minimum is not None and value < minimum:
            raise pytest.UsageError(
                f"{option} must be at least {minimum}, got {value}; e.g. {option} {minimum}"
            )
        return value

    parse.__name__ = option.lstrip("-")
    return parse


def _output_dir(text: str) -> str:
    if not text.strip():
        raise pytest.UsageError("--output-dir expects a directory, got ''; e.g. --output-dir out")
    return text


def _train_arg(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    name = name.strip()
    if name.startswith("--"):
        name = name[2:]
    if not sep or not _NAME_RE.match(name):
        raise pytest.UsageError(
            f"--train-arg expects NAME=VALUE, got {text!r}; "
            "e.g. --train-arg learning-rate=0.01 (forwarded as --learning-rate 0.01)"
        )
    return name, value


def pytest_addoption(parser: pytest.Parser) -> None:
    """The "training" option group and its ini keys."""
    group = parser.getgroup("training", "training jobs (training_plugin)")
    group.addoption("--epochs", type=_int_at_least("--epochs", 1), default=None,
                    metavar="N", help=HELP_EPOCHS)
    group.addoption("--folds", type=_int_at_least("--folds", 2), default=None,
                    metavar="K", help=HELP_FOLDS)
    group.addoption("--seed", type=_int_at_least("--seed", None), default=None,
                    metavar="S", help=HELP_SEED)
    group.addoption("--output-dir", dest="training_output_dir", type=_output_dir, default=None,
                    metavar="DIR", help=HELP_OUTPUT_DIR)
    group.addoption("--train-arg", dest="train_args", type=_train_arg, action="append",
                    default=[], metavar="NAME=VALUE", help=HELP_TRAIN_ARG)
    group.addoption("--ray", dest="training_ray", default=None, metavar="ADDRESS", help=HELP_RAY)
    add_ini_options(parser)
    from training_plugin import features

    features.add_options(group, parser)


def pytest_addhooks(pluginmanager: pytest.PytestPluginManager) -> None:
    """The plugin's own hooks (``hookspecs.py``): executor choice, job started / finished."""
    from training_plugin import hookspecs

    pluginmanager.add_hookspecs(hookspecs)


def add_ini_options(parser: pytest.Parser) -> None:
    """Register the ``training_*`` ini keys.

    Also callable from a conftest's ``pytest_addoption`` so that plain ``pytest`` (without
    ``-p training_plugin``) does not warn about the keys in pytest.ini.
    """
    parser.addini("training_paths", "roots searched for training scripts (default: rootdir)",
                  type="linelist", default=[])
    parser.addini("training_skip", "paths under rootdir never searched for training scripts",
                  type="linelist", default=[])
    parser.addini("training_glob", "file pattern of training scripts", default=DEFAULT_GLOB)
    parser.addini("training_output_dir", HELP_OUTPUT_DIR, default=DEFAULT_OUTPUT_DIR)
    parser.addini("training_flag_aliases", "a repository's own option names for the shared "
                  "settings, one setting a line: epochs = niter  /  output-dir = project",
                  type="linelist", default=[])
    parser.addini("training_unique_ids", "refuse scripts that share a file name instead of "
                  "qualifying their job ids by folder (classify/train, segment/train)",
                  type="bool", default=False)
    parser.addini("training_gpus", "GPU ids shared out between xdist workers when the "
                  "environment sets none (e.g. 0,1; none = no GPUs)", default="")
    parser.addini("training_ray_address", "Ray cluster address for the jobs (as --ray); "
                  "empty: run locally", default="")
    parser.addini("training_ray_queue", "under --ray, who queues the jobs: executor (default; "
                  "releases them longest first as the cluster has room) or ray (all to Ray at "
                  "once, for autoscaling clusters)", default="executor")
    from training_plugin import features

    features.add_ini(parser)


def ray_address(config: pytest.Config) -> str | None:
    """The Ray address of this session (``--ray``, else ini ``training_ray_address``), or
    None when the jobs run locally."""
    address = config.getoption("training_ray", None)
    if address is None:
        try:
            address = config.getini("training_ray_address")
        except ValueError:
            address = ""
    address = str(address).strip()
    return address or None


SHARED_SETTINGS = ("epochs", "folds", "seed", "output-dir")


def _flag_aliases(config: pytest.Config) -> tuple[tuple[str, tuple[str, ...]], ...]:
    """The ``training_flag_aliases`` ini key: ``<setting> = <option> ...`` per line."""
    aliases: dict[str, tuple[str, ...]] = {}
    for line in config.getini("training_flag_aliases"):
        name, sep, rest = line.partition("=")
        name = name.strip().lstrip("-").replace("_", "-")
        spellings = tuple(s.lstrip("-") for s in rest.split())
        if not sep or name not in SHARED_SETTINGS or not spellings:
            raise pytest.UsageError(
                f"training_flag_aliases: {line.strip()!r} is not '<setting> = <option> ...' "
                f"with a setting among {', '.join(SHARED_SETTINGS)} (e.g. output-dir = project)"
            )
        aliases[name] = aliases.get(name, ()) + spellings
    return tuple(aliases.items())


def _settings(config: pytest.Config) -> jobs.Settings:
    rootdir = Path(config.rootpath)
    output_dir = jobs.output_dir_of(config, DEFAULT_OUTPUT_DIR)
    return jobs.Settings(
        rootdir=rootdir,
        output_dir=output_dir,
        epochs=config.getoption("epochs"),
        folds=config.getoption("folds"),
        seed=config.getoption("seed"),
        train_args=tuple(config.getoption("train_args") or ()),
        flag_aliases=_flag_aliases(config),
        threads=budget.threads_per_job(config),
        cluster=ray_address(config) is not None,
    )


def pytest_configure(config: pytest.Config) -> None:
    """Read the job table, register its markers and the session object; under ``--ray``,
    turn xdist off (the cluster runs every job at once)."""
    address = ray_address(config)
    numprocesses = config.getoption("numprocesses", None)
    if address is not None and numprocesses and pytest_compat.is_controller(config):
        # runs before xdist's own (trylast) pytest_configure, which then starts no workers
        config.option.numprocesses = None
        config.option.dist = "no"
        config.issue_config_time_warning(
            pytest.PytestConfigWarning(MSG_RAY_WITH_XDIST.format(n=numprocesses)), stacklevel=2
        )
    try:
        table: dict[str, jobs.JobConfig] | pytest.UsageError = jobs.load_job_table(
            config.rootpath
        )
    except pytest.UsageError as exc:
        table = exc  # raised at session start, so --help and --markers still work
    config.stash[_TABLE_KEY] = table
    if isinstance(table, dict):
        for marker in jobs.table_markers(table):
            config.addinivalue_line(
                "markers", f"{marker}: training jobs marked in [tool.training_plugin.jobs]"
            )
    session_mod.register(config, _settings(config).output_dir, address)
    from training_plugin import features

    features.configure(config)
    if address is not None and pytest_compat.is_controller(config) and not any(
            config.getoption(name, False) for name in _INFO_ONLY):
        from training_plugin.executors import ray as ray_executor

        ray_executor.preconnect(config, address)  # connects while the scripts are analysed


#: Options under which pytest only prints information (no session: nothing to connect for).
_INFO_ONLY = ("help", "version", "markers", "showfixtures", "show_fixtures_per_test")


def pytest_unconfigure(config: pytest.Config) -> None:
    """Unregister the session object; stop the executor (kills anything still running)."""
    session_mod.unregister(config)
    ray_executor = sys.modules.get("training_plugin.executors.ray")
    if ray_executor is not None:
        ray_executor.end_preconnect(config)


MSG_OUTPUT_DIR_IS_FILE = "output directory {path} is a file; pass another --output-dir"
#: The line after a session that selected no job (-k / -m matched nothing).
MSG_NO_MATCH = "training: no job matched {what}; job ids: {ids}"
MSG_NO_SCRIPTS = "training: no training scripts ({glob}) found under {where}"
MSG_UNUSED_TRAIN_ARG = (
    "--train-arg {name}={value} reaches no training job: no job's parser accepts --{name} "
    "(check the spelling; --collect-only lists each job's flags)"
)


def _warn_unused_train_args(
    config: pytest.Config, settings: jobs.Settings, specs: dict[Path, list[jobs.JobSpec]]
) -> None:
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


def _flag_cache_file(config: pytest.Config) -> Path | None:
    """``.pytest_cache/d/training_plugin/flags.json`` (None with ``-p no:cacheprovider``)."""
    cache = getattr(config, "cache", None)
    if cache is None:
        return None
    try:
        return Path(cache.mkdir(CACHE_DIR)) / "flags.json"
    except OSError:
        return None


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


@pytest.hookimpl(tryfirst=True)
def pytest_sessionstart(session: pytest.Session) -> None:
    """Discover scripts, analyze their flags, build job specs; raise usage errors early."""
    config = session.config
    if pytest_compat.is_controller(config):
        hijack = pytest_compat.rootdir_hijack(config)
        if hijack is not None:
            raise pytest.UsageError(hijack)
    table = config.stash[_TABLE_KEY]
    if isinstance(table, pytest.UsageError):
        raise table
    settings = _settings(config)
    if settings.output_dir.is_file():
        raise pytest.UsageError(MSG_OUTPUT_DIR_IS_FILE.format(path=settings.output_dir))
    rootdir = settings.rootdir
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
    scripts = discovery.discover(
        roots, rootdir=rootdir, pattern=pattern, skip=skip, check_roots=training_only,
        norecursedirs=config.getini("norecursedirs"),
        unique_ids=config.getini("training_unique_ids"),
    )
    _load_conftests(config, {s.path.parent for s in scripts})
    if _ignore_rules_exist(config):
        # --ignore, --ignore-glob, collect_ignore, plugins: pytest's own rules, per script
        ignore = config.hook.pytest_ignore_collect
        scripts = [s for s in scripts if not ignore(collection_path=s.path, config=config)]
    cache_file = _flag_cache_file(config)
    flag_cache = FlagCache(Analyzer(rootdir), FlagCache.read(cache_file))
    specs = jobs.build_specs(
        scripts, table, settings, flag_cache.get,
        pyproject=str(rootdir / "pyproject.toml"), restrict=restrict,
    )
    if cache_file is not None and flag_cache.changed and pytest_compat.is_controller(config):
        flag_cache.write(cache_file)
    jobs.check_train_args(specs)
    if pytest_compat.is_controller(config):
        _warn_unused_train_args(config, settings, specs)
    config.stash[_STATE_KEY] = _State(
        settings, specs, training_only,
        [discovery.relpath(Path(os.path.normpath(rootdir / r)), rootdir) for r in roots],
    )
    if settings.cluster and pytest_compat.is_controller(config):
        items_mod.executor_of(config)  # connect now: a bad address is a usage error (exit 4)
    if training_only:
        # Collect the training jobs only, not the test suite: one collector at rootdir
        # (pytest_collect_directory) yields them all; pytest walks nothing.  The header's
        # "testpaths: tests" would be wrong; the training line says where the jobs come from.
        pytest_compat.collect_from(config, rootdir)


@pytest.hookimpl(tryfirst=True)
def pytest_collect_directory(path: Path, parent: pytest.Collector) -> pytest.Collector | None:
    """Training-only sessions: every job from one ``TrainingRoot`` (no walk, no File nodes)."""
    state = parent.config.stash.get(_STATE_KEY, None)
    if state is None or not state.training_only or path != state.settings.rootdir:
        return None
    return items_mod.TrainingRoot.from_parent(parent, path=path, specs=state.specs)


@pytest.hookimpl(wrapper=True)
def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> Any:
    """Training scripts become ``TrainingFile``s (never python test modules)."""
    result = yield
    state = parent.config.stash.get(_STATE_KEY, None)
    if state is None:
        return result
    specs = state.by_path.get(str(file_path))
    if specs is None:
        return result
    kept = [node for node in result or [] if not isinstance(node, pytest.Module)]
    kept.append(items_mod.TrainingFile.from_parent(parent, path=Path(file_path), specs=specs))
    return kept


def pytest_report_header(config: pytest.Config) -> list[str] | None:
    """One header line: how many jobs, from where, output to where."""
    state = config.stash.get(_STATE_KEY, None)
    if state is None:
        return None
    count = sum(len(s) for s in state.specs.values())
    where = ", ".join(state.roots) or "."
    lines = [f"training: {count} jobs from {where}; output: {state.settings.output_dir}"]
    executor = config.stash.get(items_mod.EXECUTOR_KEY, None)
    if executor is not None and hasattr(executor, "describe"):
        lines.append(f"training: {executor.describe()}")
    return lines


def pytest_report_collectionfinish(
    config: pytest.Config, items: list[pytest.Item]
) -> list[str] | None:
    """With ``--collect-only`` (not -q): each job's exact command and its detected flags."""
    if not config.getoption("collectonly") or config.get_verbosity() < 0:
        return None
    lines: list[str] = []
    cluster = ray_address(config) is not None
    executor = config.stash.get(items_mod.EXECUTOR_KEY, None) if cluster else None
    for item in items:
        if not isinstance(item, items_mod.TrainingItem):
            continue
        spec = item.spec
        lines.append(f"job {spec.id}: {spec.command}")
        if spec.qualified:
            lines.append(f"    id: qualified by folder (another script is also named "
                         f"{os.path.basename(spec.relpath)})")
        lines.append(f"    flags: {spec.parser.describe()}")
        if cluster or spec.resources != {"cpus": 1}:
            asked = ", ".join(f"{k}={v}" for k, v in spec.resources.items())
            lines.append(f"    resources: {asked}")
        if executor is not None:
            lines.append(f"    runs on: {executor.placement(item.job_run())}")
        for note in spec.notes:
            lines.append(f"    note: {note}")
        if spec.missing_required:
            lines.append(f"    WILL FAIL: {spec.missing_message()}")
    return lines or None


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    """When nothing was selected, say which job ids exist."""
    state = config.stash.get(_STATE_KEY, None)
    if state is None or exitstatus != pytest.ExitCode.NO_TESTS_COLLECTED:
        return
    ids = state.ids
    if not ids:
        where = ", ".join(state.roots) or "."
        terminalreporter.write_line(
            MSG_NO_SCRIPTS.format(glob=config.getini("training_glob"), where=where)
        )
        return
    selection = []
    if config.getoption("keyword"):
        selection.append(f"-k {config.getoption('keyword')!r}")
    if config.getoption("markexpr"):
        selection.append(f"-m {config.getoption('markexpr')!r}")
    what = " ".join(selection) or "the selection"
    terminalreporter.write_line(MSG_NO_MATCH.format(what=what, ids=", ".join(ids)))
