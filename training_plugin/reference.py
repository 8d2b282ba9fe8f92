"""The configuration reference, generated from the code: every option of the "training" group,
every ``training_*`` ini key and every job-table key, with type, default and help text.

:func:`gather` registers the options the way pytest does, by calling each plugin module's
``pytest_addoption`` (the entry's, then every feature module in ``options.FEATURES``, then
``options.add_ini_options``) on a real pytest ``Parser``; :func:`markdown` renders the result.
The docs site (``docs/hooks.py``) builds its "Configuration reference" page from it, and
``tests/test_docs.py`` fails when an entry has no help text.  Nothing heavy is imported.

One function, :func:`_registered`, uses pytest internals (a ``Parser`` built outside pytest,
its ini registry and the argparse actions behind the options); ``tests/test_docs.py`` fails
when a pytest release changes them (it compares the reference with ``pytest --help``).
"""

from __future__ import annotations

import argparse
import html
import importlib
import re
from collections.abc import Callable
from typing import Any, NamedTuple

import pytest

from training_plugin import pytest_compat

GROUP = "training"
TABLE = "[tool.training_plugin.jobs.<id>]"


class Entry(NamedTuple):
    """One row of the reference."""

    name: str
    type: str
    default: str
    help: str
    source: str  #: the module that registers it ("core" or a feature's name)


class Reference(NamedTuple):
    """Every entry, by kind."""

    options: list[Entry]
    ini: list[Entry]
    table: list[Entry]


Step = tuple[str, Callable[[pytest.Parser], None]]


def _registered(steps: list[Step]) -> tuple[list[tuple[str, dict[str, Any]]],
                                            list[tuple[str, str, tuple]]]:
    """Run each step's ``register(parser)`` on one fresh pytest ``Parser``; return the
    "training" group's options as (source, attributes of the argparse action plus ``kind``:
    switch / repeatable / value) and the ini keys as (source, name, (help, type, default)),
    each with the source of the step that first registered it.

    The parser and what it holds come from ``pytest_compat`` (pytest offers no public way to
    read them); ``tests/test_docs.py`` compares the result with ``pytest --help``.
    """
    parser = pytest_compat.new_parser()
    options: list[tuple[str, dict[str, Any]]] = []
    ini: dict[str, tuple[str, str, tuple]] = {}
    for source, register in steps:
        register(parser)
        for action in pytest_compat.group_actions(parser, GROUP)[len(options):]:
            kind = ("repeatable" if action.__class__.__name__ == "_AppendAction"
                    else "switch" if action.nargs == 0 else "value")
            options.append((source, {**vars(action), "kind": kind}))
        for name, spec in pytest_compat.ini_definitions(parser).items():
            ini.setdefault(name, (source, name, spec))
    return options, list(ini.values())


def _registrations() -> list[Step]:
    """(source, register) for each plugin module, in registration order: the entry's
    ``pytest_addoption`` (the core options and ini keys), each feature's, then
    ``options.add_ini_options`` (every ini key, as a conftest registers them)."""
    from training_plugin import options, plugin

    steps: list[Step] = [("core", plugin.pytest_addoption)]
    for name in options.FEATURES:
        module = importlib.import_module(f"training_plugin.features.{name}")
        steps.append((name, module.pytest_addoption))
    steps.append(("core", options.add_ini_options))
    return steps


def _text(value: Any) -> str:
    """A default as a short literal: unset, empty, or the value in code."""
    if value is None or value is argparse.SUPPRESS:
        return "unset"
    if value in ("", [], (), {}):
        return "empty"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, (list, tuple)):
        return ", ".join(f"`{v}`" for v in value)
    return f"`{value}`"


def _option_entry(attrs: dict[str, Any], source: str) -> Entry:
    names = ", ".join(f"`{n}`" for n in attrs["option_strings"])
    metavar = attrs.get("metavar") or str(attrs["dest"]).upper()
    if attrs.get("choices"):
        metavar = "|".join(str(c) for c in attrs["choices"])
    kind = attrs["kind"]
    if kind == "switch":
        type_text = "switch"
    elif attrs.get("nargs") == "?":
        type_text = f"`[={metavar}]` (value optional)"
    else:
        type_text = f"`{metavar}`" + (", repeatable" if kind == "repeatable" else "")
    help_text = (attrs.get("help") or "").replace("%%", "%")  # argparse's escape
    return Entry(names, type_text, _text(attrs.get("default")), help_text, source)


