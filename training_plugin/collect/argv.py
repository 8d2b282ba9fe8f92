"""Command lines: the argv of a job (shared flags in the script's own spelling, then its
configured args), and the *resolved* argv that decides its result.

The resolved argv leaves out the interpreter's path, writes the job's output directory as
``<output-dir>`` and drops the thread budget (``--n-jobs``), which changes with ``-n`` but not
the model.  Baselines, fingerprints and reports compare jobs by it.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest

from training_plugin import flags as flags_mod
from training_plugin.flags import ParserInfo
from training_plugin.options import Settings

MSG_SWITCH_VALUE = (
    "--train-arg {name}={value}: {job} takes {option} as a switch (no value); give "
    "{name}=true, 1, yes or on to pass it, or {name}=false, 0, no or off to leave it out"
)
#: The note of a job whose command line cannot be read statically.
MSG_NOT_FORWARDED = "command line cannot be read statically: shared flags are not forwarded"
#: The thread budget's option (``--n-jobs`` / ``--n_jobs``): left out of the resolved argv.
THREAD_OPTION = "n-jobs"
OUTPUT_DIR_TOKEN = "<output-dir>"
#: A script's resume flag, in the spellings looked for (first found wins).
RESUME_FLAGS = ("resume", "resume-from", "resume-from-checkpoint", "resume-dir")
#: The ``--collect-only`` note of a job whose script has one.
MSG_RESUME_NOTE = "on a retry (attempt 2 on): {args} and TRAINING_RESUME=1"


def resume_flag(parser: ParserInfo) -> flags_mod.Flag | None:
    """The script's resume flag (``--resume``, ``--resume-from`` ...), or None."""
    if not parser.resolved:
        return None
    for name in RESUME_FLAGS:
        flag = flags_mod.find_flag(parser.flags, name)
        if flag is not None and flag.options:
            return flag
    return None


def resume_args(parser: ParserInfo, out_dir: Path, argv: Iterable[str] = ()) -> list[str]:
    """What a retried attempt adds to the job's argv: its resume flag, with the output folder
    as the value when the flag takes one; [] without one, or when ``argv`` sets it already."""
    flag = resume_flag(parser)
    given = set(flags_mod.iter_option_tokens(list(argv)))
    if flag is None or any(o in given for o in flag.options):
        return []
    spelling = (flag.long_options or flag.options)[0]
    return [spelling, str(out_dir)] if flag.takes_value else [spelling]


def _truthy(value: str) -> bool | None:
    low = value.strip().lower()
    if low in ("1", "true", "yes", "on", ""):
        return True
    if low in ("0", "false", "no", "off"):
        return False
    return None


def switch_value(name: str, value: str, option: str, job: str) -> bool:
    """Whether ``--train-arg NAME=VALUE`` turns the switch ``option`` on; a
    ``pytest.UsageError`` naming ``job`` when VALUE is not a yes/no word."""
    switch = _truthy(value)
    if switch is None:
        raise pytest.UsageError(MSG_SWITCH_VALUE.format(name=name, value=value, job=job,
                                                        option=option))
    return switch


def build_argv(
    script_rel: str,
    parser: ParserInfo,
    settings: Settings,
    configured: Iterable[str],
    out_dir: Path,
) -> tuple[list[str], tuple[str, ...], tuple[str, ...]]:
    """``[python, script, shared flags the script accepts, configured args]``.

    Returns (argv, missing required flags, notes).  Configured args win: a shared flag the
    configured args already set is not passed again.
    """
    configured = list(configured)
    given = set(flags_mod.iter_option_tokens(configured))
    given |= {flags_mod.normalize(t) for t in given if t.startswith("--")}
    shared: list[str] = []
    notes: list[str] = []

    parser_flags = parser.flags if parser.resolved else ()
    looked_up: dict[tuple[str, bool], flags_mod.Flag | None] = {}
    aliases = dict(settings.flag_aliases)

    def find(name: str, setting: bool = False) -> flags_mod.Flag | None:
        """The flag for ``--name``; for a shared setting also its other spellings."""
        if (name, setting) not in looked_up:
            looked_up[name, setting] = (
                flags_mod.find_shared(parser_flags, name, aliases.get(name, ()))
                if setting else flags_mod.find_flag(parser_flags, name)
            )
        return looked_up[name, setting]

    def accepted(name: str, setting: bool = False) -> flags_mod.Flag | None:
        flag = find(name, setting) if parser.resolved else None
        if flag is None or any(
            o in given or (o.startswith("--") and flags_mod.normalize(o) in given)
            for o in flag.options
        ):
            return None  # the configured args set it: they win
        return flag

    def spelling(flag: flags_mod.Flag) -> str:
        return (flag.long_options or flag.options)[0]

    if not parser.resolved:
        notes.append(MSG_NOT_FORWARDED)
    wanted: list[tuple[str, str | None]] = [
        ("epochs", None if settings.epochs is None else str(settings.epochs)),
        ("folds", None if settings.folds is None else str(settings.folds)),
        ("seed", None if settings.seed is None else str(settings.seed)),
    ]
    for name, value in wanted:
        if value is None:
            continue
        flag = accepted(name, setting=True)
        if flag is not None:
            shared += [spelling(flag), value]
            if flags_mod.normalize(spelling(flag)) != name:
                notes.append(f"--{name} passed as {spelling(flag)}")
        elif parser.resolved and find(name, setting=True) is None:
            notes.append(f"--{name} not passed: the script has no such flag")
    for name, value in settings.train_args:
        flag = accepted(name)
        if flag is None:
            if parser.resolved and find(name) is None:
                notes.append(f"--train-arg {name} not passed: the script has no --{name}")
            continue
        if flag.takes_value:
            shared += [spelling(flag), value]
        elif switch_value(name, value, spelling(flag), script_rel):
            shared.append(spelling(flag))
    if settings.threads is not None:
        flag = accepted("n-jobs")
        if flag is not None:
            shared += [spelling(flag), str(settings.threads)]
    flag = accepted("output-dir", setting=True)
    if flag is not None:
        shared += [spelling(flag), str(out_dir)]
        if flags_mod.normalize(spelling(flag)) != "output-dir":
            notes.append(f"--output-dir passed as {spelling(flag)}")
    argv = [sys.executable, script_rel, *shared, *configured]
    present = set(flags_mod.iter_option_tokens(argv[2:]))
    resume = resume_args(parser, out_dir, argv[2:])
    if resume:
        notes.append(MSG_RESUME_NOTE.format(args=" ".join(resume)))
    missing: list[str] = []
    if parser.resolved:
        bare = [a for a in configured if not a.startswith("-")]
        for flag in parser_flags:
            if not flag.required:
                continue
            if flag.positional:
                if not bare:
                    missing.append(f"<{flag.dest}> (positional)")
            elif not any(o in present for o in flag.options) and not _abbreviated(
                flag, present, parser_flags
            ):
                missing.append((flag.long_options or flag.options)[0])
    return argv, tuple(missing), tuple(notes)


