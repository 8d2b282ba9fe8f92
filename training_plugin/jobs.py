"""Job specs: the job table in pyproject.toml, shared settings, command building, and the
pytest collection nodes (``TrainingRoot`` / ``TrainingFile`` / ``TrainingItem``) that run them.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import re
import shlex
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from training_plugin import flags as flags_mod
from training_plugin.discovery import Script, check_unique, relpath
from training_plugin.flags import ParserInfo

TABLE = "tool.training_plugin.jobs"
#: Allowed keys of a ``[tool.training_plugin.jobs.<id>]`` table.
JOB_KEYS = (
    "script", "args", "timeout", "markers", "env",
    "min", "max", "tolerance", "direction", "inputs",
    "cpus", "gpus", "memory", "resources",
)
_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_MARKER_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

MSG_TABLE_KEY = (
    "{file}: unknown key {key!r} in [{table}]; allowed keys: " + ", ".join(JOB_KEYS)
)
MSG_TABLE_TYPE = "{file}: [{table}] {key} must be {expected}, got {got!r}"
MSG_TABLE_SCRIPT = "{file}: [{table}] script = {script!r}: no such file under rootdir {rootdir}"
MSG_TABLE_UNKNOWN_ID = (
    "{file}: [{table}] names no discovered training script (job ids: {ids}); "
    "add `script = \"path/to/train_x.py\"` to declare a variant job, or rename the table "
    "to a discovered id"
)
MSG_SWITCH_VALUE = (
    "--train-arg {name}={value}: {job} takes {option} as a switch (no value); give "
    "{name}=true, 1, yes or on to pass it, or {name}=false, 0, no or off to leave it out"
)
#: The note of a job whose command line cannot be read statically.
MSG_NOT_FORWARDED = "command line cannot be read statically: shared flags are not forwarded"
MSG_MISSING_REQUIRED = (
    "job {id!r} was not started: {script} requires {flags}, which neither the shared "
    "settings (--epochs/--folds/--seed/--output-dir/--train-arg) nor the job's configured "
    "args supply; add {example} to `args` in [{table}.{id}] in pyproject.toml"
)


# ---------------------------------------------------------------------------------------------
# Job table
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class JobConfig:
    """One ``[tool.training_plugin.jobs.<id>]`` table, validated."""

    id: str
    script: Path | None = None  #: absolute, for declared (variant) jobs
    args: tuple[str, ...] = ()
    timeout: float | None = None
    markers: tuple[str, ...] = ()
    env: Mapping[str, str] = field(default_factory=dict)
    #: quality gates: metric -> lowest / highest allowed value
    min: Mapping[str, float] = field(default_factory=dict)
    max: Mapping[str, float] = field(default_factory=dict)
    #: regression tolerance: a number (absolute), "N%" (relative), or metric -> either
    tolerance: Any = None
    #: metric -> "higher" | "lower" (which way is better) for names not known by default
    direction: Mapping[str, str] = field(default_factory=dict)
    #: globs (relative to rootdir) of extra files that feed the up-to-date fingerprint
    inputs: tuple[str, ...] = ()
    #: cluster resources (``--ray``): CPUs (also the job's thread budget), GPUs, memory in
    #: bytes, custom Ray resources
    cpus: float | None = None
    gpus: float | None = None
    memory: int | None = None
    resources: Mapping[str, float] = field(default_factory=dict)

    def resource_request(self) -> dict[str, Any]:
        """The resources asked for, by name (cpus defaults to 1)."""
        request: dict[str, Any] = {"cpus": self.cpus if self.cpus is not None else 1}
        if self.gpus:
            request["gpus"] = self.gpus
        if self.memory:
            request["memory"] = self.memory
        if self.resources:
            request["resources"] = dict(self.resources)
        return request


_MEMORY_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]i?B?|B)?\s*$", re.IGNORECASE)
_MEMORY_UNITS = {"": 1, "B": 1, "K": 10**3, "M": 10**6, "G": 10**9, "T": 10**12,
                 "KI": 2**10, "MI": 2**20, "GI": 2**30, "TI": 2**40}


def parse_memory(value: Any) -> int | None:
    """Bytes from a number or a string like "512MB", "8GiB", "2G"; None when unreadable."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return int(value) if value > 0 else None
    if not isinstance(value, str):
        return None
    match = _MEMORY_RE.match(value)
    if not match:
        return None
    unit = (match.group(2) or "").upper().removesuffix("B")
    factor = _MEMORY_UNITS.get(unit)
    if factor is None:
        return None
    number = int(float(match.group(1)) * factor)
    return number if number > 0 else None


