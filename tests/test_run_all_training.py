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
#: Job id -> node id, as ``job_nodes`` finds them.
NODES = {"als": "src/train_als.py::als", "alzheimers": "src/train_alzheimers.py::alzheimers",
         "alzheimers_structured": "scripts/train_alzheimers_structured.py::alzheimers_structured",
         "alzheimers_structured_ensemble":
             "scripts/train_alzheimers_structured.py::alzheimers_structured_ensemble",
         "baseline_models": "mlops/train_baseline_models.py::baseline_models",
         "model": "mlops/train_model.py::model"}

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


def command(*argv: str, nodes: dict[str, str] | None = NODES) -> list[str]:
    args, extra = rat.make_parser().parse_known_args(list(argv))
    return rat.build_command(args, extra, nodes)[3:]  # after `python -m pytest`


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
         ["-p", "training_plugin", NODES["als"], NODES["model"]]),
        (["--only", "alzheimers_structured"],
         ["-p", "training_plugin", NODES["alzheimers_structured"]]),
        (["--exclude", "model", "als"],
         ["-p", "training_plugin", *(NODES[i] for i in IDS if i not in ("model", "als"))]),
        (["--only", "als", "--exclude", "als"],
         ["-p", "training_plugin", *(a for i in IDS for a in ("--deselect", NODES[i]))]),
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
                     "train_model.py::model") == 1
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


def test_only_matches_ids_exactly_not_as_substrings_of_folder_names(tmp_path: Path) -> None:
    make_repo(tmp_path)
    (tmp_path / "models").mkdir()  # `-k model` would match every job in this folder
    (tmp_path / "models" / "train_x.py").write_text(textwrap.dedent(FAKE))
    assert rat.main(["--only", "model", "-p", "no:cacheprovider"], cwd=str(tmp_path)) == 0
    ran = sorted(p.parent.name for p in (tmp_path / "training-results").glob("*/ran"))
    assert ran == ["model"]


@pytest.mark.parametrize(("argv", "message"), [
    (["--parallel", "--max-workers", "0"], "--max-workers 0: the number of workers must be >= 1"),
    (["--parallel", "--max-workers", "-3"], "--max-workers -3: the number of workers must be"),
    (["--max-workers", "4"], "--max-workers works only with --parallel"),
])
def test_max_workers_is_checked(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                argv: list[str], message: str) -> None:
    make_repo(tmp_path)
    with pytest.raises(SystemExit) as exc:
        rat.main(argv, cwd=str(tmp_path))
    assert exc.value.code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "training-results").exists()
