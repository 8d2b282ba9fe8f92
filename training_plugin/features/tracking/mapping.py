"""What a job's child run holds, from its ``JobRecord`` (no mlflow import): params (the
resolved flags of its argv and its job-table settings), metrics (metrics.json ``metrics``,
every candidate model's, the duration, what the job cost), tags and the run's status."""

from __future__ import annotations

import json
import re
import shlex
from typing import Any

from training_plugin.metrics import is_number
from training_plugin.results import JobRecord

#: MLflow's limits on one value (params 6000 characters, tags 8000).
MAX_PARAM = 6000
MAX_TAG = 8000

_NUMBER_RE = re.compile(r"^-\d|^-\.\d")
_KEY_RE = re.compile(r"[^A-Za-z0-9_\-. /]")


def key(name: str) -> str:
    """A param / metric / tag key MLflow accepts."""
    return _KEY_RE.sub("_", name) or "_"


def clip(value: Any, limit: int) -> str:
    """``value`` as text (JSON for anything but a string), cut to ``limit`` characters."""
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def flag_params(argv: list[str]) -> dict[str, str]:
    """``--name value`` / ``--name=value`` / ``--switch`` pairs of a job's argv (after the
    interpreter and the script); a flag's value is every word up to the next flag (argparse's
    ``nargs='+'``); words before any flag are ``arg0``, ``arg1`` ..."""
    params: dict[str, str] = {}
    words = list(argv[2:])
    name: str | None = None
    values: list[str] = []
    positional = 0

    def flush() -> None:
        if name is not None:
            value = " ".join(values) if values else "true"
            name_key = key(name)
            params[name_key] = f"{params[name_key]} {value}" if name_key in params else value

    for word in words:
        if word.startswith("-") and len(word) > 1 and not _NUMBER_RE.match(word):
            flush()
            flag, eq, value = word.lstrip("-").partition("=")
            name, values = flag, ([value] if eq else [])
        elif name is not None:
            values.append(word)
        else:
            params[f"arg{positional}"] = word
            positional += 1
    flush()
    return params


def table_params(table: dict[str, Any]) -> dict[str, str]:
    """A job-table entry (``JobRecord.table``: unset keys left out) as ``job.<key>`` params."""
    out: dict[str, str] = {}
    for name in ("script", "args", "timeout", "markers", "tolerance", "inputs", "cpus", "gpus",
                 "memory"):
        value = table.get(name)
        if value in (None, (), [], {}):
            continue
        if name == "args":
            value = shlex.join(value)
        elif isinstance(value, (tuple, list)):
            value = ",".join(str(v) for v in value)
        out[f"job.{name}"] = value if isinstance(value, str) else clip(value, MAX_PARAM)
    for name in ("env", "min", "max", "direction", "resources"):
        for entry, value in dict(table.get(name) or {}).items():
            out[key(f"job.{name}.{entry}")] = str(value)
    return out


def job_metrics(record: JobRecord) -> dict[str, float]:
    """metrics.json ``metrics`` (else the record's), ``models.<name>.<metric>``,
    ``duration_s``, and the job's cost (``cost_metrics``)."""
    doc = record.document or {}
    metrics: dict[str, float] = {}
    source = doc.get("metrics") if isinstance(doc.get("metrics"), dict) else None
    for name, value in (source or record.metrics or {}).items():
        if is_number(value):
            metrics[key(str(name))] = float(value)
    models = doc.get("models")
    if isinstance(models, dict):
        for model, values in models.items():
            if not isinstance(values, dict):
                continue
            for name, value in values.items():
                if is_number(value):
                    metrics[key(f"models.{model}.{name}")] = float(value)
    if is_number(record.duration_s):
        metrics["duration_s"] = float(record.duration_s)
    for name, value in cost_metrics(record).items():
        metrics.setdefault(name, value)  # a job's own metric of that name is kept
    return metrics


