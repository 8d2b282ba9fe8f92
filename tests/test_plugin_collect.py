"""Discovery, collection, option validation and the job table (pytester, nothing heavy runs)."""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

import pytest

from fakejobs import TRACE_JOB, write_files
from training_plugin.collect.discovery import (MSG_DUPLICATE_ID, MSG_IDENTICAL_COPY, MSG_MISSING_ROOT,
                                       find_scripts)
from training_plugin.collect.argv import MSG_SWITCH_VALUE
from training_plugin.collect.listing import MSG_NO_MATCH, MSG_NO_SCRIPTS
from training_plugin.collect.pipeline import MSG_OUTPUT_DIR_IS_FILE
from training_plugin.results import SUMMARY_FILE

pytest_plugins = ["pytester"]

#: A fake training script that leaves a trace (``ran``) when it runs.
FAKE = TRACE_JOB


def make(pytester: pytest.Pytester, files: dict[str, str], ini: str = "") -> None:
    pytester.makeini("[pytest]\ntestpaths = tests\n" + textwrap.dedent(ini))
    write_files(pytester.path, files)


def run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    return pytester.runpytest("-p", "training_plugin", "-p", "no:cacheprovider", *args)


# -- discovery (pure) ----------------------------------------------------------------------------
def test_job_id_is_the_stem_without_train_prefix(tmp_path: Path) -> None:
    for rel in ["a/train_als.py", "train_model.py", "b/train.py", "c/train_.py", "fit_x.py"]:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(f"# {rel}\n")
    scripts = find_scripts([tmp_path], rootdir=tmp_path, pattern="*.py").scripts
    assert {s.relpath: s.id for s in scripts} == {
        "a/train_als.py": "als", "train_model.py": "model", "b/train.py": "train",
        "c/train_.py": "train_", "fit_x.py": "fit_x"}


def test_discovery_skips_ignored_dirs_skip_paths_and_outside_symlinks(tmp_path: Path) -> None:
    root = tmp_path / "repo"
    for rel in [
        "src/train_good.py",
        "scripts/deep/er/train_deep.py",
        ".git/train_vcs.py",
        ".venv/lib/train_venv.py",
        "myenv/train_customenv.py",
        "build/train_build.py",
        "dist/train_dist.py",
        "node_modules/x/train_node.py",
        "pkg.egg-info/train_egg.py",
        "__pycache__/train_cache.py",
        ".tox/train_tox.py",
        "legacy/train_old.py",
        "src/helper.py",
    ]:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text("")
    (root / "myenv/pyvenv.cfg").write_text("home = /usr\n")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "train_outside.py").write_text("")
    os.symlink(outside, root / "link_out")
    os.symlink(root / "src", root / "link_in")
    scripts = find_scripts([root], rootdir=root, skip=["legacy"]).scripts
    assert [s.relpath for s in scripts] == ["scripts/deep/er/train_deep.py", "src/train_good.py"]
    assert [s.id for s in scripts] == ["deep", "good"]


def test_identical_copies_stop_the_run_naming_both_files(pytester: pytest.Pytester) -> None:
    make(pytester, {"a/train_als.py": FAKE, "b/train_als.py": FAKE, "c/train_ok.py": FAKE})
    result = run(pytester)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert MSG_IDENTICAL_COPY.format(id="als", first="a/train_als.py", second="b/train_als.py",
                                     suggest="b") in result.stderr.str()
    assert not (pytester.path / "training-results").exists()  # nothing ran


def test_scripts_sharing_a_file_name_get_ids_qualified_by_folder(
    pytester: pytest.Pytester,
) -> None:
    make(pytester, {"classify/train.py": FAKE, "segment/train.py": FAKE + "# segmentation\n",
                    "detect/train_other.py": FAKE}, "training_glob = train*.py\n")
    listed = run(pytester, "--collect-only")
    listed.stdout.fnmatch_lines([
        "job classify/train: * classify/train.py",
        "    id: qualified by folder (another script is also named train.py)",
    ])
    assert "job other: " in listed.stdout.str()
    assert "other: * detect/train_other.py\n    id:" not in listed.stdout.str()
    result = run(pytester, "-k", "segment/train")
    result.assert_outcomes(passed=1)
    assert (pytester.path / "training-results/segment/train/ran").exists()
    assert not (pytester.path / "training-results/classify").exists()


def test_training_unique_ids_makes_a_shared_file_name_an_error(pytester: pytest.Pytester) -> None:
    make(pytester, {"classify/train.py": FAKE, "segment/train.py": FAKE + "# other\n"},
         "training_glob = train*.py\ntraining_unique_ids = true\n")
    result = run(pytester, "--collect-only")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*job id 'train': classify/train.py and segment/train.py, "
                                 "and `training_unique_ids` is on*classify/train, segment/train*"])