def _abbreviated(
    flag: flags_mod.Flag, present: set[str], parser_flags: Iterable[flags_mod.Flag]
) -> bool:
    """Whether a token in ``present`` is argparse's abbreviation of one of ``flag``'s long
    options (``--conf`` for ``--config``): a prefix of this flag's and no other flag's."""
    for token in present:
        if len(token) > 2 and token.startswith("--") and any(
            o.startswith(token) for o in flag.long_options
        ):
            others = [f for f in parser_flags if f is not flag
                      and any(o.startswith(token) for o in f.long_options)]
            if not others:
                return True
    return False


def _option_name(token: str) -> str:
    return token.split("=", 1)[0].lstrip("-").replace("_", "-").lower()


def _is_option(token: str) -> bool:
    if not token.startswith("-") or token == "-":
        return False
    try:
        float(token)
    except ValueError:
        return True
    return False  # a negative number is a value


def resolved_argv(spec: Any) -> list[str]:
    """A job's arguments as they decide its result (see the module docstring)."""
    return resolved_argv_of(list(spec.argv), str(spec.output_dir))


def resolved_argv_of(command: list[str], output_dir: str) -> list[str]:
    """A command (python, script, args) as they decide its result, for a job whose output
    directory is ``output_dir``."""
    out = str(output_dir)
    argv = list(command[1:])
    resolved: list[str] = []
    i = 0
    while i < len(argv):
        token = argv[i]
        if _is_option(token) and _option_name(token) == THREAD_OPTION:
            i += 1 if "=" in token else 2
            continue
        if token == out:
            token = OUTPUT_DIR_TOKEN
        elif "=" in token and token.split("=", 1)[1] == out:
            token = token.split("=", 1)[0] + "=" + OUTPUT_DIR_TOKEN
        resolved.append(token)
        i += 1
    return resolved


def _parse_argv(argv: list[str]) -> tuple[dict[str, str | None], list[str]]:
    options: dict[str, str | None] = {}
    positionals: list[str] = []
    i = 0
    while i < len(argv):
        token = argv[i]
        if _is_option(token):
            if "=" in token:
                name, value = token.split("=", 1)
                options[name] = value
            elif i + 1 < len(argv) and not _is_option(argv[i + 1]):
                options[token] = argv[i + 1]
                i += 1
            else:
                options[token] = None
        else:
            positionals.append(token)
        i += 1
    return options, positionals


def describe_argv_change(old: list[str], new: list[str]) -> list[str]:
    """What differs between two argument lists, in words ("--epochs 10 instead of 200")."""
    if list(old) == list(new):
        return []
    old_opts, old_pos = _parse_argv(list(old))
    new_opts, new_pos = _parse_argv(list(new))
    changes: list[str] = []
    for name in new_opts:
        value = new_opts[name]
        shown = name if value is None else f"{name} {value}"
        if name not in old_opts:
            changes.append(f"{shown} added")
        elif old_opts[name] != value:
            before = "given as a switch" if old_opts[name] is None else old_opts[name]
            changes.append(f"{shown} instead of {before}")
    for name in old_opts:
        if name not in new_opts:
            value = old_opts[name]
            changes.append(f"{name} removed" + ("" if value is None else f" (was {value})"))
    if old_pos != new_pos:
        changes.append(f"arguments {' '.join(new_pos) or '(none)'} instead of "
                       f"{' '.join(old_pos) or '(none)'}")
    if not changes:
        changes.append(f"arguments reordered: {' '.join(new)} (was {' '.join(old)})")
    return changes
