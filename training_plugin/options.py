"""The core command-line options and ini keys, their validators, and the session's
``Settings``, built once.

Option parsers passed as argparse ``type=`` raise ``pytest.UsageError`` (exit 4) with the fix
in the message.  Each feature module (``features/``) declares its own options in the same
"training" group; :func:`add_ini_options` registers every ini key, the features' included, so
that a conftest can register them for plain ``pytest`` too.

``settings_of(config)`` is the one way to the session's settings: built on first use from the
command line and ini, kept in ``config.stash``, and the same object for every caller.
"""

from __future__ import annotations

import importlib
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from training_plugin.collect import sweeps
from training_plugin.run import budget

DEFAULT_GLOB = "train_*.py"
DEFAULT_OUTPUT_DIR = "training-results"
#: The feature plugin modules (``-p no:training_plugin.features.<name>`` turns one off).
FEATURES = ("gates", "baseline", "history", "fingerprint", "report", "tracking")
#: The shared settings a repository may spell its own way (ini ``training_flag_aliases``).
SHARED_SETTINGS = ("epochs", "folds", "seed", "output-dir")
_NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_-]*$")
_SETTINGS_KEY = pytest.StashKey["Settings"]()

HELP_RETRIES = ("re-run a job up to N more times after an infrastructure failure (a signal "
                "the plugin did not send, the OOM killer, a dead supervisor), never after "
                "its own; job-table `retries` wins (default 0)")
HELP_EPOCHS = "epochs for every job that accepts --epochs (int >= 1)"
HELP_FOLDS = "cross-validation folds for every job that accepts --folds (int >= 2)"
HELP_SEED = "random seed for every job that accepts --seed"
HELP_OUTPUT_DIR = (
    "root of the jobs' output directories (<dir>/<job id>/); relative to rootdir; "
    "default: ini training_output_dir or training-results"
)
HELP_TRAIN_ARG = "forward --NAME VALUE to every job that accepts --NAME (repeatable)"
HELP_SWEEP = (
    "vary NAME over values for every job that accepts --NAME: NAME=V1,V2,... or "
    "NAME=START:STOP[:STEP] (Python's range); repeatable, the grid is the product; each cell "
    "is an item <job>[<name>_<value>-...] writing to <output-dir>/<job>/<cell>/"
)
HELP_REPEATS = (
    "run every job that has a seed flag N times, seeds S..S+N-1 (S: --seed, else the job's "
    "own default seed); the same as --sweep seed=S:S+N"
)
HELP_MAX_CELLS = (
    "the most cells a session's sweeps may make (default 1000); more is a usage error"
)
HELP_RAY = (
    "run the jobs on a Ray cluster: auto, HOST:PORT, ray://HOST:PORT (what ray.init takes), "
    "or local (a private Ray instance for this session); default: ini training_ray_address"
)


# ---------------------------------------------------------------------------------------------
# validators (argparse `type=`)
# ---------------------------------------------------------------------------------------------
def int_at_least(option: str, minimum: int | None) -> Any:
    """An argparse type: a whole number, at least ``minimum``; else a usage error."""
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


def output_dir_value(text: str) -> str:
    """An argparse type: a non-empty directory."""
    if not text.strip():
        raise pytest.UsageError("--output-dir expects a directory, got ''; e.g. --output-dir out")
    return text


def train_arg(text: str) -> tuple[str, str]:
    """An argparse type: ``NAME=VALUE`` (a leading ``--`` on NAME is dropped)."""
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


# ---------------------------------------------------------------------------------------------
# registration
# ---------------------------------------------------------------------------------------------
def training_group(parser: pytest.Parser) -> pytest.OptionGroup:
    """The one option group of training_plugin and its features."""
    return parser.getgroup("training", "training jobs (training_plugin)")


def add_core_options(parser: pytest.Parser) -> None:
    """The core options of the "training" group."""
    group = training_group(parser)
    group.addoption("--epochs", type=int_at_least("--epochs", 1), default=None,
                    metavar="N", help=HELP_EPOCHS)
    group.addoption("--folds", type=int_at_least("--folds", 2), default=None,
                    metavar="K", help=HELP_FOLDS)
    group.addoption("--seed", type=int_at_least("--seed", None), default=None,
                    metavar="S", help=HELP_SEED)
    group.addoption("--output-dir", dest="training_output_dir", type=output_dir_value,
                    default=None, metavar="DIR", help=HELP_OUTPUT_DIR)
    group.addoption("--train-arg", dest="train_args", type=train_arg, action="append",
                    default=[], metavar="NAME=VALUE", help=HELP_TRAIN_ARG)
    group.addoption("--sweep", dest="training_sweep", type=sweeps.parse_sweep,
                    action="append", default=[], metavar="NAME=VALUES", help=HELP_SWEEP)
    group.addoption("--repeats", dest="training_repeats", type=int_at_least("--repeats", 1),
                    default=None, metavar="N", help=HELP_REPEATS)
    group.addoption("--ray", dest="training_ray", default=None, metavar="ADDRESS", help=HELP_RAY)
    group.addoption("--retries", dest="training_retries", type=int_at_least("--retries", 0),
                    default=None, metavar="N", help=HELP_RETRIES)


