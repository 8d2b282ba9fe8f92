"""run_all_training.py: the original command line, mapped onto `pytest -p training_plugin`."""

from __future__ import annotations

import importlib.util
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("run_all_training", ROOT / "run_all_training.py")
rat = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(rat)

IDS = ["als", "alzheimers", "alzheimers_structured", "alzheimers_structured_ensemble",
       "baseline_models", "model"]

#: A fake training script that leaves a trace and its argv when it runs.
FAKE = """\
import argparse, os, pathlib, sys
p = argparse.ArgumentParser()
p.add_argument("--epochs", type=int)
p.add_argument("--folds", type=int)
p.add_argument("--output-dir")
p.parse_args()
out = pathlib.Path(os.environ["TRAINING_OUTPUT_DIR"])
out.mkdir(parents=True, exist_ok=True)
(out / "ran").write_text(" ".join(sys.argv[1:]))
"""


def command(*argv: str, ids: list[str] | None = IDS) -> list[str]:
    args, extra = rat.make_parser().parse_known_args(list(argv))
    return rat.build_command(args, extra, ids)[3:]  # after `python -m pytest`


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ([], ["-p", "training_plugin"]),
        (["--epochs", "3"], ["-p", "training_plugin", "--epochs", "3"]),
        (["--folds", "2"], ["-p", "training_plugin", "--folds", "2"]),
        (["--output-dir", "out"], ["-p", "training_plugin", "--output-dir", "out"]),
        (["--parallel"], ["-p", "training_plugin", "-n", "auto"]),
        (["--parallel", "--max-workers", "4"], ["-p", "training_plugin", "-n", "4"]),
        (["--dry-run"], ["-p", "training_plugin", "--collect-only"]),
        (["--list"], ["-p", "training_plugin", "--collect-only", "-q"]),
        (["--only", "als", "model"],
         ["-p", "training_plugin", "-k", "(als or model) and not baseline_models"]),
        (["--only", "alzheimers_structured"],
         ["-p", "training_plugin", "-k",
          "alzheimers_structured and not alzheimers_structured_ensemble"]),
        (["--exclude", "model", "als"],
         ["-p", "training_plugin", "-k",
          "alzheimers or alzheimers_structured or alzheimers_structured_ensemble or "
          "baseline_models"]),
        (["--epochs", "1", "--timeout", "60"],
         ["-p", "training_plugin", "--epochs", "1", "--timeout", "60"]),  # passed through
    ],
)
def test_each_old_option_maps_onto_the_plugin(old: list[str], new: list[str]) -> None:
    assert command(*old) == new


def make_repo(path: Path) -> None:
    (path / "pytest.ini").write_text("[pytest]\ntestpaths = tests\n")
    for name in ("model", "baseline_models", "als"):
        (path / f"train_{name}.py").write_text(textwrap.dedent(FAKE))


def test_only_runs_exactly_the_named_jobs_and_prints_the_pytest_command(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    make_repo(tmp_path)
    rc = rat.main(["--only", "model", "--epochs", "2", "-p", "no:cacheprovider"],
                  cwd=str(tmp_path))
    assert rc == 0
    out = capfd.readouterr().out
    assert out.count("run_all_training.py runs: pytest -p training_plugin --epochs 2 "
                     "-k 'model and not baseline_models'") == 1
    ran = sorted(p.parent.name for p in (tmp_path / "training-results").glob("*/ran"))
    assert ran == ["model"]
    assert (tmp_path / "training-results/model/ran").read_text().startswith("--epochs 2")


def test_exclude_skips_the_named_job(tmp_path: Path) -> None:
    make_repo(tmp_path)
    assert rat.main(["--exclude", "model", "-p", "no:cacheprovider"], cwd=str(tmp_path)) == 0
    ran = sorted(p.parent.name for p in (tmp_path / "training-results").glob("*/ran"))
    assert ran == ["als", "baseline_models"]


def test_an_unknown_job_in_only_is_an_error_listing_the_ids(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    make_repo(tmp_path)
    with pytest.raises(SystemExit) as exc:
        rat.main(["--only", "modle"], cwd=str(tmp_path))
    assert exc.value.code == 2
    assert "unknown job id(s): modle; the job ids are: als, baseline_models, model" in (
        capsys.readouterr().err
    )
    assert not (tmp_path / "training-results").exists()


def test_pytest_exit_code_is_returned(tmp_path: Path) -> None:
    make_repo(tmp_path)
    (tmp_path / "train_als.py").write_text("raise SystemExit(3)\n")
    assert rat.main(["--only", "als", "-p", "no:cacheprovider"], cwd=str(tmp_path)) == 1
