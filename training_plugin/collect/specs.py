"""Job specs: everything needed to run (or list) one training job, built from the
discovered scripts, the job table and the session's settings.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import shlex
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from training_plugin import flags as flags_mod
from training_plugin.collect import sweeps
from training_plugin.collect.argv import build_argv, switch_value
from training_plugin.collect.discovery import Script, check_unique, relpath
from training_plugin.collect.table import TABLE, JobConfig
from training_plugin.flags import ParserInfo
from training_plugin.options import Settings, int_at_least

MSG_TABLE_UNKNOWN_ID = (
    "{file}: [{table}] names no discovered training script (job ids: {ids}); "
    "add `script = \"path/to/train_x.py\"` to declare a variant job, or rename the table "
    "to a discovered id"
)
MSG_UNSAFE_ID = (
    "{script}: the job id {id!r} is not a safe folder name under the output folder (an id "
    "may not be empty, '.' or '..', nor hold a path separator or a NUL); rename the file"
)
MSG_ID_OUTSIDE = "{script}: the output folder of job {id!r}, {path}, lies outside {root}"
MSG_MISSING_REQUIRED = (
    "job {id!r} was not started: {script} requires {flags}, which neither the shared "
    "settings (--epochs/--folds/--seed/--output-dir/--train-arg) nor the job's configured "
    "args supply; add {example} to `args` in [{table}.{id}] in pyproject.toml"
)


@dataclass(frozen=True)
class JobSpec:
    """Everything needed to run (or list) one training job.

    The command (``argv``), the required flags nobody supplies and the notes are worked out
    from the parser and the settings on first use: listing a thousand job ids needs none of
    them.
    """

    id: str
    script: Path  #: absolute
    env: dict[str, str]  #: the job table's `env` (applied last, it wins)
    timeout: float | None
    markers: tuple[str, ...]
    output_dir: Path  #: <output-dir>/<id>/
    settings: Settings
    relpath: str = ""  #: script path relative to rootdir (posix)
    parser: ParserInfo = field(default_factory=lambda: ParserInfo(flags_mod.NO_PARSER))
    configured_args: tuple[str, ...] = ()
    declared: bool = False  #: a variant declared with `script = ...` in the job table
    config: JobConfig | None = None  #: its job-table entry, if any
    qualified: bool = False  #: the id carries parent folders (another script has its stem)
    job: str = ""  #: the job's id (a cell's ``id`` is ``<job>[<cell>]``); set from ``id``
    cell: str = ""  #: the cell's name (``lr_0.001-seed_2``), "" for a job that is not swept
    params: tuple[tuple[str, Any], ...] = ()  #: a cell's parameters, name -> JSON value
    sweep_notes: tuple[str, ...] = ()  #: why a parameter does not vary this job
    #: the cells of this cell's configuration (the same values but the seed): id -> seed
    siblings: tuple[tuple[str, Any], ...] = ()

    def __post_init__(self) -> None:
        if not self.job:
            object.__setattr__(self, "job", self.id)

    @functools.cached_property
    def resources(self) -> dict[str, Any]:
        """Cluster resources asked for (``cpus`` defaults to 1)."""
        return (self.config or JobConfig(id=self.id)).resource_request()

    @property
    def cluster_threads(self) -> int:
        """The job's thread budget on a cluster: its ``cpus``, at least 1."""
        return max(1, int(self.resources["cpus"]))

    @functools.cached_property
    def _built(self) -> tuple[list[str], tuple[str, ...], tuple[str, ...]]:
        settings = self.settings
        if settings.cluster:
            settings = dataclasses.replace(settings, threads=self.cluster_threads)
        return build_argv(self.relpath, self.parser, settings, self.configured_args,
                          self.output_dir)

    @property
    def argv(self) -> list[str]:
        """``[python, script, shared flags the script accepts, configured args]``."""
        return self._built[0]

    @property
    def missing_required(self) -> tuple[str, ...]:
        """Required flags that neither the shared settings nor the configured args supply."""
        return self._built[1]

    @property
    def notes(self) -> tuple[str, ...]:
        """What was not forwarded and why (for ``--collect-only``)."""
        return self._built[2]

    @property
    def log_path(self) -> Path:
        """<output-dir>/<id>/train.log"""
        return self.output_dir / "train.log"

    @property
    def command(self) -> str:
        """The command, shell-quoted."""
        return shlex.join(self.argv)

    def missing_message(self) -> str:
        """Why the job cannot start (required flags nobody supplies)."""
        example = ", ".join(f'"{f}", "..."' for f in self.missing_required)
        return MSG_MISSING_REQUIRED.format(
            id=self.id,
            script=self.relpath,
            flags=" and ".join(self.missing_required),
            example=example,
            table=TABLE,
        )


