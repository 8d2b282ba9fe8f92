"""What the plugin accepts in the files it reads: safe JSON parsing and the shape of each file.

Every file the plugin reads goes through here: ``metrics.json`` (``results.read_metrics``),
a history line (``store.read_history``), a baseline entry (the baseline feature) and a
``fingerprint.json`` (the fingerprint feature).  A bad file never becomes a traceback: the
readers turn a :class:`BadFile` or a validator's problem into a one-line warning (or, for a
baseline, a usage error) naming the file and the line.

Parsing (:func:`parse`, :func:`load`) refuses, before or while the ``json`` module works:

- a file larger than the caller's limit (``results.MAX_JSON_BYTES``); at most that many
  bytes are read, and a file that is not a regular file (a FIFO, a device) is never read;
- nesting deeper than :data:`MAX_DEPTH` (a bracket scan of the text, before ``json.loads``
  could recurse);
- an integer of more than :data:`MAX_INT_DIGITS` digits (larger than any 64-bit integer);
- ``NaN``, ``Infinity`` and numbers that overflow to infinity (``1e400``).

The validators (:func:`history_entry`, :func:`baseline_entry`, :func:`fingerprint`) are
hand-written: four small shapes, checked in a few lines each, with messages in the plugin's
words; a schema library would be a dependency of every session for that, and the limits
above must hold before any model of the document is built.  Each returns a one-line problem
or None; keys they do not know are allowed (a newer plugin's files stay readable).

:func:`is_plain_file_inside` / :func:`link_problem`: whether a file of a job's folder is a
regular file reached without a symbolic link (the HTML report and MLflow take only those).
"""

from __future__ import annotations

import errno
import json
import math
import os
import re
import stat
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

#: The deepest nesting of objects and lists accepted in a file the plugin reads.
MAX_DEPTH = 100
#: The most digits an integer may have (a 64-bit integer has at most 20).
MAX_INT_DIGITS = 20

#: A JSON string (escapes included) or one bracket: what the depth scan looks at.
_TOKENS = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"|[\[\]{}]', re.DOTALL)


class TrainingFileWarning(pytest.PytestWarning):
    """A file the plugin reads (or one line of it) is bad and was skipped."""


class JSONProblem(ValueError):
    """Why a text is not JSON the plugin accepts, and the line (of the text) where;
    ``syntax``: it is not JSON at all (not UTF-8, or cut short), rather than JSON beyond a
    limit."""

    def __init__(self, problem: str, line: int, syntax: bool = False) -> None:
        super().__init__(problem)
        self.problem = problem
        self.line = line
        self.syntax = syntax


class BadFile(Exception):
    """A file the plugin cannot use; ``str()`` is one line naming the file."""

    def __init__(self, path: Path | str, problem: str) -> None:
        super().__init__(f"{path} {problem}")
        self.path = Path(path)
        self.problem = problem


def warn(message: str) -> None:
    """A one-line :class:`TrainingFileWarning` (pytest's filters and summary apply)."""
    warnings.warn(TrainingFileWarning(message), stacklevel=3)


# -- parsing -----------------------------------------------------------------------------------
def _line_of(text: str, pos: int) -> int:
    return text.count("\n", 0, max(pos, 0)) + 1


def _too_deep(text: str) -> int | None:
    """The offset where nesting first goes beyond ``MAX_DEPTH``, or None."""
    if text.count("[") + text.count("{") <= MAX_DEPTH:
        return None
    depth = 0
    for match in _TOKENS.finditer(text):
        token = match.group()
        if token in "[{":
            depth += 1
            if depth > MAX_DEPTH:
                return match.start()
        elif token in "]}":
            depth -= 1
    return None


class BadNumber:
    """A number beyond the limits, kept in its place by ``parse(..., keep_bad_numbers=True)``
    so that a validator can say where it is (``what``: e.g. "a 400-digit integer ...")."""

    __slots__ = ("what",)

    def __init__(self, what: str) -> None:
        self.what = what


def _number_hooks(text: str, keep: bool) -> dict[str, Callable[[str], Any]]:
    def bad(what: str, token: str) -> BadNumber:
        if keep:
            return BadNumber(what)
        raise JSONProblem(f"holds {what}", _line_of(text, text.find(token)))

    def parse_int(token: str) -> int | BadNumber:
        digits = len(token.lstrip("-"))
        if digits > MAX_INT_DIGITS:
            return bad(f"a {digits}-digit integer, over the limit of {MAX_INT_DIGITS} "
                       f"digits", token)
        return int(token)

    def parse_float(token: str) -> float | BadNumber:
        value = float(token)
        return value if math.isfinite(value) else \
            bad(f"a number too large for a float ({token[:20]})", token)

    def parse_constant(token: str) -> BadNumber:
        return bad(f"{token}, not a finite number", token)

    return {"parse_int": parse_int, "parse_float": parse_float,
            "parse_constant": parse_constant}