def add_core_ini(parser: pytest.Parser) -> None:
    """The core ``training_*`` ini keys."""
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
    parser.addini("training_require_entry_point", "collect only scripts: files with an entry "
                  "point (an if __name__ == \"__main__\" block, a top-level call such as main(), "
                  "@hydra.main); false: every file matching training_glob is a job",
                  type="bool", default=True)
    parser.addini("training_retries", HELP_RETRIES, default="0")
    parser.addini("training_max_cells", HELP_MAX_CELLS, default=str(sweeps.DEFAULT_MAX_CELLS))
    parser.addini("training_gpus", "GPU ids shared out between xdist workers when the "
                  "environment sets none (e.g. 0,1; none = no GPUs)", default="")
    parser.addini("training_ray_address", "Ray cluster address for the jobs (as --ray); "
                  "empty: run locally", default="")
    parser.addini("training_ray_queue", "under --ray, who queues the jobs: executor (default; "
                  "releases them longest first as the cluster has room) or ray (all to Ray at "
                  "once, for autoscaling clusters)", default="executor")


def feature_modules() -> list[Any]:
    """The feature plugin modules, imported (none imports a heavy library at import)."""
    return [importlib.import_module(f"training_plugin.features.{name}") for name in FEATURES]


def add_ini_options(parser: pytest.Parser) -> None:
    """Every ``training_*`` ini key, the features' included.

    Callable from a conftest's ``pytest_addoption`` so that plain ``pytest`` (without
    ``-p training_plugin``) does not warn about the keys in pytest.ini.
    """
    add_core_ini(parser)
    for module in feature_modules():
        module.add_ini(parser)


# ---------------------------------------------------------------------------------------------
# settings
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Settings:
    """Shared settings of a session, resolved from the command line and ini."""

    rootdir: Path
    output_dir: Path  #: absolute
    epochs: int | None = None
    folds: int | None = None
    seed: int | None = None
    train_args: tuple[tuple[str, str], ...] = ()
    #: a repository's own spellings of shared settings (ini ``training_flag_aliases``)
    flag_aliases: tuple[tuple[str, tuple[str, ...]], ...] = ()
    threads: int | None = None  #: forwarded as --n-jobs under xdist
    cluster: bool = False  #: jobs run on a cluster (--ray): --n-jobs is each job's ``cpus``
    ray_address: str | None = None  #: --ray, else ini training_ray_address; None: local


def _ini(config: pytest.Config, name: str, default: Any = "") -> Any:
    try:
        return config.getini(name)
    except ValueError:  # the ini keys are not registered
        return default


def output_dir_of(config: pytest.Config) -> Path:
    """The session's output directory, absolute: ``--output-dir``, else the ini key
    ``training_output_dir``, else ``training-results``; relative to rootdir."""
    out = config.getoption("training_output_dir", None) or _ini(config, "training_output_dir")
    out = str(out).strip() or DEFAULT_OUTPUT_DIR
    return Path(os.path.normpath(Path(config.rootpath) / os.path.expanduser(out)))


def ray_address(config: pytest.Config) -> str | None:
    """The Ray address of this session (``--ray``, else ini ``training_ray_address``), or
    None when the jobs run locally."""
    address = config.getoption("training_ray", None)
    if address is None:
        address = _ini(config, "training_ray_address")
    address = str(address).strip()
    return address or None


def flag_aliases(config: pytest.Config) -> tuple[tuple[str, tuple[str, ...]], ...]:
    """The ``training_flag_aliases`` ini key: ``<setting> = <option> ...`` per line."""
    aliases: dict[str, tuple[str, ...]] = {}
    for line in _ini(config, "training_flag_aliases", []):
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


def build_settings(config: pytest.Config) -> Settings:
    """The settings from the command line and ini (a usage error for a bad ini value)."""
    address = ray_address(config)
    return Settings(
        rootdir=Path(config.rootpath),
        output_dir=output_dir_of(config),
        epochs=config.getoption("epochs", None),
        folds=config.getoption("folds", None),
        seed=config.getoption("seed", None),
        train_args=tuple(config.getoption("train_args", None) or ()),
        flag_aliases=flag_aliases(config),
        threads=budget.threads_per_job(config),
        cluster=address is not None,
        ray_address=address,
    )


def settings_of(config: pytest.Config) -> Settings:
    """The session's settings, built once (on first use) and shared by every caller."""
    settings = config.stash.get(_SETTINGS_KEY, None)
    if settings is None:
        settings = config.stash[_SETTINGS_KEY] = build_settings(config)
    return settings
