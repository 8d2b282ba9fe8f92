"""The job table: ``[tool.training_plugin.jobs.<id>]`` in pyproject.toml, validated.

Without ``script`` a table holds settings for the discovered job with that id; with ``script``
it declares a job of its own (a variant of a script).  ``JOB_KEYS`` documents every key (type,
default, meaning); an unknown key, or a value of the wrong type, is a ``pytest.UsageError``
naming the file, the table and the key.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import pytest

from training_plugin.collect import sweeps

TABLE = "tool.training_plugin.jobs"


class JobKey(NamedTuple):
    """One key of a job table, for messages and the generated reference."""

    type: str
    default: str
    help: str


#: Every key of a ``[tool.training_plugin.jobs.<id>]`` table.
JOB_KEYS: dict[str, JobKey] = {
    "script": JobKey("path (string)", "none: settings for the discovered job <id>",
                     "declares a job of its own running this script (relative to rootdir)"),
    "args": JobKey("list of strings", "[]", "arguments appended to the job's command; they win "
                   "over a shared flag that sets the same option"),
    "timeout": JobKey("number of seconds > 0", "none", "the job's timeout (a pytest-timeout "
                      "marker: --timeout and the timeout ini key give way to it)"),
    "markers": JobKey("list of marker names", "[]", "pytest markers on the job's item "
                      "(select with -m)"),
    "env": JobKey("table of strings", "{}", "environment variables set for the job (applied "
                  "last, they win)"),
    "min": JobKey("table metric = number", "{}", "quality gate: the lowest allowed value of "
                  "each metric (dotted keys reach nested values of metrics.json)"),
    "max": JobKey("table metric = number", "{}", "quality gate: the highest allowed value of "
                  "each metric"),
    "min_mean": JobKey("table metric = number", "{}", "gate on a configuration's mean (cells "
                       "that differ only in the seed): the lowest allowed mean of each metric"),
    "max_mean": JobKey("table metric = number", "{}", "gate on a configuration's mean: the "
                       "highest allowed mean of each metric"),
    "tolerance": JobKey('number, "N%", or table metric = either', "ini training_tolerance",
                        "how far a metric may move the wrong way against the baseline"),
    "direction": JobKey('table metric = "higher" | "lower"', "built-in list",
                        "which way is better, for metric names the plugin does not know"),
    "inputs": JobKey("list of globs (relative to rootdir)", "[]", "extra files that feed the "
                     "up-to-date fingerprint (--skip-unchanged)"),
    "cpus": JobKey("number > 0", "1", "CPUs the job needs on a cluster (--ray); also its "
                   "thread budget there"),
    "gpus": JobKey("number >= 0", "0", "GPUs the job needs on a cluster (--ray)"),
    "memory": JobKey('bytes, or a size like "8GiB"', "none", "memory the job needs on a "
                     "cluster (--ray); enforced locally (a cgroup, else RLIMIT_AS): above it, "
                     "the job fails as out of memory"),
    "retries": JobKey("whole number >= 0", "--retries / ini training_retries (0)",
                      "attempts after an infrastructure failure (never after the job's own)"),
    "resources": JobKey("table name = amount > 0", "{}", "custom Ray resources the job needs"),
    "sweep": JobKey('table NAME = [values] or "START:STOP[:STEP]"', "{}", "the job's grid: "
                    "one item per cell of the product of the lists, <id>[<name>_<value>-...]; "
                    "--sweep / --repeats win per parameter"),
}
_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_MARKER_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_ENV_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

MSG_TABLE_KEY = (
    "{file}: unknown key {key!r} in [{table}]; allowed keys: " + ", ".join(JOB_KEYS)
)
MSG_TABLE_TYPE = "{file}: [{table}] {key} must be {expected}, got {got!r}"
MSG_TABLE_SCRIPT = "{file}: [{table}] script = {script!r}: no such file under rootdir {rootdir}"
MSG_TABLE_SCRIPT_OUTSIDE = ("{file}: [{table}] script = {script!r} resolves to {real}, outside "
                            "the rootdir {rootdir}")


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
    #: gates on a configuration's mean over its seeds: metric -> lowest / highest allowed mean
    min_mean: Mapping[str, float] = field(default_factory=dict)
    max_mean: Mapping[str, float] = field(default_factory=dict)
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
    #: more attempts after an infrastructure failure (None: --retries / training_retries)
    retries: int | None = None
    #: the job's grid (``sweep``): its parameters, in declared order
    sweep: tuple[sweeps.Axis, ...] = ()

    def to_json(self, rootdir: Path) -> dict[str, Any]:
        """JSON-able form with the keys that are set (``script`` relative to ``rootdir``)."""
        out: dict[str, Any] = {}
        for key in JOB_KEYS:
            value = getattr(self, key)
            if value is None or value == () or value == {}:
                continue
            if key == "script":
                try:
                    value = Path(value).relative_to(rootdir).as_posix()
                except ValueError:
                    value = str(value)
            elif key == "sweep":
                value = {axis.name: [v.value for v in axis.values] for axis in value}
            elif isinstance(value, tuple):
                value = list(value)
            elif isinstance(value, Mapping):
                value = dict(value)
            out[key] = value
        return out

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
        return int(value) if _is_number(value) and value > 0 else None
    if not isinstance(value, str):
        return None
    match = _MEMORY_RE.match(value)
    if not match:
        return None
    unit = (match.group(2) or "").upper().removesuffix("B")
    factor = _MEMORY_UNITS.get(unit)
    if factor is None:
        return None
    number = float(match.group(1)) * factor
    return int(number) if math.isfinite(number) and number > 0 else None


def _is_number(value: Any) -> bool:
    """A finite int or float (not a bool; ``inf`` and ``nan`` are no numbers here)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:  # an int too large for a float
        return False