def check_train_args(specs: Mapping[Path, list[JobSpec]]) -> None:
    """Raise ``pytest.UsageError`` for a ``--train-arg NAME=VALUE`` sent to a job whose
    ``--NAME`` is a switch when VALUE is not a yes/no word, naming the job."""
    for group in specs.values():
        for spec in group:
            if not spec.parser.resolved:
                continue
            for name, value in spec.settings.train_args:
                flag = spec.parser.find(name)
                if flag is not None and not flag.takes_value:
                    switch_value(name, value, (flag.long_options or flag.options)[0],
                                 f"job {spec.id!r}")


def check_id(job: str, script: str, qualified: bool, output_dir: Path) -> Path:
    """The job's output folder, ``<output-dir>/<id>``; ``pytest.UsageError`` naming the
    script for an id that is not a safe path component (a qualified id may hold '/' between
    folder names, each safe) or an output folder outside ``output_dir``."""
    parts = job.split("/") if qualified else [job]
    if any(part in ("", ".", "..") or "\0" in part or "/" in part or "\\" in part
           or (os.altsep and os.altsep in part) for part in parts):
        raise pytest.UsageError(MSG_UNSAFE_ID.format(script=script, id=job))
    root = Path(os.path.abspath(output_dir))
    path = Path(os.path.normpath(root / job))
    if root not in path.parents:
        raise pytest.UsageError(MSG_ID_OUTSIDE.format(script=script, id=job, path=path,
                                                      root=root))
    return path


def make_spec(
    job: str,
    script: Path,
    *,
    parser: ParserInfo,
    settings: Settings,
    config: JobConfig | None,
    declared: bool = False,
    qualified: bool = False,
) -> JobSpec:
    """The spec of one job: command, env, timeout, markers, output locations.  Raises
    ``pytest.UsageError`` for an id that is no safe folder name (``check_id``)."""
    check_id(job, relpath(script, settings.rootdir), qualified, settings.output_dir)
    return JobSpec(
        id=job,
        script=script,
        env=dict(config.env) if config else {},
        timeout=config.timeout if config else None,
        markers=config.markers if config else (),
        output_dir=settings.output_dir / job,
        settings=settings,
        relpath=relpath(script, settings.rootdir),
        parser=parser,
        configured_args=tuple(config.args) if config else (),
        declared=declared,
        config=config,
        qualified=qualified,
    )


def build_specs(
    scripts: list[Script],
    table: Mapping[str, JobConfig],
    settings: Settings,
    analyze: Any,
    *,
    pyproject: str = "pyproject.toml",
    restrict: Iterable[Path] | None = None,
    sweep: sweeps.Sweep | None = None,
) -> dict[Path, list[JobSpec]]:
    """Job specs per script file (discovered jobs first, then declared variants, by id).

    ``analyze(path) -> ParserInfo`` supplies the flags.  Raises ``pytest.UsageError`` for a
    table that names neither a discovered id nor a script, and for duplicate ids.
    ``restrict`` (explicit command-line roots) limits declared variants to files under them.
    ``sweep`` (the command line's) and each job's table ``sweep`` turn a job into its cells
    (``cell_specs``); more cells than ``sweep.max_cells`` is a usage error.
    """
    by_id = {s.id: s for s in scripts}
    specs: dict[Path, list[JobSpec]] = {}
    parsers: dict[Path, ParserInfo] = {}

    def parser_of(path: Path) -> ParserInfo:
        if path not in parsers:
            parsers[path] = analyze(path)
        return parsers[path]

    for script in scripts:
        cfg = table.get(script.id)
        if cfg is not None and cfg.script is not None and cfg.script != script.path:
            other = Script(cfg.script, relpath(cfg.script, settings.rootdir), script.id)
            check_unique([script, other])
        specs.setdefault(script.path, []).append(
            make_spec(script.id, script.path, parser=parser_of(script.path), settings=settings,
                      config=cfg, qualified=script.qualified)
        )
    roots = [Path(os.path.abspath(r)) for r in restrict] if restrict is not None else None
    for job in sorted(table):
        cfg = table[job]
        if job in by_id:
            continue
        if cfg.script is None:
            if roots is not None:
                continue  # explicit paths: the job may live elsewhere
            ids = ", ".join(sorted(by_id)) or "none found"
            raise pytest.UsageError(
                MSG_TABLE_UNKNOWN_ID.format(file=pyproject, table=f"{TABLE}.{job}", ids=ids)
            )
        if roots is not None and not any(
            cfg.script == r or r in cfg.script.parents for r in roots
        ):
            continue
        specs.setdefault(cfg.script, []).append(
            make_spec(job, cfg.script, parser=parser_of(cfg.script), settings=settings,
                      config=cfg, declared=True)
        )
    ordered = sorted(specs, key=lambda p: relpath(p, settings.rootdir))
    sweep = sweep or sweeps.Sweep()
    counts: dict[str, int] = {}
    out: dict[Path, list[JobSpec]] = {}
    for path in ordered:
        out[path] = []
        for spec in specs[path]:
            made = cell_specs(spec, sweep)
            if made[0].cell:
                counts[spec.id] = len(made)
            out[path].extend(made)
    sweeps.check_count(counts, sweep.max_cells)
    return out


