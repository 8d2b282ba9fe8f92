"""Sweeps: the grid of a job and the names of its cells (pure logic, no pytest nodes).

A job's grid comes from ``--sweep NAME=V1,V2`` / ``NAME=START:STOP[:STEP]`` (repeatable),
``--repeats N`` (``seed`` from S to S+N-1) and the job table's ``sweep = { NAME = [...] }``;
the command line wins per parameter.  Each cell of the grid is one item,
``<job>[<name>_<value>-<name>_<value>]``, parameters in declared order.  Mistakes are
``pytest.UsageError`` (exit 4) naming where they came from.
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pytest

from training_plugin import pytest_compat

#: Default of the ini key ``training_max_cells``.
DEFAULT_MAX_CELLS = 1000
_NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_-]*$")
#: What a value may hold: it becomes part of the cell's id and of its folder name.
_VALUE_RE = re.compile(r"^[A-Za-z0-9_.+-]+$")
_INT_RE = re.compile(r"^[+-]?\d+$")

MSG_SWEEP_FORM = (
    "{source}: expected NAME=V1,V2,... or NAME=START:STOP[:STEP], got {text!r}; "
    "e.g. --sweep lr=0.001,0.0003 or --sweep seed=0:5"
)
MSG_EMPTY = "{source}: {name} has no values; give at least one (e.g. {name}=1,2)"
MSG_BAD_RANGE = (
    "{source}: {name}={text} is not a range START:STOP[:STEP] of whole numbers with at least "
    "one value (Python's range: STOP is left out, STEP is not 0); e.g. {name}=0:5"
)
MSG_BAD_VALUE = (
    "{source}: {name} value {value!r} cannot name a cell: a value may hold letters, digits "
    "and '_', '.', '+', '-' only (it is part of the cell's id and folder)"
)
MSG_DUPLICATE = "{source}: {name} lists {value!r} twice; each cell must differ"
MSG_TWICE = "--sweep {name} is given twice; give all its values in one --sweep"
MSG_NOT_SWEPT = "output-dir cannot be swept: each cell has its own folder <output-dir>/<job>/<cell>/"
MSG_REPEATS_AND_SEED = (
    "--repeats and --sweep seed both set the seeds; give one (--repeats 5 is --sweep seed=S:S+5)"
)
MSG_SEED_SWEPT = "--seed {seed} is not used by the jobs --sweep seed varies: their cells set it"
MSG_TOO_MANY = (
    "the sweep makes {count} cells ({jobs}), more than training_max_cells = {limit}; "
    "narrow the grid (-k, fewer values) or raise training_max_cells in the ini file"
)


@dataclass(frozen=True)
class Value:
    """One value of a parameter: its text (in the command and the cell id) and its JSON value."""

    text: str
    value: Any


@dataclass(frozen=True)
class Axis:
    """One swept parameter: its name (as given, without dashes) and its values, in order."""

    name: str
    values: tuple[Value, ...]
    source: str  #: where it was declared, for messages

    @property
    def key(self) -> str:
        """The name compared across sources: ``learning_rate`` and ``learning-rate`` agree."""
        return key_of(self.name)


def key_of(name: str) -> str:
    """A parameter's name without dashes, ``_`` spelled ``-``."""
    return name.lstrip("-").replace("_", "-")


def _json_value(text: str) -> Any:
    """The JSON value of a command-line value: an int, a float, else the text."""
    if _INT_RE.match(text):
        return int(text)
    try:
        number = float(text)
    except ValueError:
        return text
    return number if math.isfinite(number) else text


def _check_values(name: str, values: Sequence[Value], source: str) -> tuple[Value, ...]:
    if not values:
        raise pytest.UsageError(MSG_EMPTY.format(source=source, name=name))
    seen: set[str] = set()
    for value in values:
        if not _VALUE_RE.match(value.text):
            raise pytest.UsageError(MSG_BAD_VALUE.format(source=source, name=name,
                                                         value=value.text))
        if value.text in seen:
            raise pytest.UsageError(MSG_DUPLICATE.format(source=source, name=name,
                                                         value=value.text))
        seen.add(value.text)
    return tuple(values)


def parse_range(name: str, text: str, source: str) -> tuple[Value, ...]:
    """``START:STOP[:STEP]`` as Python's ``range``; a usage error for anything else or for
    a range without values."""
    parts = text.split(":")
    if len(parts) not in (2, 3) or not all(_INT_RE.match(p.strip()) for p in parts):
        raise pytest.UsageError(MSG_BAD_RANGE.format(source=source, name=name, text=text))
    numbers = [int(p) for p in parts]
    if len(numbers) == 3 and numbers[2] == 0:
        raise pytest.UsageError(MSG_BAD_RANGE.format(source=source, name=name, text=text))
    values = [Value(str(n), n) for n in range(*numbers)]
    if not values:
        raise pytest.UsageError(MSG_BAD_RANGE.format(source=source, name=name, text=text))
    return tuple(values)


def _check_name(name: str, text: str, source: str) -> str:
    name = name.strip()
    name = name.removeprefix("--")
    if not _NAME_RE.match(name):
        raise pytest.UsageError(MSG_SWEEP_FORM.format(source=source, text=text))
    if key_of(name) == "output-dir":
        raise pytest.UsageError(MSG_NOT_SWEPT)
    return name