def parse(data: str | bytes, *, keep_bad_numbers: bool = False) -> Any:
    """The JSON value of ``data`` (UTF-8 when bytes), or :class:`JSONProblem`.  With
    ``keep_bad_numbers`` a number beyond the limits is a :class:`BadNumber` in the value (for
    a validator to name its place) instead of a problem of the whole text."""
    if isinstance(data, bytes):
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise JSONProblem(f"is not UTF-8 text: {exc.reason} at byte {exc.start}",
                              data.count(b"\n", 0, exc.start) + 1, syntax=True) from None
    else:
        text = data
    deep = _too_deep(text)
    if deep is not None:
        raise JSONProblem(f"is nested deeper than {MAX_DEPTH} levels", _line_of(text, deep))
    try:
        return json.loads(text, **_number_hooks(text, keep_bad_numbers))
    except JSONProblem:
        raise
    except json.JSONDecodeError as exc:
        raise JSONProblem(f"is not valid JSON: {exc.msg} at column {exc.colno}",
                          exc.lineno, syntax=True) from None
    except (ValueError, RecursionError) as exc:  # a limit of the interpreter, say which
        raise JSONProblem(f"is not JSON the plugin can read: {exc}", 1) from None


def _open_regular(path: Path, follow: bool = True) -> int:
    """A read-only descriptor of a regular file (never blocks on a FIFO; ``follow=False``:
    a link at ``path`` is :class:`BadFile`), or OSError / :class:`BadFile`."""
    flags = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags if follow else flags | os.O_NOFOLLOW)
    except OSError as exc:
        if exc.errno == errno.ELOOP and not follow:
            raise BadFile(path, "is a symbolic link, not followed") from None
        raise
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise BadFile(path, "is not a regular file")
    return fd


def read_bytes(path: Path | str, *, max_bytes: int, follow: bool = True) -> bytes:
    """A regular file's bytes, reading at most ``max_bytes`` (+1 to tell a larger file);
    ``follow=False``: never through a link at ``path``.

    FileNotFoundError propagates; any other failure is :class:`BadFile`."""
    path = Path(path)
    try:
        fd = _open_regular(path, follow)
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise BadFile(path, f"cannot be read: {exc.strerror or exc}") from None
    try:
        with os.fdopen(fd, "rb") as f:
            data = f.read(max_bytes + 1)
    except OSError as exc:
        raise BadFile(path, f"cannot be read: {exc.strerror or exc}") from None
    if len(data) > max_bytes:
        raise BadFile(path, f"is too large (over {max_bytes} bytes, the limit)")
    return data


def load(path: Path | str, *, max_bytes: int, keep_bad_numbers: bool = False,
         follow: bool = True) -> Any:
    """The JSON value in a file (``keep_bad_numbers``: as for :func:`parse`; ``follow``: as
    for :func:`read_bytes`).  FileNotFoundError propagates; anything else wrong with it is
    :class:`BadFile` (its message names the line)."""
    data = read_bytes(path, max_bytes=max_bytes, follow=follow)
    try:
        return parse(data, keep_bad_numbers=keep_bad_numbers)
    except JSONProblem as exc:
        raise BadFile(path, f"{exc.problem} (line {exc.line})") from None


def iter_lines(path: Path | str, *, max_bytes: int) -> Iterator[tuple[int, bytes | None]]:
    """(line number, bytes) of each line of a file, read one line at a time; a line longer
    than ``max_bytes`` comes as None (and is never held whole).  FileNotFoundError
    propagates; any other failure is :class:`BadFile`."""
    path = Path(path)
    try:
        fd = _open_regular(path)
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise BadFile(path, f"cannot be read: {exc.strerror or exc}") from None
    with os.fdopen(fd, "rb") as f:
        number = 0
        while True:
            try:
                line = f.readline(max_bytes + 1)
            except OSError as exc:
                raise BadFile(path, f"cannot be read: {exc.strerror or exc}") from None
            if not line:
                return
            number += 1
            if len(line) > max_bytes and not line.endswith(b"\n"):
                while line and not line.endswith(b"\n"):  # skip the rest of it
                    line = f.readline(1 << 20)
                yield number, None
            else:
                yield number, line


# -- shapes ------------------------------------------------------------------------------------
def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, BadNumber):
        return value.what
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, (int, float)):
        return "a number"
    return {str: "a string", list: "a list", dict: "an object"}.get(type(value), "a value")


def _text(value: Any) -> str | None:
    return None if isinstance(value, str) else f"is {_kind(value)}, not a string"


def _flag(value: Any) -> str | None:
    return None if isinstance(value, bool) else f"is {_kind(value)}, not true/false"


def _number(value: Any) -> str | None:
    if isinstance(value, BadNumber):
        return f"is {value.what}"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return f"is {_kind(value)}, not a number"
    if not math.isfinite(value):
        return f"is not a finite number ({value!r})"
    return None


def _strings(value: Any) -> str | None:
    if not isinstance(value, list):
        return f"is {_kind(value)}, not a list of strings"
    for item in value:
        if not isinstance(item, str):
            return f"holds {_kind(item)}, not only strings"
    return None