def _is_number(value: Any) -> bool:
    return not isinstance(value, bool) and isinstance(value, (int, float))


def _is_tolerance(value: Any) -> bool:
    if _is_number(value):
        return value >= 0
    return isinstance(value, str) and bool(re.match(r"^\s*\d+(\.\d+)?\s*%\s*$", value))


def output_dir_of(config: pytest.Config, default: str = "training-results") -> Path:
    """The session's output directory, absolute: ``--output-dir``, else the ini key
    ``training_output_dir``, else ``default``; relative paths are relative to rootdir."""
    out = config.getoption("training_output_dir", None)
    if not out:
        try:
            out = config.getini("training_output_dir")
        except ValueError:  # the ini keys are not registered
            out = ""
    out = str(out).strip() or default
    return Path(os.path.normpath(Path(config.rootpath) / os.path.expanduser(out)))


def load_job_table(rootdir: Path) -> dict[str, JobConfig]:
    """Read and validate the job table from ``rootdir/pyproject.toml`` ({} when absent).

    Raises ``pytest.UsageError`` naming the file and key for any mistake.
    """
    path = Path(rootdir) / "pyproject.toml"
    if not path.is_file():
        return {}
    name = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise pytest.UsageError(f"{name}: not valid TOML: {exc}") from None
    if "training_plugin" not in text:
        return {}  # no [tool.training_plugin] table (and no TOML parser to load)
    import tomllib

    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise pytest.UsageError(f"{name}: not valid TOML: {exc}") from None
    section = data.get("tool", {}).get("training_plugin")
    if section is None:
        return {}
    if not isinstance(section, dict):
        raise pytest.UsageError(f"{name}: [tool.training_plugin] must be a table")
    for key in section:
        if key != "jobs":
            raise pytest.UsageError(
                f"{name}: unknown key {key!r} in [tool.training_plugin]; allowed keys: jobs"
            )
    jobs = section.get("jobs", {})
    if not isinstance(jobs, dict):
        raise pytest.UsageError(f"{name}: [{TABLE}] must be a table of tables")
    return {job: _job_config(job, body, name, Path(rootdir)) for job, body in jobs.items()}