def test_qualified_ids_use_the_fewest_parent_folders_that_tell_scripts_apart(
    tmp_path: Path,
) -> None:
    for i, rel in enumerate(["a/x/train_m.py", "b/x/train_m.py", "c/train_m.py", "train_m.py",
                             "d/train_n.py"]):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(f"# script {i}\n")
    scripts = find_scripts([tmp_path], rootdir=tmp_path).scripts
    assert {s.relpath: s.id for s in scripts} == {
        "a/x/train_m.py": "a/x/m", "b/x/train_m.py": "b/x/m", "c/train_m.py": "c/m",
        "train_m.py": "m", "d/train_n.py": "n",
    }
    assert [s.qualified for s in scripts] == [True, True, True, False, False]


def test_a_declared_job_with_a_discovered_id_is_refused_with_fitting_advice(
    pytester: pytest.Pytester,
) -> None:
    table = '[tool.training_plugin.jobs.one]\nscript = "other/train_two.py"\n'
    make(pytester, {"train_one.py": FAKE, "other/train_two.py": FAKE, "pyproject.toml": table})
    result = run(pytester, "--collect-only")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert MSG_DUPLICATE_ID.format(id="one", first="train_one.py",
                                   second="other/train_two.py") in result.stderr.str()


def test_training_skip_resolves_a_duplicate(pytester: pytest.Pytester) -> None:
    make(pytester, {"a/train_als.py": FAKE, "b/train_als.py": FAKE}, "training_skip = b\n")
    result = run(pytester, "--collect-only", "-q")
    assert result.ret == 0
    result.stdout.fnmatch_lines(["a/train_als.py::als"])
    assert "b/train_als.py" not in result.stdout.str()


def test_only_training_jobs_unless_paths_are_given(pytester: pytest.Pytester) -> None:
    make(
        pytester,
        {
            "tests/test_suite.py": "def test_suite():\n    pass\n",
            "jobs/train_one.py": FAKE,
            "jobs/test_near_jobs.py": "def test_near():\n    pass\n",
            "other/train_two.py": FAKE,
        },
    )
    jobs_only = run(pytester, "--collect-only", "-q")
    jobs_only.stdout.fnmatch_lines(["jobs/train_one.py::one", "other/train_two.py::two"])
    assert "test_suite" not in jobs_only.stdout.str()
    assert "test_near" not in jobs_only.stdout.str()
    explicit = run(pytester, "--collect-only", "-q", "jobs", "tests")
    explicit.stdout.fnmatch_lines(
        ["jobs/test_near_jobs.py::test_near", "jobs/train_one.py::one",
         "tests/test_suite.py::test_suite"]
    )
    assert "train_two" not in explicit.stdout.str()


def test_training_paths_limits_the_roots_and_a_missing_root_is_an_error(
    pytester: pytest.Pytester,
) -> None:
    make(pytester, {"a/train_one.py": FAKE, "b/train_two.py": FAKE}, "training_paths = b\n")
    result = run(pytester, "--collect-only", "-q")
    result.stdout.fnmatch_lines(["b/train_two.py::two"])
    assert "train_one" not in result.stdout.str()
    make(pytester, {}, "training_paths = nowhere\n")
    missing = run(pytester, "--collect-only")
    assert missing.ret == pytest.ExitCode.USAGE_ERROR
    assert MSG_MISSING_ROOT.format(entry="nowhere", rootdir=pytester.path) in missing.stderr.str()


def test_pytest_ignore_rules_and_norecursedirs_drop_scripts(pytester: pytest.Pytester) -> None:
    make(
        pytester,
        {
            "jobs/train_keep.py": FAKE,
            "jobs/train_flag.py": FAKE,
            "old/train_glob.py": FAKE,
            "notes/train_conf.py": FAKE,
            ".scratch/train_hidden.py": FAKE,
            "attic/train_attic.py": FAKE,
            "notes/train_globbed.py": FAKE,
            # a folder's conftest: collect_ignore and collect_ignore_glob
            "notes/conftest.py": "collect_ignore = ['train_conf.py']\n"
                                 "collect_ignore_glob = ['train_glob*.py']\n",
        },
        "norecursedirs = .* attic\n",
    )
    result = run(pytester, "--collect-only", "-q",
                 "--ignore=jobs/train_flag.py", "--ignore-glob=old/*")
    assert result.ret == pytest.ExitCode.OK
    listed = [line for line in result.stdout.lines if "::" in line]
    assert listed == ["jobs/train_keep.py::keep"]
    # the header counts what runs, not what was dropped
    header = run(pytester, "--collect-only", "--ignore=jobs/train_flag.py", "--ignore-glob=old/*")
    header.stdout.fnmatch_lines(["training: 1 jobs from .; output: *"])


