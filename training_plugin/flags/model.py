"""The results of the flag analysis: ``Flag``, ``ParserInfo``, and option-name helpers."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator
from typing import Any, NamedTuple

RESOLVED = "resolved"
NO_PARSER = "none"
UNRESOLVED = "unresolved"


class Flag(NamedTuple):
    """One argument a parser accepts (a NamedTuple: thousands are loaded from the cache)."""

    options: tuple[str, ...]  #: option strings, e.g. ("-e", "--epochs"); () for a positional
    dest: str
    required: bool = False
    takes_value: bool = True
    default: Any = None  #: the default when it is a literal, else None

    @property
    def positional(self) -> bool:
        """True for a positional argument (no option strings)."""
        return not self.options

    @property
    def long_options(self) -> tuple[str, ...]:
        """The ``--long`` spellings."""
        return tuple(o for o in self.options if o.startswith("--"))

    def display(self) -> str:
        """Human form: ``-e/--epochs`` (+ ``required``)."""
        text = "/".join(self.options) if self.options else f"<{self.dest}>"
        if self.required:
            text += " (required)"
        return text

    def to_json(self) -> list[Any]:
        """Compact JSON-able form (for the cache): [options, dest, required, value, default]."""
        return [list(self.options), self.dest, self.required, self.takes_value, self.default]

    @classmethod
    def from_json(cls, data: list[Any]) -> Flag:
        """Inverse of :meth:`to_json`."""
        options, dest, required, takes_value, default = data
        return cls(tuple(options), dest, required, takes_value, default)


def normalize(name: str) -> str:
    """Option name without dashes, ``_`` spelled ``-``: ``--output_dir`` -> ``output-dir``."""
    return name.lstrip("-").replace("_", "-")


def find_flag(flags: Iterable[Flag], name: str) -> Flag | None:
    """The flag accepting ``--name`` (any ``_``/``-`` spelling), else the one whose dest is
    ``name``, else None."""
    wanted = normalize(name)
    flags = tuple(flags)
    for flag in flags:
        for option in flag.options:
            if option[:2] == "--" and option[2:].replace("_", "-") == wanted:
                return flag
    for flag in flags:
        if flag.options and flag.dest.replace("_", "-") == wanted:
            return flag
    return None


#: Other spellings of the shared settings, tried in order after the setting's own name (with
#: any ``_``/``-`` spelling).  Only options the parser has are ever used.
SPELLINGS: dict[str, tuple[str, ...]] = {
    "epochs": ("n-epochs", "num-epochs", "max-epochs"),
    "folds": ("n-folds", "num-folds"),
    "seed": ("manual-seed", "manualSeed", "random-seed"),
    "output-dir": ("out-dir", "outdir", "save-dir", "results-dir"),
}


def find_shared(
    flags: Iterable[Flag], name: str, extra: Iterable[str] = ()
) -> Flag | None:
    """The flag a shared setting goes to: ``--name`` itself, else one of ``extra`` (a
    repository's own spellings, from the ini), else a common spelling from ``SPELLINGS``."""
    flags = tuple(flags)
    flag = find_flag(flags, name)
    if flag is not None:
        return flag
    for spelling in (*extra, *SPELLINGS.get(name, ())):
        wanted = normalize(spelling)
        for flag in flags:
            if any(o[:2] == "--" and normalize(o) == wanted for o in flag.options):
                return flag
    return None


class ParserInfo:
    """What the analysis learned about one script (read-only).

    Loaded from the cache, the flags stay one JSON string until asked for: a session listing
    thousands of scripts then holds a few objects per script, not dozens (pytest's garbage
    collections walk every live object).
    """

    __slots__ = ("status", "reasons", "deps", "_flags", "_raw")

    def __init__(
        self,
        status: str,
        flags: Iterable[Flag] = (),
        reasons: Iterable[str] = (),
        deps: dict[str, str] | None = None,
        *,
        raw_flags: str | None = None,
    ) -> None:
        self.status = status
        self.reasons: tuple[str, ...] = tuple(reasons)  #: why unresolved
        self.deps: dict[str, str] = dict(deps or {})  #: followed module path -> sha256
        self._flags: tuple[Flag, ...] | None = None if raw_flags is not None else tuple(flags)
        self._raw = raw_flags

    @property
    def flags(self) -> tuple[Flag, ...]:
        """The accepted arguments, in the order they were found."""
        if self._flags is not None:
            return self._flags
        return tuple([Flag(tuple(o), d, r, v, df) for o, d, r, v, df in json.loads(self._raw)])

    def __repr__(self) -> str:
        return f"ParserInfo({self.status!r}, {self.flags!r}, {self.reasons!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ParserInfo):
            return NotImplemented
        return (self.status, self.flags, self.reasons, self.deps) == (
            other.status, other.flags, other.reasons, other.deps
        )

    __hash__ = None  # type: ignore[assignment]

    @property
    def resolved(self) -> bool:
        """True when the accepted flags are known (including "accepts no flags")."""
        return self.status != UNRESOLVED

    def find(self, name: str) -> Flag | None:
        """The flag accepting ``--name`` (any ``_``/``-`` spelling, or its dest), or None."""
        return find_flag(self.flags, name)

    def describe(self) -> str:
        """One line for ``--collect-only``."""
        if self.status == NO_PARSER:
            return "accepts no flags (no command-line parser)"
        if self.status == UNRESOLVED:
            return "command line cannot be read statically (" + "; ".join(self.reasons) + ")"
        flags = self.flags
        if not flags:
            return "(parser with no arguments)"
        return ", ".join(f.display() for f in flags)

    def to_json(self) -> list[Any]:
        """Compact JSON-able form (for the cache): [status, flags as a JSON string, reasons,
        deps]."""
        raw = self._raw
        if raw is None:
            raw = json.dumps([f.to_json() for f in self.flags], separators=(",", ":"))
        return [self.status, raw, list(self.reasons), dict(self.deps)]

    @classmethod
    def from_json(cls, data: list[Any]) -> ParserInfo:
        """Inverse of :meth:`to_json` (the flags are decoded lazily)."""
        status, raw, reasons, deps = data
        if not isinstance(raw, str):
            raise ValueError("flags must be a JSON string")
        return cls(status, (), reasons, deps, raw_flags=raw)


def sha256_bytes(data: bytes) -> str:
    """Hex sha256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


def iter_option_tokens(args: Iterable[str]) -> Iterator[str]:
    """Option strings present in an argument list (``--epochs=3`` -> ``--epochs``)."""
    for token in args:
        if token.startswith("-") and len(token) > 1 and not _is_number(token):
            yield token.split("=", 1)[0]


def _is_number(token: str) -> bool:
    try:
        float(token)
    except ValueError:
        return False
    return True