def _job_config(job: str, body: Any, file: str, rootdir: Path) -> JobConfig:
    table = f"{TABLE}.{job}"

    def bad(key: str, expected: str, got: Any) -> pytest.UsageError:
        return pytest.UsageError(
            MSG_TABLE_TYPE.format(file=file, table=table, key=key, expected=expected, got=got)
        )

    if not _ID_RE.match(job):
        raise pytest.UsageError(
            f"{file}: [{table}]: a job id may hold letters, digits, '_', '-' and '.' only"
        )
    if not isinstance(body, dict):
        raise pytest.UsageError(f"{file}: [{table}] must be a table")
    for key in body:
        if key not in JOB_KEYS:
            raise pytest.UsageError(MSG_TABLE_KEY.format(file=file, key=key, table=table))
    script = body.get("script")
    script_path: Path | None = None
    if script is not None:
        if not isinstance(script, str) or not script.strip():
            raise bad("script", "a path (string) relative to rootdir", script)
        script_path = Path(os.path.normpath(rootdir / script))
        if not script_path.is_file():
            raise pytest.UsageError(
                MSG_TABLE_SCRIPT.format(file=file, table=table, script=script, rootdir=rootdir)
            )
    args = body.get("args", [])
    if not isinstance(args, list) or not all(isinstance(a, str) for a in args):
        raise bad("args", "a list of strings", args)
    timeout = body.get("timeout")
    if timeout is not None and (
        isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout <= 0
    ):
        raise bad("timeout", "a number of seconds > 0", timeout)
    markers = body.get("markers", [])
    if not isinstance(markers, list) or not all(
        isinstance(m, str) and _MARKER_RE.match(m) for m in markers
    ):
        raise bad("markers", "a list of marker names (identifiers)", markers)
    env = body.get("env", {})
    if not isinstance(env, dict) or not all(isinstance(v, str) for v in env.values()):
        raise bad("env", "a table of strings (NAME = \"value\")", env)
    bounds: dict[str, dict[str, float]] = {}
    for key in ("min", "max"):
        value = body.get(key, {})
        if not isinstance(value, dict) or not all(
            isinstance(k, str) and _is_number(v) for k, v in value.items()
        ):
            raise bad(key, 'a table of metric = number (e.g. { roc_auc = 0.88 })', value)
        bounds[key] = {k: float(v) for k, v in value.items()}
    tolerance = body.get("tolerance")
    if tolerance is not None and not (
        _is_tolerance(tolerance)
        or (isinstance(tolerance, dict) and all(_is_tolerance(v) for v in tolerance.values()))
    ):
        raise bad("tolerance", 'a number, "N%", or a table of metric = number or "N%"',
                  tolerance)
    direction = body.get("direction", {})
    if not isinstance(direction, dict) or not all(
        v in ("higher", "lower") for v in direction.values()
    ):
        raise bad("direction", 'a table of metric = "higher" or "lower"', direction)
    inputs = body.get("inputs", [])
    if not isinstance(inputs, list) or not all(isinstance(g, str) and g for g in inputs):
        raise bad("inputs", "a list of globs (strings)", inputs)
    numbers: dict[str, float | None] = {}
    for key, least in (("cpus", 0.0), ("gpus", 0.0)):
        value = body.get(key)
        if value is not None and (not _is_number(value) or value < least
                                  or (key == "cpus" and value == 0)):
            raise bad(key, "a number" + (" > 0" if key == "cpus" else " >= 0"), value)
        numbers[key] = float(value) if value is not None else None
    memory = body.get("memory")
    memory_bytes = None
    if memory is not None:
        memory_bytes = parse_memory(memory)
        if memory_bytes is None:
            raise bad("memory", 'bytes, or a size like "8GiB" or "512MB"', memory)
    resources = body.get("resources", {})
    if not isinstance(resources, dict) or not all(
        isinstance(k, str) and _is_number(v) and v > 0 for k, v in resources.items()
    ):
        raise bad("resources", "a table of resource name = amount > 0 (e.g. { bigmem = 1 })",
                  resources)
    return JobConfig(
        id=job,
        script=script_path,
        args=tuple(args),
        timeout=float(timeout) if timeout is not None else None,
        markers=tuple(markers),
        env=dict(env),
        min=bounds["min"],
        max=bounds["max"],
        tolerance=tolerance,
        direction=dict(direction),
        inputs=tuple(inputs),
        cpus=numbers["cpus"],
        gpus=numbers["gpus"],
        memory=memory_bytes,
        resources={k: float(v) for k, v in resources.items()},
    )


def table_markers(table: Mapping[str, JobConfig]) -> list[str]:
    """All marker names used in the job table, sorted."""
    return sorted({m for cfg in table.values() for m in cfg.markers})


# ---------------------------------------------------------------------------------------------
# Settings and command building
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


def _truthy(value: str) -> bool | None:
    low = value.strip().lower()
    if low in ("1", "true", "yes", "on", ""):
        return True
    if low in ("0", "false", "no", "off"):
        return False
    return None


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


def switch_value(name: str, value: str, option: str, job: str) -> bool:
    """Whether ``--train-arg NAME=VALUE`` turns the switch ``option`` on; a
    ``pytest.UsageError`` naming ``job`` when VALUE is not a yes/no word."""
    switch = _truthy(value)
    if switch is None:
        raise pytest.UsageError(MSG_SWITCH_VALUE.format(name=name, value=value, job=job,
                                                        option=option))
    return switch