def test_folders_without_scripts_are_never_entered_and_a_broken_conftest_on_the_way_is_named(
    pytester: pytest.Pytester,
) -> None:
    make(
        pytester,
        {
            "jobs/train_one.py": FAKE,
            "docs/conftest.py": "raise RuntimeError('docs conftest must not be imported')\n",
            "docs/test_docs.py": "def test_docs():\n    pass\n",
        },
    )
    result = run(pytester, "--collect-only", "-q")
    assert result.ret == pytest.ExitCode.OK
    assert [line for line in result.stdout.lines if "::" in line] == ["jobs/train_one.py::one"]
    (pytester.path / "jobs/conftest.py").write_text("import no_such_module_here\n")
    broken = run(pytester, "--collect-only", "-q")
    assert broken.ret == pytest.ExitCode.USAGE_ERROR
    broken.stderr.fnmatch_lines(["*a conftest.py on the way to jobs failed to import*"
                                 "no_such_module_here*"])


def test_k_matches_folder_and_file_names_and_tree_names_the_script(
    pytester: pytest.Pytester,
) -> None:
    make(pytester, {"pipelines/deep/train_one.py": FAKE, "models/train_two.py": FAKE})
    by_folder = run(pytester, "--collect-only", "-q", "-k", "pipelines")
    assert [line for line in by_folder.stdout.lines if "::" in line] == [
        "pipelines/deep/train_one.py::one"
    ]
    by_file = run(pytester, "--collect-only", "-q", "-k", "train_two.py")
    assert [line for line in by_file.stdout.lines if "::" in line] == ["models/train_two.py::two"]
    tree = run(pytester, "--collect-only")
    tree.stdout.fnmatch_lines(["*<TrainingItem two (models/train_two.py)>*"])
    assert "testpaths: tests" not in tree.stdout.str()  # the training line says where from
    tree.stdout.fnmatch_lines(["training: 2 jobs from .; output: *"])


def test_training_glob_changes_the_pattern(pytester: pytest.Pytester) -> None:
    make(pytester, {"fit_model.py": FAKE, "train_x.py": FAKE}, "training_glob = fit_*.py\n")
    result = run(pytester, "--collect-only", "-q")
    result.stdout.fnmatch_lines(["fit_model.py::fit_model"])
    assert "train_x" not in result.stdout.str()


