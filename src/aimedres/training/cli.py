"""The command line shared by every training job: ``--epochs --folds --repeats --seed
--output-dir --n-jobs``, the output directory, and the entry-point wrapper :func:`run`."""
from __future__ import annotations

import argparse
import functools
import os
import sys
from pathlib import Path
from typing import Any, Callable, NoReturn

from aimedres.training.data import DataError


def default_n_jobs() -> int:
    """Cores this job is given: ``OMP_NUM_THREADS`` if set (by the orchestrator), else the CPU affinity."""
    env = os.environ.get("OMP_NUM_THREADS", "").strip()
    if env:
        try:
            value = int(env)
            if value >= 1:
                return value
        except ValueError:
            pass
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def _int_at_least(minimum: int, what: str) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{what} must be an integer, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{what} must be >= {minimum}, got {value}")
        return value

    parse.__name__ = what  # argparse uses it in messages
    return parse


SHARED_GROUP_TITLE = "shared training options"


def _shared_group(parser: argparse.ArgumentParser) -> Any:
    """The parser's "shared training options" group (created once)."""
    for group in parser._action_groups:  # argparse offers no public lookup
        if group.title == SHARED_GROUP_TITLE:
            return group
    return parser.add_argument_group(SHARED_GROUP_TITLE)


def add_epochs_arg(parser: argparse.ArgumentParser, default: int) -> None:
    """Add ``--epochs N`` (>= 1): network epochs / boosting rounds of the iterative learners."""
    _shared_group(parser).add_argument(
        "--epochs", type=_int_at_least(1, "epochs"), default=default, metavar="N",
        help=f"training iterations of the iterative learners: epochs of the neural network and "
             f"boosting rounds of gradient boosting (>= 1, default {default})",
    )


def add_folds_arg(parser: argparse.ArgumentParser, default: int = 5) -> None:
    """Add ``--folds K`` (>= 2): stratified cross-validation folds."""
    _shared_group(parser).add_argument(
        "--folds", type=_int_at_least(2, "folds"), default=default, metavar="K",
        help=f"number of stratified cross-validation folds; every model is scored on the same "
             f"folds, preprocessing fitted inside each fold (>= 2, default {default})",
    )


def add_repeats_arg(parser: argparse.ArgumentParser, default: int = 5) -> None:
    """Add ``--repeats R`` (>= 1): repeats of the outer cross-validation (new fold assignment each)."""
    _shared_group(parser).add_argument(
        "--repeats", type=_int_at_least(1, "repeats"), default=default, metavar="R",
        help=f"repeats of the outer cross-validation, each with a new fold assignment; the figures "
             f"are means over all folds of all repeats (>= 1, default {default})",
    )


def add_seed_output_args(parser: argparse.ArgumentParser) -> None:
    """Add ``--seed S`` (default 42) and ``--output-dir DIR``."""
    group = _shared_group(parser)
    group.add_argument(
        "--seed", type=int, default=42, metavar="S",
        help="random seed for the test split, fold assignment, models and networks; same seed, same "
             "metrics on one machine with one build of the libraries (default 42)",
    )
    group.add_argument(
        "--output-dir", type=Path, default=None, metavar="DIR",
        help="directory for metrics.json, the model and manifest.json (default: $TRAINING_OUTPUT_DIR, "
             "else training-results/<job> under the repository root)",
    )


def add_n_jobs_arg(parser: argparse.ArgumentParser) -> None:
    """Add ``--n-jobs J`` (>= 1, default :func:`default_n_jobs`)."""
    _shared_group(parser).add_argument(
        "--n-jobs", type=_int_at_least(1, "n-jobs"), default=default_n_jobs(), metavar="J",
        help="outer CV folds fitted at once, each in its own single-threaded process (the figures "
             "do not depend on it); default: the cores this job is given ($OMP_NUM_THREADS if set, else the CPU affinity, "
             "here %(default)s)",
    )


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"test-fraction must be a number, got {text!r}") from None
    if not 0.0 <= value <= 0.5:
        raise argparse.ArgumentTypeError(f"test-fraction must be in [0, 0.5], got {value}")
    return value