def build_argv(
    script_rel: str,
    parser: ParserInfo,
    settings: Settings,
    configured: Iterable[str],
    out_dir: Path,
) -> tuple[list[str], tuple[str, ...], tuple[str, ...]]:
    """``[python, script, shared flags the script accepts, configured args]``.

    Returns (argv, missing required flags, notes).  Configured args win: a shared flag the
    configured args already set is not passed again.
    """
    configured = list(configured)
    given = set(flags_mod.iter_option_tokens(configured))
    given |= {flags_mod.normalize(t) for t in given if t.startswith("--")}
    shared: list[str] = []
    notes: list[str] = []

    parser_flags = parser.flags if parser.resolved else ()
    looked_up: dict[tuple[str, bool], flags_mod.Flag | None] = {}
    aliases = dict(settings.flag_aliases)

    def find(name: str, setting: bool = False) -> flags_mod.Flag | None:
        """The flag for ``--name``; for a shared setting also its other spellings."""
        if (name, setting) not in looked_up:
            looked_up[name, setting] = (
                flags_mod.find_shared(parser_flags, name, aliases.get(name, ()))
                if setting else flags_mod.find_flag(parser_flags, name)
            )
        return looked_up[name, setting]

    def accepted(name: str, setting: bool = False) -> flags_mod.Flag | None:
        flag = find(name, setting) if parser.resolved else None
        if flag is None or any(
            o in given or (o.startswith("--") and flags_mod.normalize(o) in given)
            for o in flag.options
        ):
            return None  # the configured args set it: they win
        return flag

    def spelling(flag: flags_mod.Flag) -> str:
        return (flag.long_options or flag.options)[0]

    if not parser.resolved:
        notes.append(MSG_NOT_FORWARDED)
    wanted: list[tuple[str, str | None]] = [
        ("epochs", None if settings.epochs is None else str(settings.epochs)),
        ("folds", None if settings.folds is None else str(settings.folds)),
        ("seed", None if settings.seed is None else str(settings.seed)),
    ]
    for name, value in wanted:
        if value is None:
            continue
        flag = accepted(name, setting=True)
        if flag is not None:
            shared += [spelling(flag), value]
            if flags_mod.normalize(spelling(flag)) != name:
                notes.append(f"--{name} passed as {spelling(flag)}")
        elif parser.resolved and find(name, setting=True) is None:
            notes.append(f"--{name} not passed: the script has no such flag")
    for name, value in settings.train_args:
        flag = accepted(name)
        if flag is None:
            if parser.resolved and find(name) is None:
                notes.append(f"--train-arg {name} not passed: the script has no --{name}")
            continue
        if flag.takes_value:
            shared += [spelling(flag), value]
        elif switch_value(name, value, spelling(flag), script_rel):
            shared.append(spelling(flag))
    if settings.threads is not None:
        flag = accepted("n-jobs")
        if flag is not None:
            shared += [spelling(flag), str(settings.threads)]
    flag = accepted("output-dir", setting=True)
    if flag is not None:
        shared += [spelling(flag), str(out_dir)]
        if flags_mod.normalize(spelling(flag)) != "output-dir":
            notes.append(f"--output-dir passed as {spelling(flag)}")
    argv = [sys.executable, script_rel, *shared, *configured]
    present = set(flags_mod.iter_option_tokens(argv[2:]))
    missing: list[str] = []
    if parser.resolved:
        bare = [a for a in configured if not a.startswith("-")]
        for flag in parser_flags:
            if not flag.required:
                continue
            if flag.positional:
                if not bare:
                    missing.append(f"<{flag.dest}> (positional)")
            elif not any(o in present for o in flag.options) and not _abbreviated(
                flag, present, parser_flags
            ):
                missing.append((flag.long_options or flag.options)[0])
    return argv, tuple(missing), tuple(notes)


def _abbreviated(
    flag: flags_mod.Flag, present: set[str], parser_flags: Iterable[flags_mod.Flag]
) -> bool:
    """Whether a token in ``present`` is argparse's abbreviation of one of ``flag``'s long
    options (``--conf`` for ``--config``): a prefix of this flag's and no other flag's."""
    for token in present:
        if len(token) > 2 and token.startswith("--") and any(
            o.startswith(token) for o in flag.long_options
        ):
            others = [f for f in parser_flags if f is not flag
                      and any(o.startswith(token) for o in f.long_options)]
            if not others:
                return True
    return False


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
    """The spec of one job: command, env, timeout, markers, output locations."""
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
) -> dict[Path, list[JobSpec]]:
    """Job specs per script file (discovered jobs first, then declared variants, by id).

    ``analyze(path) -> ParserInfo`` supplies the flags.  Raises ``pytest.UsageError`` for a
    table that names neither a discovered id nor a script, and for duplicate ids.
    ``restrict`` (explicit command-line roots) limits declared variants to files under them.
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
    return {path: specs[path] for path in sorted(specs, key=lambda p: relpath(p, settings.rootdir))}