# -- option values -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--epochs", "0"], "*--epochs must be at least 1, got 0*"),
        (["--epochs", "abc"], "*--epochs expects a whole number, got 'abc'*"),
        (["--folds", "1"], "*--folds must be at least 2, got 1*"),
        (["--seed", "x"], "*--seed expects a whole number*"),
        (["--train-arg", "x"], "*--train-arg expects NAME=VALUE, got 'x'; e.g.*"),
        (["--train-arg", "=3"], "*--train-arg expects NAME=VALUE*"),
    ],
)
def test_bad_option_values_exit_4_before_anything_runs(
    pytester: pytest.Pytester, args: list[str], message: str
) -> None:
    make(pytester, {"train_one.py": FAKE})
    result = run(pytester, *args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([message])
    assert not (pytester.path / "training-results").exists()


def test_a_switch_given_a_value_that_is_not_yes_or_no_is_a_usage_error(
    pytester: pytest.Pytester,
) -> None:
    switch = FAKE.replace('p.parse_args()', 'p.add_argument("--smoke", action="store_true")\n'
                                            'p.parse_args()')
    make(pytester, {"train_one.py": switch})
    result = run(pytester, "--train-arg", "smoke=maybe")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert MSG_SWITCH_VALUE.format(name="smoke", value="maybe", job="job 'one'",
                                   option="--smoke") in result.stderr.str()
    assert not (pytester.path / "training-results").exists()
    ok = run(pytester, "--train-arg", "smoke=yes", "--collect-only")
    ok.stdout.fnmatch_lines(["job one: * train_one.py --smoke"])


def test_common_spellings_and_ini_aliases_reach_their_scripts(pytester: pytest.Pytester) -> None:
    gan = """\
        import argparse
        p = argparse.ArgumentParser()
        p.add_argument("--n_epochs", type=int)
        p.add_argument("--manualSeed", type=int)
        p.add_argument("--results-dir")
        p.parse_args()
    """
    yolo = """\
        import argparse
        p = argparse.ArgumentParser()
        p.add_argument("--epochs", type=int)
        p.add_argument("--project")
        p.add_argument("--output")
        p.parse_known_args()
    """
    make(pytester, {"train_gan.py": gan, "train_yolo.py": yolo},
         ini="training_flag_aliases =\n    output-dir = project\n")
    result = run(pytester, "--collect-only", "--epochs", "2", "--seed", "7")
    result.stdout.fnmatch_lines([
        "job gan: * train_gan.py --n_epochs 2 --manualSeed 7 --results-dir *gan",
        "*note: --epochs passed as --n_epochs",
        "*note: --seed passed as --manualSeed",
        "*note: --output-dir passed as --results-dir",
        "job yolo: * train_yolo.py --epochs 2 --project *yolo",
        "*note: --seed not passed: the script has no such flag",
        "*note: --output-dir passed as --project",
    ])
    assert "--output " not in result.stdout.str()  # never guessed


def test_a_malformed_flag_alias_line_is_a_usage_error(pytester: pytest.Pytester) -> None:
    make(pytester, {"train_one.py": FAKE}, ini="training_flag_aliases =\n    speed = fast\n")
    result = run(pytester, "--collect-only")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*training_flag_aliases: 'speed = fast' is not*epochs, folds*"])


# -- the job table -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("table", "message"),
    [
        ('[tool.training_plugin.jobs.one]\ntimeuot = 3\n',
         "pyproject.toml: unknown key 'timeuot' in [tool.training_plugin.jobs.one]; allowed keys"),
        ('[tool.training_plugin.jobs.one]\nargs = "--x"\n',
         "[tool.training_plugin.jobs.one] args must be a list of strings"),
        ('[tool.training_plugin.jobs.one]\ntimeout = -1\n',
         "[tool.training_plugin.jobs.one] timeout must be a number of seconds > 0"),
        ('[tool.training_plugin.jobs.one]\nenv = {A = 1}\n',
         "[tool.training_plugin.jobs.one] env must be a table of strings"),
        ('[tool.training_plugin.jobs.v]\nscript = "nope/train_v.py"\n',
         "script = 'nope/train_v.py': no such file"),
        ('[tool.training_plugin.jobs.ghost]\nargs = []\n',
         "[tool.training_plugin.jobs.ghost] names no discovered training script (job ids: one); "
         "add `script = "),
        ('[tool.training_plugin]\nthresholds = 1\n', "unknown key 'thresholds'"),
    ],
)
def test_job_table_mistakes_are_usage_errors_naming_key_and_file(
    pytester: pytest.Pytester, table: str, message: str
) -> None:
    make(pytester, {"train_one.py": FAKE, "pyproject.toml": table})
    result = run(pytester)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert message in result.stderr.str()
    assert not (pytester.path / "training-results").exists()


def test_declared_variant_job_and_markers(pytester: pytest.Pytester) -> None:
    make(
        pytester,
        {
            "jobs/train_one.py": FAKE,
            "jobs/train_two.py": FAKE,
            "pyproject.toml": """
                [tool.training_plugin.jobs.one_long]
                script = "jobs/train_one.py"
                args = ["--epochs", "50"]
                markers = ["slowjob"]

                [tool.training_plugin.jobs.two]
                markers = ["slowjob", "gpu"]
            """,
        },
    )
    listed = run(pytester, "--collect-only", "-q", "--strict-markers")
    listed.stdout.fnmatch_lines(
        ["jobs/train_one.py::one", "jobs/train_one.py::one_long", "jobs/train_two.py::two"]
    )
    selected = run(pytester, "-m", "slowjob and not gpu", "--strict-markers", "-q")
    selected.assert_outcomes(passed=1, deselected=2)
    assert (pytester.path / "training-results/one_long/ran").exists()
    assert not (pytester.path / "training-results/one/ran").exists()
    markers = run(pytester, "--markers")
    markers.stdout.fnmatch_lines(["@pytest.mark.gpu:*", "@pytest.mark.slowjob:*"])


def test_a_script_named_on_the_command_line_runs_as_a_job_never_imported(
    pytester: pytest.Pytester,
) -> None:
    make(pytester, {"jobs/train_one.py": FAKE, "jobs/train_two.py": FAKE})
    by_file = run(pytester, "-q", "jobs/train_one.py")
    by_file.assert_outcomes(passed=1)  # one job item, no python test module
    assert (pytester.path / "training-results/one/ran").exists()
    assert not (pytester.path / "training-results/two").exists()
    by_node = run(pytester, "--collect-only", "-q", "jobs/train_two.py::two")
    by_node.stdout.fnmatch_lines(["jobs/train_two.py::two", "1 test collected*"])


