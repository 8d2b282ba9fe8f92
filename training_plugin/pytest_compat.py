"""Every use of pytest internals by training_plugin, in one place.

pytest offers no public API for these needs; each function names the internal it uses, and
``tests/test_pytest_compat.py`` fails loudly when a pytest release changes one of them.  The
supported pytest range is pinned in ``pyproject.toml``.

- ``load_conftests``: load the conftest.py files on the way to a folder, as pytest's own walk
  does (``PytestPluginManager._loadconftestmodules``).
- ``other_ignore_hooks``: whether a ``pytest_ignore_collect`` other than pytest's own is
  registered (pytest's own is the plugin named ``"main"``).
- ``collect_from``: make a session collect from one folder instead of ``testpaths``
  (rewrites ``Config.args`` / ``Config.args_source`` before collection).
- ``rootdir_hijack``: detect that ``--opt VALUE`` made VALUE pytest's rootdir.  ``Config.parse``
  runs ``determine_setup`` on the positional arguments before any ``-p`` or entry-point plugin
  has added its options, so the VALUE of a plugin's option is taken for a test path; when it is
  an existing folder outside the project, it becomes the rootdir and the project's ini file is
  never read.  There is no public hook that runs earlier for a ``-p`` plugin (only
  ``pytest.main(plugins=[...])`` registers options in time), so the plugin detects the case
  (``_pytest.config.findpaths.determine_setup``) and stops with a usage error.

- ``terminal_writer``, ``terminal_file``, ``current_line``: the terminal reporter's writer
  (``TerminalReporter._tw``), the file it writes to (``TerminalWriter._file``) and the text of
  its unfinished line (``TerminalWriter._current_line``), for the live progress line, which
  draws after that text and erases itself before every write of pytest's.

- ``new_parser``, ``group_actions``, ``ini_definitions``: a fresh ``Parser`` (its constructor
  is private), the argparse actions of one option group (``Parser._groups``,
  ``Argument._action``) and the registered ini keys (``Parser._inidict``), for the
  configuration reference generated from the code (``reference.py``).

Beside them, ``is_controller``: whether this process is the controller rather than an xdist
worker (xdist documents ``config.workerinput`` on its workers).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest


def is_controller(config: pytest.Config) -> bool:
    """Whether this pytest process is the controller (no xdist, or xdist's controller), not one
    of xdist's workers."""
    return not hasattr(config, "workerinput")


#: pytest's built-in plugin that implements pytest_ignore_collect (``_pytest.main``).
BUILTIN_IGNORE_PLUGIN = "main"

MSG_HIJACK = (
    "{opt} {value}: pytest read {value!r} as a test path before training_plugin had added "
    "{opt}, so the rootdir became {got} and {ini} was not read. Write it with '=': "
    "{opt}={value}"
)


def load_conftests(config: pytest.Config, folder: Path) -> None:
    """Load the conftest.py files from rootdir down to ``folder`` (idempotent)."""
    config.pluginmanager._loadconftestmodules(
        folder,
        config.getoption("importmode"),
        rootpath=config.rootpath,
        consider_namespace_packages=config.getini("consider_namespace_packages"),
    )


def other_ignore_hooks(config: pytest.Config) -> bool:
    """Whether a plugin besides pytest's own implements ``pytest_ignore_collect``."""
    hookimpls = config.hook.pytest_ignore_collect.get_hookimpls()
    return any(impl.plugin_name != BUILTIN_IGNORE_PLUGIN for impl in hookimpls)


def collect_from(config: pytest.Config, folder: Path) -> None:
    """Make the session collect ``folder`` (as if it had been given on the command line)."""
    config.args = [str(folder)]
    config.args_source = pytest.Config.ArgsSource.ARGS


def rootdir_hijack(config: pytest.Config) -> str | None:
    """The usage-error message when an option's value became the rootdir, else None.

    Compares the rootdir and ini file pytest chose with those it would have chosen from the
    positional arguments as they are once every plugin's options are known.
    """
    from _pytest.config.findpaths import determine_setup

    ns = config.known_args_namespace
    final_args = [str(a) for a in (ns.file_or_dir or [])]
    rootpath, inipath, *_ = determine_setup(
        inifile=ns.inifilename,
        override_ini=ns.override_ini,
        args=final_args,
        rootdir_cmd_arg=ns.rootdir or None,
        invocation_dir=config.invocation_params.dir,
    )
    if Path(rootpath) == Path(config.rootpath) and inipath == config.inipath:
        return None
    base = Path(config.invocation_params.dir)
    args = [str(a) for a in config.invocation_params.args]
    for opt, value in zip(args, args[1:]):
        if (opt.startswith("--") and "=" not in opt and not value.startswith("-")
                and value not in final_args and (base / os.path.expanduser(value)).exists()):
            return MSG_HIJACK.format(opt=opt, value=value, got=config.rootpath,
                                     ini=inipath or "the project's ini file")
    return None


def terminal_writer(reporter: Any) -> Any:
    """The terminal reporter's ``TerminalWriter``."""
    return reporter._tw


def terminal_file(writer: Any) -> Any:
    """The file a ``TerminalWriter`` writes to."""
    return writer._file


def current_line(writer: Any) -> str:
    """What a ``TerminalWriter`` has written of its current line (since the last newline)."""
    return str(writer._current_line)


def new_parser() -> pytest.Parser:
    """A fresh, empty pytest ``Parser`` (for registering options outside a session)."""
    from _pytest.config.argparsing import Parser

    return Parser(_ispytest=True)


def group_actions(parser: pytest.Parser, group: str) -> list[Any]:
    """The argparse actions of one option group of ``parser``, in registration order."""
    found = next((g for g in parser._groups if g.name == group), None)
    return [argument._action for argument in (found.options if found else [])]


def ini_definitions(parser: pytest.Parser) -> dict[str, tuple[Any, ...]]:
    """Ini key -> (help, type, default) as registered on ``parser``."""
    return dict(parser._inidict)
