"""The pytest internals training_plugin relies on (training_plugin/pytest_compat.py), and the
rootdir hijack by ``--output-dir DIR``.  If a pytest upgrade changes one of the internals, a
test here fails with its name."""

from __future__ import annotations

import inspect

import pytest

from training_plugin import pytest_compat

pytest_plugins = ["pytester"]

JOB = "import os; os.makedirs(os.environ['TRAINING_OUTPUT_DIR'], exist_ok=True)\n"


def test_the_internals_are_still_there() -> None:
    """Each internal used by pytest_compat exists with the parameters it passes."""
    from _pytest.config.findpaths import determine_setup

    assert {"inifile", "override_ini", "args", "rootdir_cmd_arg", "invocation_dir"} <= set(
        inspect.signature(determine_setup).parameters
    ), "determine_setup changed: update pytest_compat.rootdir_hijack"
    load = pytest.PytestPluginManager._loadconftestmodules
    assert {"importmode", "rootpath", "consider_namespace_packages"} <= set(
        inspect.signature(load).parameters
    ), "_loadconftestmodules changed: update pytest_compat.load_conftests"
    assert hasattr(pytest.Config, "ArgsSource") and hasattr(pytest.Config.ArgsSource, "ARGS")


def test_builtin_ignore_hook_is_named_main(pytester: pytest.Pytester) -> None:
    """pytest's own pytest_ignore_collect is the plugin "main": a session with no other plugin
    that implements it has no other (hypothesis's plugin does, so it is switched off here);
    a conftest that implements it is one."""
    config = pytester.parseconfigure("-p", "no:hypothesispytest")
    names = {i.plugin_name for i in config.hook.pytest_ignore_collect.get_hookimpls()}
    assert names == {pytest_compat.BUILTIN_IGNORE_PLUGIN}
    assert not pytest_compat.other_ignore_hooks(config)
    pytester.makeconftest("def pytest_ignore_collect(collection_path, config):\n    return None\n")
    config = pytester.parseconfigure("-p", "no:hypothesispytest")
    assert pytest_compat.other_ignore_hooks(config)


def test_a_conftest_on_the_way_is_loaded_and_its_collect_ignore_applies(
    pytester: pytest.Pytester,
) -> None:
    """load_conftests: a conftest between rootdir and a script is imported (its
    collect_ignore drops the script, as in a walk)."""
    pytester.makeini("[pytest]\n")
    sub = pytester.mkdir("sub")
    (sub / "conftest.py").write_text("collect_ignore = ['train_b.py']\n")
    (sub / "train_a.py").write_text(JOB)
    (sub / "train_b.py").write_text(JOB)
    result = pytester.runpytest_subprocess("-p", "training_plugin", "--collect-only", "-q")
    result.stdout.fnmatch_lines(["sub/train_a.py::a", "1 test collected*"])
    assert "train_b" not in result.stdout.str()


@pytest.mark.parametrize("workers", [[], ["-n", "2"]], ids=["serial", "xdist"])
def test_output_dir_outside_the_project_both_spellings(
    pytester: pytest.Pytester, workers: list[str]
) -> None:
    """``--output-dir DIR`` with DIR an existing folder outside the project used to make DIR
    the rootdir and run 0 jobs (exit 5); now it is a usage error giving the '=' spelling,
    and ``--output-dir=DIR`` runs the jobs into DIR."""
    pytester.makeini("[pytest]\ntraining_paths = jobs\n")
    jobs = pytester.mkdir("jobs")
    (jobs / "train_a.py").write_text(JOB)
    outside = pytester.path.parent / f"{pytester.path.name}-outside"
    outside.mkdir()

    bad = pytester.runpytest_subprocess("-p", "training_plugin", *workers,
                                        "--output-dir", str(outside))
    assert bad.ret == pytest.ExitCode.USAGE_ERROR
    bad.stderr.fnmatch_lines([f"*--output-dir {outside}: pytest read*as a test path*"
                              f"Write it with '=': --output-dir={outside}"])
    assert list(outside.iterdir()) == []  # nothing was written

    good = pytester.runpytest_subprocess("-p", "training_plugin", *workers,
                                         f"--output-dir={outside}")
    good.assert_outcomes(passed=1)
    assert (outside / "a" / "train.log").is_file()


def test_output_dir_inside_the_project_needs_no_equals_sign(pytester: pytest.Pytester) -> None:
    """An existing output folder inside the project leaves the rootdir alone: both spellings
    work."""
    pytester.makeini("[pytest]\ntraining_paths = jobs\n")
    jobs = pytester.mkdir("jobs")
    (jobs / "train_a.py").write_text(JOB)
    pytester.mkdir("out")
    result = pytester.runpytest_subprocess("-p", "training_plugin", "--output-dir", "out")
    result.assert_outcomes(passed=1)
    assert (pytester.path / "out" / "a" / "train.log").is_file()


def test_the_terminal_writer_internals(pytestconfig: pytest.Config) -> None:
    """The progress line reads the reporter's writer, its file and its unfinished line."""
    reporter = pytestconfig.pluginmanager.get_plugin("terminalreporter")
    writer = pytest_compat.terminal_writer(reporter)
    assert hasattr(pytest_compat.terminal_file(writer), "write")
    assert isinstance(pytest_compat.current_line(writer), str)


def test_the_parser_internals_give_options_and_ini_keys() -> None:
    """The generated reference registers on a fresh Parser and reads back each option's
    argparse action and each ini key's (help, type, default)."""
    parser = pytest_compat.new_parser()
    group = parser.getgroup("demo", "demo")
    group.addoption("--demo-n", type=int, default=3, help="how many")
    parser.addini("demo_key", "a key", type="linelist", default=[])
    actions = pytest_compat.group_actions(parser, "demo")
    assert [(a.option_strings, a.default, a.help) for a in actions] == [
        (["--demo-n"], 3, "how many")]
    assert pytest_compat.ini_definitions(parser)["demo_key"][:2] == ("a key", "linelist")
    assert pytest_compat.group_actions(parser, "absent") == []
