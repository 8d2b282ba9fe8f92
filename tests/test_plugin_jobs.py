"""Command building (training_plugin.collect) as pure functions, plus this repository's own jobs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from training_plugin.flags import RESOLVED, UNRESOLVED, Flag, ParserInfo
from training_plugin import results
from training_plugin.collect.argv import MSG_NOT_FORWARDED, build_argv
from training_plugin.collect.specs import make_spec
from training_plugin.collect.table import JobConfig
from training_plugin.options import Settings

REPO = Path(__file__).resolve().parents[1]
ROOT = Path("/repo")
OUT = ROOT / "training-results"


def parser(*flags: Flag, status: str = RESOLVED) -> ParserInfo:
    return ParserInfo(status, tuple(flags))


def argv_of(info: ParserInfo, configured: tuple[str, ...] = (), **settings: object):
    base = {"rootdir": ROOT, "output_dir": OUT}
    base.update(settings)
    return build_argv("jobs/train_x.py", info, Settings(**base), configured, OUT / "x")


def test_n_jobs_budget_is_forwarded_unless_configured() -> None:
    info = parser(Flag(("--n_jobs",), "n_jobs"))
    argv, missing, _ = argv_of(info, threads=3)
    assert argv[1:] == ["jobs/train_x.py", "--n_jobs", "3"] and missing == ()
    argv, _, _ = argv_of(info, ("--n-jobs", "1"), threads=3)  # other spelling, still the same flag
    assert argv[2:] == ["--n-jobs", "1"]
    argv, _, _ = argv_of(info, threads=None)
    assert argv[2:] == []


def test_train_arg_to_a_switch_and_to_an_unknown_flag() -> None:
    info = parser(Flag(("--smoke",), "smoke", takes_value=False))
    argv, _, notes = argv_of(info, train_args=(("smoke", "1"), ("lr", "0.1")))
    assert argv[2:] == ["--smoke"]
    assert "--train-arg lr not passed: the script has no --lr" in notes
    argv, _, _ = argv_of(info, train_args=(("smoke", "false"),))
    assert argv[2:] == []


def test_required_flags_and_positionals_must_be_supplied() -> None:
    info = parser(Flag(("-c", "--config"), "config", required=True), Flag((), "data", required=True))
    _, missing, _ = argv_of(info)
    assert missing == ("--config", "<data> (positional)")
    _, missing, _ = argv_of(info, ("-c", "a.yaml", "data.csv"))
    assert missing == ()
    _, missing, _ = argv_of(info, ("--conf=a.yaml", "data.csv"))  # argparse's abbreviation
    assert missing == ()
    ambiguous = parser(Flag(("--config",), "config", required=True), Flag(("--context",), "context"))
    _, missing, _ = argv_of(ambiguous, ("--con", "a.yaml"))  # argparse would refuse it
    assert missing == ("--config",)


def test_unresolved_parser_gets_configured_args_only() -> None:
    info = parser(Flag(("--epochs",), "epochs"), status=UNRESOLVED)
    argv, missing, notes = argv_of(info, ("--x", "1"), epochs=3)
    assert argv[2:] == ["--x", "1"] and missing == ()
    assert notes == (MSG_NOT_FORWARDED,)


def test_variant_spec_has_its_own_output_dir_env_and_timeout_marker() -> None:
    info = parser(Flag(("--output-dir",), "output_dir"))
    cfg = JobConfig(id="x_long", args=("--epochs", "50"), timeout=30.0, markers=("slow",),
                    env={"A": "1"})
    spec = make_spec("x_long", ROOT / "jobs/train_x.py", parser=info,
                     settings=Settings(rootdir=ROOT, output_dir=OUT), config=cfg, declared=True)
    assert spec.output_dir == OUT / "x_long" and spec.log_path == OUT / "x_long/train.log"
    assert spec.argv[2:] == ["--output-dir", str(OUT / "x_long"), "--epochs", "50"]
    assert spec.command.startswith(sys.executable) and spec.env == {"A": "1"}
    assert spec.timeout == 30.0 and spec.markers == ("slow",)


def test_metrics_reader_reports_malformed_files(tmp_path: Path) -> None:
    assert results.read_metrics(tmp_path) is None
    (tmp_path / "metrics.json").write_text(
        '{"primary_metric": "roc_auc", "metrics": {"roc_auc": "high", "accuracy": 0.5}}'
    )
    got = results.read_metrics(tmp_path)
    assert got.metrics == {"accuracy": 0.5}
    assert "metric 'roc_auc' is not a number" in got.error


@pytest.mark.skipif(not (REPO / "pytest.ini").exists(), reason="needs the repository checkout")
def test_this_repositorys_jobs_are_listed_with_resolved_parsers() -> None:
    """`pytest -p training_plugin --collect-only` on this repository: every job is listed with
    its flags found statically (through the shared add_common_args helper)."""
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "training_plugin", "--collect-only",
         "-p", "no:cacheprovider", "--epochs", "2"],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    jobs = [(line, lines[i + 1]) for i, line in enumerate(lines) if line.startswith("job ")]
    assert jobs, proc.stdout
    assert "parser not resolved" not in proc.stdout
    for command, detected in jobs:
        assert detected.startswith("    flags: "), detected
        assert "--output-dir" in command, command
        # --epochs reaches exactly the jobs whose parser has it
        assert ("--epochs 2" in command) == ("--epochs" in detected.split()
                                             or "--epochs," in detected), (command, detected)