def parse_sweep(text: str) -> Axis:
    """An argparse type: ``NAME=V1,V2,...`` or ``NAME=START:STOP[:STEP]``."""
    source = "--sweep"
    name, sep, rest = text.partition("=")
    if not sep:
        raise pytest.UsageError(MSG_SWEEP_FORM.format(source=source, text=text))
    name = _check_name(name, text, source)
    source = f"--sweep {name}"
    rest = rest.strip()
    if ":" in rest and "," not in rest:
        return Axis(name, parse_range(name, rest, source), source)
    texts = [t.strip() for t in rest.split(",")] if rest else []
    if any(not t for t in texts):
        raise pytest.UsageError(MSG_EMPTY.format(source=source, name=name)
                                if not rest.replace(",", "").strip()
                                else MSG_SWEEP_FORM.format(source=source, text=text))
    return Axis(name, _check_values(name, [Value(t, _json_value(t)) for t in texts], source),
                source)


def _table_value(value: Any) -> Value | None:
    """A job-table value (number, string or boolean) as a ``Value``; None for anything else."""
    if isinstance(value, bool):
        return Value("true" if value else "false", value)
    if isinstance(value, int):
        return Value(str(value), value)
    if isinstance(value, float):
        return Value(repr(value), value) if math.isfinite(value) else None
    if isinstance(value, str):
        return Value(value, _json_value(value))
    return None


def table_axes(raw: Any, source: str) -> tuple[Axis, ...]:
    """The job table's ``sweep``: a table of NAME = a list of values or a "START:STOP[:STEP]"
    range; a usage error naming ``source`` for anything else."""
    if not isinstance(raw, dict):
        raise pytest.UsageError(f"{source} must be a table of NAME = [values] "
                                "(e.g. sweep = {{ lr = [0.001, 0.0003], seed = [0, 1, 2] }})")
    axes = []
    for name, values in raw.items():
        name = _check_name(str(name), f"{name} = {values!r}", source)
        where = f"{source} {name}"
        if isinstance(values, str):
            axes.append(Axis(name, parse_range(name, values, where), where))
            continue
        if not isinstance(values, list):
            raise pytest.UsageError(f"{where} must be a list of values or a \"START:STOP\" "
                                    f"range, got {values!r}")
        parsed = [_table_value(v) for v in values]
        if any(p is None for p in parsed):
            raise pytest.UsageError(f"{where}: values must be numbers, strings or booleans, "
                                    f"got {values!r}")
        axes.append(Axis(name, _check_values(name, [p for p in parsed if p], where), where))
    return tuple(axes)


@dataclass(frozen=True)
class Sweep:
    """The session's sweep from the command line (the job table adds its own per job)."""

    axes: tuple[Axis, ...] = ()
    repeats: int | None = None
    max_cells: int = DEFAULT_MAX_CELLS

    def __post_init__(self) -> None:
        keys = [a.key for a in self.axes]
        for key in keys:
            if keys.count(key) > 1:
                raise pytest.UsageError(MSG_TWICE.format(name=key))
        if self.repeats is not None and "seed" in keys:
            raise pytest.UsageError(MSG_REPEATS_AND_SEED)


def seed_axis(start: int, repeats: int) -> Axis:
    """``--repeats N`` from seed ``start``: ``seed`` = start .. start+N-1."""
    return Axis("seed", tuple(Value(str(s), s) for s in range(start, start + repeats)),
                f"--repeats {repeats}")


def combine(table: Iterable[Axis], command_line: Iterable[Axis]) -> list[Axis]:
    """The axes of one job: the table's, in its order, with the command line's in place of a
    parameter both name, then the command line's other parameters in their order."""
    given = {a.key: a for a in command_line}
    out = [given.pop(a.key, a) for a in table]
    return out + list(given.values())


def cells(axes: Sequence[Axis]) -> list[tuple[tuple[str, Value], ...]]:
    """Every cell of the grid (the product of the axes), in order: each a tuple of
    ``(name, value)`` pairs in the axes' order."""
    if not axes:
        return []
    return [tuple(zip((a.name for a in axes), combo))
            for combo in itertools.product(*(a.values for a in axes))]


def cell_name(params: Iterable[tuple[str, Value]]) -> str:
    """``lr_0.001-seed_2``: the id's part in brackets, and the cell's folder."""
    return "-".join(f"{name}_{value.text}" for name, value in params)


def check_count(counts: Mapping[str, int], limit: int) -> None:
    """A usage error when the cells of all jobs (``counts``: job id -> cells) exceed
    ``limit``, stating the count."""
    total = sum(counts.values())
    if total > limit:
        top = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
        jobs = ", ".join(f"{job}: {n}" for job, n in top[:5]) + (", ..." if len(top) > 5 else "")
        raise pytest.UsageError(MSG_TOO_MANY.format(count=total, jobs=jobs, limit=limit))


def parse_max_cells(text: Any) -> int:
    """The ini key ``training_max_cells``: a whole number >= 1."""
    try:
        value = int(str(text).strip())
    except ValueError:
        value = 0
    if value < 1:
        raise pytest.UsageError(f"training_max_cells expects a whole number >= 1, got {text!r}")
    return value


def sweep_of(config: Any) -> Sweep:
    """The session's sweep: ``--sweep``, ``--repeats`` and the ini key ``training_max_cells``."""
    try:
        limit = config.getini("training_max_cells")
    except ValueError:  # the ini keys are not registered
        limit = DEFAULT_MAX_CELLS
    sweep = Sweep(axes=tuple(config.getoption("training_sweep", None) or ()),
                  repeats=config.getoption("training_repeats", None),
                  max_cells=parse_max_cells(limit or DEFAULT_MAX_CELLS))
    seed = config.getoption("seed", None)
    swept = any(a.key == "seed" for a in sweep.axes)
    if pytest_compat.is_controller(config) and seed is not None and swept:  # workers say nothing
        config.issue_config_time_warning(
            pytest.PytestConfigWarning(MSG_SEED_SWEPT.format(seed=seed)), stacklevel=2)
    return sweep