def _is_tolerance(value: Any) -> bool:
    if _is_number(value):
        return value >= 0
    return isinstance(value, str) and bool(re.match(r"^\s*\d+(\.\d+)?\s*%\s*$", value))


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
        real, root = os.path.realpath(script_path), os.path.realpath(rootdir)
        if not real.startswith(root.rstrip(os.sep) + os.sep):
            raise pytest.UsageError(MSG_TABLE_SCRIPT_OUTSIDE.format(
                file=file, table=table, script=script, real=real, rootdir=rootdir))
    args = body.get("args", [])
    if not isinstance(args, list) or not all(isinstance(a, str) and "\0" not in a for a in args):
        raise bad("args", "a list of strings (without NUL)", args)
    timeout = body.get("timeout")
    if timeout is not None and (not _is_number(timeout) or timeout <= 0):
        raise bad("timeout", "a number of seconds > 0 (finite)", timeout)
    markers = body.get("markers", [])
    if not isinstance(markers, list) or not all(
        isinstance(m, str) and _MARKER_RE.match(m) for m in markers
    ):
        raise bad("markers", "a list of marker names (identifiers)", markers)
    env = body.get("env", {})
    if not isinstance(env, dict) or not all(
        isinstance(v, str) and "\0" not in v and _ENV_NAME_RE.match(k) for k, v in env.items()
    ):
        raise bad("env", "a table of strings (NAME = \"value\": NAME a valid variable name, "
                  "no NUL)", env)
    bounds: dict[str, dict[str, float]] = {}
    for key in ("min", "max", "min_mean", "max_mean"):
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
    if not isinstance(inputs, list) or not all(
        isinstance(g, str) and g and not os.path.isabs(g) and "\0" not in g
        and ".." not in Path(g).parts for g in inputs
    ):
        raise bad("inputs", "a list of globs relative to the rootdir (no '/...', no '..')",
                  inputs)
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
    retries = body.get("retries")
    if retries is not None and (isinstance(retries, bool) or not isinstance(retries, int)
                                or retries < 0):
        raise bad("retries", "a whole number >= 0", retries)
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
        min_mean=bounds["min_mean"],
        max_mean=bounds["max_mean"],
        tolerance=tolerance,
        direction=dict(direction),
        inputs=tuple(inputs),
        cpus=numbers["cpus"],
        gpus=numbers["gpus"],
        memory=memory_bytes,
        resources={k: float(v) for k, v in resources.items()},
        retries=retries,
        sweep=sweeps.table_axes(body["sweep"], f"{file}: [{table}] sweep")
        if "sweep" in body else (),
    )


def table_markers(table: Mapping[str, JobConfig]) -> list[str]:
    """All marker names used in the job table, sorted."""
    return sorted({m for cfg in table.values() for m in cfg.markers})