def gather() -> Reference:
    """Every option, ini key and job-table key, from the code that registers them."""
    options, ini = _registered(_registrations())
    ini_entries = [
        Entry(f"`{name}`", " or ".join(kind) if isinstance(kind, tuple) else str(kind),
              _text(default), help_text or "", source)
        for source, name, (help_text, kind, default) in ini
    ]
    return Reference([_option_entry(attrs, source) for source, attrs in options],
                     ini_entries, _table_keys())


def _table_keys() -> list[Entry]:
    """The job-table keys: ``collect.table.JOB_KEYS``, key -> (type, default, help)."""
    from training_plugin.collect.table import JOB_KEYS

    return [Entry(f"`{key}`", str(spec[0]), str(spec[1]), str(spec[2]), "job table")
            for key, spec in JOB_KEYS.items()]


def undocumented(reference: Reference) -> list[str]:
    """The entries whose help text is empty (each a failure of ``tests/test_docs.py``)."""
    return [f"{kind}: {entry.name}"
            for kind, entries in (("option", reference.options), ("ini key", reference.ini),
                                  ("job-table key", reference.table))
            for entry in entries if not entry.help.strip()]


_MARKDOWN_SPECIAL = re.compile(r"([\\*_\[\]|`])")
#: Option and ini-key names in help text, shown as code.
_NAMES = re.compile(r"(?<![\w-])(--[a-z][\w-]*|training_[a-z_]+)")


def _plain(text: str) -> str:
    """Plain text made safe for Markdown (no HTML, emphasis or cell breaks)."""
    return _MARKDOWN_SPECIAL.sub(r"\\\1", html.escape(text, quote=False))


def _cell(text: str) -> str:
    """Help text for a Markdown table cell, option and ini-key names as code."""
    parts = _NAMES.split(" ".join(text.split()))
    return "".join(f"`{part}`" if i % 2 else _plain(part) for i, part in enumerate(parts))


def _table(header: tuple[str, ...], rows: list[Entry]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        lines.append(f"| {row.name} | {row.type} | {row.default} | {_cell(row.help)} |")
    return lines + [""]


def _by_source(header: tuple[str, ...], entries: list[Entry]) -> list[str]:
    """One table per registering module, the core first."""
    out: list[str] = []
    for source in dict.fromkeys(e.source for e in entries):
        out += [f"### {source}", ""]
        if source != "core":
            out += [f"From the `{source}` feature (`-p no:training_plugin.features.{source}` "
                    "turns it off).", ""]
        out += _table(header, [e for e in entries if e.source == source])
    return out


def markdown(reference: Reference | None = None) -> str:
    """The reference page, as Markdown."""
    ref = reference or gather()
    out = [
        "# Configuration reference",
        "",
        "Generated from the code when the site is built (`training_plugin/reference.py`), so it "
        "lists exactly what the plugin registers. `pytest -p training_plugin --help` shows the "
        "same options and ini keys.",
        "",
        "## Command-line options",
        "",
        f'Every option of the "{GROUP}" option group. Options that take a file are written '
        "`--opt=VALUE`.",
        "",
    ]
    out += _by_source(("Option", "Value", "Default", "Description"), ref.options)
    out += ["## ini keys", "",
            "In `pytest.ini`, or `[tool.pytest.ini_options]` in `pyproject.toml`.", ""]
    out += _by_source(("Key", "Type", "Default", "Description"), ref.ini)
    out += ["## Job-table keys", "",
            f"In `{TABLE}` in `pyproject.toml`. An unknown key is a usage error naming it.", ""]
    out += _table(("Key", "Type", "Default", "Description"),
                  [Entry(e.name, _cell(e.type), _cell(e.default), e.help, e.source)
                   for e in ref.table])
    return "\n".join(out)