def add_test_fraction_arg(parser: argparse.ArgumentParser, default: float = 0.2) -> None:
    """Add ``--test-fraction F``: the share held out as the untouched test set."""
    _shared_group(parser).add_argument(
        "--test-fraction", type=_fraction, default=default, metavar="F",
        help=f"share of the rows (subjects, when grouped) held out, stratified and seeded, BEFORE any "
             f"choice and scored once by the final model; a data set that ships its own test set uses "
             f"that instead; 0: no test set (0..0.5, default {default})",
    )


def add_common_args(
    parser: argparse.ArgumentParser,
    *,
    epochs: int | None,
    folds: int | None = 5,
    repeats: int = 5,
    n_jobs: bool = True,
) -> argparse.ArgumentParser:
    """Add the shared flags of every training job to ``parser``.

    Args:
        epochs: default of ``--epochs`` (network epochs / boosting rounds); None: no such flag.
        folds: default of ``--folds`` (stratified CV folds); None: no such flag (nor ``--repeats``,
            nor ``--test-fraction``).
        repeats: default of ``--repeats`` (repeats of the outer CV).
        n_jobs: whether to add ``--n-jobs`` (default: :func:`default_n_jobs`).

    Note for jobs WITHOUT one of these flags: the orchestrator learns a script's flags statically
    and cannot see that ``epochs=None`` skips ``--epochs``, so it would forward ``--epochs`` to a
    script that rejects it. Such scripts call the single-flag helpers instead
    (:func:`add_epochs_arg`, :func:`add_folds_arg`, :func:`add_seed_output_args`,
    :func:`add_n_jobs_arg`), which state exactly what the parser accepts.
    """
    if epochs is not None:
        add_epochs_arg(parser, epochs)
    if folds is not None:
        add_folds_arg(parser, folds)
        add_repeats_arg(parser, repeats)
        add_test_fraction_arg(parser)
    add_seed_output_args(parser)
    if n_jobs:
        add_n_jobs_arg(parser)
    return parser


def repo_root() -> Path:
    """The repository root, derived from this file's location (``src/aimedres/training/common.py``).

    When the package is installed outside a checkout (no ``pyproject.toml`` + ``src/aimedres`` above
    this file), the current directory is used: there is no repository to anchor to.
    """
    here = Path(__file__).resolve()
    for parent in here.parents:
        if (parent / "pyproject.toml").is_file() and (parent / "src" / "aimedres").is_dir():
            return parent
    return Path.cwd()


def output_dir(args: argparse.Namespace, job_id: str) -> Path:
    """Output directory of a job: ``--output-dir``, else ``$TRAINING_OUTPUT_DIR``, else
    ``<repo root>/training-results/<job_id>`` (not created here)."""
    given = getattr(args, "output_dir", None)
    if given:
        return Path(given).expanduser().resolve()
    env = os.environ.get("TRAINING_OUTPUT_DIR", "").strip()
    if env:
        return Path(env).expanduser().resolve()
    return repo_root() / "training-results" / job_id


# --------------------------------------------------------------------------------------------
# Entry point helpers
# --------------------------------------------------------------------------------------------
def run(main: Callable[[], int | None]) -> NoReturn:
    """Run a script's ``main()`` and exit: 0 on success, 2 with ``error: ...`` on a DataError,
    130 on Ctrl-C. Other exceptions propagate (traceback, exit 1)."""
    try:
        code = main()
    except DataError as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        sys.exit(2)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr, flush=True)
        sys.exit(130)
    sys.exit(int(code or 0))


def main_guard(fn: Callable[..., int | None]) -> Callable[..., NoReturn]:
    """Decorator form of :func:`run`: ``@main_guard def main(): ...``."""

    @functools.wraps(fn)
    def wrapper(*a: Any, **kw: Any) -> NoReturn:
        run(lambda: fn(*a, **kw))

    return wrapper