MSG_NOT_SWEPT_FLAG = "not swept: no --{name}"
MSG_NOT_SWEPT_ARGS = "not swept on {name}: its configured args set {option}"
MSG_NOT_SWEPT_STATIC = "not swept: its command line cannot be read statically"
MSG_NOT_REPEATED = "not repeated: no seed flag (identical reruns measure nothing)"
#: The shared settings a sweep can vary, with their smallest value.
SWEPT_SETTINGS = {"epochs": 1, "folds": 2, "seed": None}


def _swept_flag(spec: JobSpec, key: str) -> flags_mod.Flag | None:
    flags = spec.parser.flags
    if key in SWEPT_SETTINGS:
        return flags_mod.find_shared(flags, key, dict(spec.settings.flag_aliases).get(key, ()))
    return flags_mod.find_flag(flags, key)


def _why_not(spec: JobSpec, axis: sweeps.Axis) -> str | None:
    """Why ``axis`` does not vary this job (None: it does)."""
    if not spec.parser.resolved:
        return MSG_NOT_SWEPT_STATIC
    flag = _swept_flag(spec, axis.key)
    if flag is None:
        return MSG_NOT_SWEPT_FLAG.format(name=axis.name)
    given = set(flags_mod.iter_option_tokens(spec.configured_args))
    for option in flag.options:
        if option in given:
            return MSG_NOT_SWEPT_ARGS.format(name=axis.name, option=option)
    return None


def repeat_start(spec: JobSpec) -> int | None:
    """The first seed of ``--repeats``: ``--seed``, else the job's own default seed (its seed
    flag's literal default, else 0); None for a job without a seed flag."""
    flag = _swept_flag(spec, "seed") if spec.parser.resolved else None
    if flag is None:
        return None
    if spec.settings.seed is not None:
        return spec.settings.seed
    default = flag.default
    return default if isinstance(default, int) and not isinstance(default, bool) else 0


def cell_specs(spec: JobSpec, sweep: sweeps.Sweep) -> list[JobSpec]:
    """The cells of one job (the job itself, with notes, when nothing varies it)."""
    table = spec.config.sweep if spec.config else ()
    command_line = list(sweep.axes)
    notes: list[str] = []
    if sweep.repeats:
        start = repeat_start(spec)
        if start is None:
            notes.append(MSG_NOT_REPEATED if spec.parser.resolved else MSG_NOT_SWEPT_STATIC)
            table = tuple(a for a in table if a.key != "seed")
        else:
            command_line.append(sweeps.seed_axis(start, sweep.repeats))
    axes = []
    for axis in sweeps.combine(table, command_line):
        why = _why_not(spec, axis)
        if why is None:
            axes.append(axis)
        elif why not in notes:
            notes.append(why)
    if not axes:
        return [dataclasses.replace(spec, sweep_notes=tuple(notes))] if notes else [spec]
    made = [_cell(spec, params, tuple(notes)) for params in sweeps.cells(axes)]
    seed = next((a.name for a in axes if a.key == "seed"), None)
    if seed is None:
        return made

    def rest(cell: JobSpec) -> str:  # the cell's values but the seed
        return repr([(n, v) for n, v in cell.params if n != seed])

    groups: dict[str, tuple[tuple[str, Any], ...]] = {}
    for cell in made:
        groups[rest(cell)] = (*groups.get(rest(cell), ()), (cell.id, dict(cell.params)[seed]))
    return [dataclasses.replace(cell, siblings=groups[rest(cell)]) for cell in made]


def _cell(spec: JobSpec, params: tuple[tuple[str, sweeps.Value], ...],
          notes: tuple[str, ...]) -> JobSpec:
    """One cell of a job: its settings carry the cell's values (a shared setting in the
    script's own spelling, any other name as ``--train-arg`` does)."""
    settings = spec.settings
    changes: dict[str, Any] = {}
    train_args = list(settings.train_args)
    for name, value in params:
        key = sweeps.key_of(name)
        if key in SWEPT_SETTINGS:
            changes[key] = int_at_least(f"--sweep {name}", SWEPT_SETTINGS[key])(value.text)
        else:
            train_args = [(n, v) for n, v in train_args if sweeps.key_of(n) != key]
            train_args.append((name, value.text))
    settings = dataclasses.replace(settings, train_args=tuple(train_args), **changes)
    cell = sweeps.cell_name(params)
    return dataclasses.replace(
        spec, id=f"{spec.id}[{cell}]", job=spec.id, cell=cell, settings=settings,
        output_dir=spec.output_dir / cell, params=tuple((n, v.value) for n, v in params),
        sweep_notes=notes,
    )