def _mapping(values: Callable[[Any], str | None], what: str) -> Callable[[Any], str | None]:
    def check(value: Any) -> str | None:
        if not isinstance(value, dict):
            return f"is {_kind(value)}, not an object ({what})"
        for key, item in value.items():
            problem = values(item)
            if problem:
                return f"entry {key!r} {problem}"
        return None
    return check


def _optional(check: Callable[[Any], str | None]) -> Callable[[Any], str | None]:
    return lambda value: None if value is None else check(value)


_METRICS = _mapping(_number, "metric -> number")

_HISTORY = {
    "job": _text, "outcome": _optional(_text), "metrics": _optional(_METRICS),
    "primary_metric": _optional(_text), "argv": _optional(_strings),
    "commit": _optional(_text), "time": _optional(_text), "session": _optional(_text),
    "nodeid": _optional(_text), "node": _optional(_text), "fingerprint": _optional(_text),
    "story": _optional(_text), "synthetic": _optional(_flag),
    "duration_s": _optional(_number),
}
_BASELINE_ENTRY = {
    "metrics": _optional(_METRICS), "argv": _optional(_strings), "nodeid": _optional(_text),
    "duration_s": _optional(_number), "primary_metric": _optional(_text),
    "commit": _optional(_text), "date": _optional(_text), "fingerprint": _optional(_text),
}
_FINGERPRINT = {
    "sha256": _text, "files": _mapping(_optional(_text), "path -> sha256"),
    "argv": _strings, "env": _mapping(_text, "name -> value"), "python": _optional(_text),
    "packages": _optional(_mapping(_text, "distribution -> version")),
}


def _bad_number_in(value: Any, where: str) -> str | None:
    """Where a :class:`BadNumber` is inside ``value`` (a dotted path), and what it is."""
    if isinstance(value, BadNumber):
        return f"{where} is {value.what}"
    items = value.items() if isinstance(value, dict) else \
        enumerate(value) if isinstance(value, list) else ()
    for key, item in items:
        name = str(key) if str(key).isidentifier() else repr(key)
        found = _bad_number_in(item, f"{where}.{name}" if where else name)
        if found:
            return found
    return None


def _check(doc: Any, shape: dict[str, Callable[[Any], str | None]],
           required: tuple[str, ...], skip: str = "") -> str | None:
    """The first problem of ``doc`` against ``shape``, then any :class:`BadNumber` in it
    (outside the key ``skip``)."""
    if not isinstance(doc, dict):
        return f"is {_kind(doc)}, not a JSON object"
    for key, check in shape.items():
        if key not in doc:
            if key in required:
                return f"has no {key!r}"
            continue
        problem = check(doc[key])
        if problem:
            return f"{key!r} {problem}"
    return _bad_number_in({k: v for k, v in doc.items() if k != skip}, "")


def history_entry(doc: Any) -> str | None:
    """Why a parsed history line cannot be used, or None."""
    return _check(doc, _HISTORY, ("job",))


def baseline_entry(doc: Any) -> str | None:
    """Why one job's entry in a baseline file cannot be used, or None."""
    return _check(doc, _BASELINE_ENTRY, ())


def baseline_file(doc: Any) -> str | None:
    """Why a parsed baseline file cannot be used (its top level; see ``baseline_entry``)."""
    return _check(doc, {"jobs": _mapping(lambda v: None, "job -> entry"),
                        "commit": _optional(_text)}, ("jobs",), skip="jobs")


def fingerprint(doc: Any) -> str | None:
    """Why a parsed ``fingerprint.json`` cannot be used, or None."""
    return _check(doc, _FINGERPRINT, ("sha256", "files", "argv", "env"))


# -- links -------------------------------------------------------------------------------------
def link_problem(path: Path | str, folder: Path | str) -> str | None:
    """None when ``path`` is a regular file below ``folder`` reached without a symbolic link
    (``folder`` itself included; links above it, such as an output folder the user pointed
    elsewhere, are not looked at); else why not, naming the part below ``folder``
    ("figures/x.svg is a symbolic link (to /etc/shadow)")."""
    base = Path(os.path.abspath(folder))
    try:
        parts = Path(os.path.abspath(path)).relative_to(base).parts
    except ValueError:
        return f"{path} is outside {folder}"
    mode = 0
    for i in range(len(parts) + 1):
        current, name = base.joinpath(*parts[:i]), "/".join(parts[:i]) or str(base)
        try:
            mode = os.lstat(current).st_mode
            if stat.S_ISLNK(mode):
                return f"{name} is a symbolic link (to {os.readlink(current)})"
        except OSError as exc:
            return f"{name} cannot be read ({exc.strerror or exc})"
    return None if parts and stat.S_ISREG(mode) else f"{path} is not a regular file"


def is_plain_file_inside(path: Path | str, folder: Path | str) -> bool:
    """Whether ``path`` is a regular file below ``folder`` reached without a symbolic link."""
    return link_problem(path, folder) is None