def test_no_training_scripts_exit_5_and_say_so(pytester: pytest.Pytester) -> None:
    make(pytester, {"tests/test_suite.py": "def test_suite():\n    pass\n"})
    result = run(pytester)
    assert result.ret == pytest.ExitCode.NO_TESTS_COLLECTED
    result.stdout.fnmatch_lines([MSG_NO_SCRIPTS.format(glob="train_*.py", where=".")])


def test_a_mark_expression_matching_no_job_exits_5_and_lists_ids(
    pytester: pytest.Pytester,
) -> None:
    make(pytester, {"train_one.py": FAKE, "train_two.py": FAKE})
    result = run(pytester, "-m", "gpu")
    assert result.ret == pytest.ExitCode.NO_TESTS_COLLECTED
    result.stdout.fnmatch_lines([MSG_NO_MATCH.format(what="-m 'gpu'", ids="one, two")])
    assert not (pytester.path / "training-results").exists()


def test_training_output_dir_ini_key_is_the_default_output_dir(pytester: pytest.Pytester) -> None:
    make(pytester, {"train_one.py": FAKE}, "training_output_dir = results/nightly\n")
    run(pytester).assert_outcomes(passed=1)
    out = pytester.path / "results" / "nightly"
    assert (out / "one" / "ran").is_file() and (out / SUMMARY_FILE).is_file()
    assert not (pytester.path / "training-results").exists()
    run(pytester, "--output-dir=elsewhere").assert_outcomes(passed=1)  # the option wins
    assert (pytester.path / "elsewhere" / "one" / "ran").is_file()


def test_an_output_dir_that_is_a_file_is_a_usage_error(pytester: pytest.Pytester) -> None:
    make(pytester, {"train_one.py": FAKE})
    taken = pytester.path / "training-results"
    taken.write_text("not a folder\n")
    result = run(pytester)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert MSG_OUTPUT_DIR_IS_FILE.format(path=taken) in result.stderr.str()
    assert taken.read_text() == "not a folder\n"  # nothing lost


#: A library module whose file name matches the pattern: definitions only, no entry point.
LIBRARY = '''\
"""Shared helpers."""


def add_common_args(parser):
    parser.add_argument("--epochs", type=int)
'''


def test_identical_copies_of_modules_that_are_not_scripts_do_not_stop_the_run(
    pytester: pytest.Pytester,
) -> None:
    make(pytester, {"a/train_utils.py": LIBRARY, "b/train_utils.py": LIBRARY,
                    "a/__init__.py": "", "b/__init__.py": "", "c/train_ok.py": FAKE},
         "training_glob = *.py\n")
    result = run(pytester, "--collect-only")
    assert result.ret == 0, result.stderr.str()
    result.stdout.fnmatch_lines(["job ok: * c/train_ok.py", "not scripts (no entry point): 4 "
                                 "files, e.g. a/__init__.py, a/train_utils.py, b/__init__.py, ..."
                                 " (training_require_entry_point = false collects them)"])
    assert "job utils" not in result.stdout.str()


def test_identical_copies_of_scripts_are_still_refused_naming_both(
    pytester: pytest.Pytester,
) -> None:
    script = LIBRARY + '\n\nif __name__ == "__main__":\n    add_common_args(None)\n'
    make(pytester, {"a/train_als.py": script, "b/train_als.py": script,
                    "a/train_utils.py": LIBRARY, "b/train_utils.py": LIBRARY})
    result = run(pytester, "--collect-only")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert MSG_IDENTICAL_COPY.format(id="als", first="a/train_als.py", second="b/train_als.py",
                                     suggest="b") in result.stderr.str()


def test_when_no_matching_file_is_a_script_the_run_says_what_it_found(
    pytester: pytest.Pytester,
) -> None:
    make(pytester, {"train_utils.py": LIBRARY, "tests/test_suite.py": "def test_x():\n    pass\n"})
    result = run(pytester)
    assert result.ret == pytest.ExitCode.NO_TESTS_COLLECTED
    result.stdout.fnmatch_lines([MSG_NO_SCRIPTS.format(glob="train_*.py", where="."),
                                 "training: not scripts (no entry point): 1 file, e.g. "
                                 "train_utils.py (training_require_entry_point = false *"])
    listed = run(pytester, "--collect-only")
    assert listed.stdout.str().count("not scripts (no entry point)") == 1