def cost_metrics(record: JobRecord) -> dict[str, float]:
    """What the job's last attempt cost (``record.cost``) as ``cost_wall_s``, ``cost_cpu_s``,
    ``cost_peak_bytes``, ``cost_peak_mib``, ``cost_gpus``, ``cost_gpu_s`` and
    ``cost_memory_limit_bytes`` (each where measured), the CPU seconds of every attempt
    (``cost_cpu_s_all_attempts``) and ``attempts`` (how many the job took)."""
    cost = record.cost if isinstance(record.cost, dict) else {}
    metrics: dict[str, float] = {}
    for name, metric in (("wall_s", "cost_wall_s"), ("cpu_s", "cost_cpu_s"),
                         ("peak_bytes", "cost_peak_bytes"), ("gpus", "cost_gpus"),
                         ("gpu_s", "cost_gpu_s"), ("memory_limit", "cost_memory_limit_bytes")):
        if is_number(cost.get(name)):
            metrics[metric] = float(cost[name])
    if "cost_peak_bytes" in metrics:
        metrics["cost_peak_mib"] = round(metrics["cost_peak_bytes"] / 2**20, 3)
    attempts = [a for a in record.attempts or [] if isinstance(a, dict)]
    cpu = [a["cost"]["cpu_s"] for a in attempts
           if isinstance(a.get("cost"), dict) and is_number(a["cost"].get("cpu_s"))]
    if len(attempts) > 1 and cpu:
        metrics["cost_cpu_s_all_attempts"] = float(sum(cpu))
    if record.attempts:
        metrics["attempts"] = float(len(record.attempts))
    return metrics


def run_status(record: JobRecord) -> str:
    """FINISHED (passed), KILLED (timed out, interrupted), FAILED (anything else)."""
    if record.outcome == "passed":
        return "FINISHED"
    said = f"{record.result or ''} {record.story or ''}"
    if record.outcome == "interrupted" or "timed out" in said or "interrupted" in said:
        return "KILLED"
    return "FAILED"


def cell_fields(record: JobRecord) -> tuple[dict[str, str], dict[str, str]]:
    """A cell's params (``sweep.<name>``: its values) and tags (``cell``, ``sweep_job``);
    ({}, {}) for a job that is not swept."""
    if not record.cell:
        return {}, {}
    params = {key(f"sweep.{name}"): clip(value, MAX_PARAM)
              for name, value in (record.params or {}).items()}
    return params, {"cell": str(record.cell), "sweep_job": str(record.job or ""),
                    "level": "cell"}


def job_tags(record: JobRecord, manifest: dict[str, Any], commit: str | None) -> dict[str, str]:
    """The child run's tags (``manifest``: the job's manifest.json, or {})."""
    doc = record.document or {}
    data = doc.get("data") if isinstance(doc.get("data"), dict) else {}
    if not data and isinstance(manifest.get("data"), dict):
        data = manifest["data"]
    git = manifest.get("git")
    job_commit = git.get("commit") if isinstance(git, dict) else None
    commit = job_commit if isinstance(job_commit, str) and job_commit else commit
    synthetic = record.synthetic
    if synthetic is None and isinstance(data.get("synthetic"), bool):
        synthetic = data["synthetic"]
    tags = {
        "mlflow.runName": str(record.id),
        "mlflow.source.name": str(record.script or ""),
        "mlflow.source.type": "JOB",
        "job": str(record.id),
        "script": str(record.script or ""),
        "nodeid": str(record.nodeid or ""),
        "command": record.command,
        "outcome": str(record.outcome),
        "synthetic": "unknown" if synthetic is None else str(bool(synthetic)).lower(),
        "node": str(record.node or ""),
    }
    if commit:
        tags["git_commit"] = commit
        tags["mlflow.source.git.commit"] = commit
    if data.get("source") is not None:
        tags["data_source"] = str(data["source"])
    if data.get("sha256") is not None:
        tags["data_sha256"] = str(data["sha256"])
    if record.story:
        tags["story"] = str(record.story)
    if record.result and record.result != "ok":
        tags["result"] = str(record.result)
    if doc.get("primary_metric"):
        tags["primary_metric"] = str(doc["primary_metric"])
    if doc.get("best_model"):
        tags["best_model"] = str(doc["best_model"])
    return {k: clip(v, MAX_TAG) for k, v in tags.items() if v != ""}
