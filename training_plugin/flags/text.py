"""Reading a module's code off its text, without a syntax tree: where its top-level statements
begin, for ``source.Module.partial``.  This module imports nothing of the plugin.

- ``decoded``: a file's text, or None when its text cannot be read this way (another encoding,
  bytes that are not UTF-8, f-strings from Python 3.12 on, which may nest quotes);
- ``NOT_CODE``: comments and string literals, as the tokenizer meets them from the left;
- ``top_level``: where a module's top-level statements begin, and which of them are plain
  ``def`` and ``class`` statements (the parts a partial parse leaves for later).
"""

from __future__ import annotations

import re
import sys
from typing import NamedTuple

#: Comments and string literals, as the tokenizer meets them from the left (up to Python 3.11
#: an f-string holds no quote of its own kind, so every string ends at its first unescaped
#: closing quote).
NOT_CODE = re.compile(r'#[^\n]*|"""[^"\\]*(?:(?:\\.|"(?!""))[^"\\]*)*"""|'
                      r"'''[^'\\]*(?:(?:\\.|'(?!''))[^'\\]*)*'''|"
                      r'"[^"\\\n]*(?:\\.[^"\\\n]*)*"|' r"'[^'\\\n]*(?:\\.[^'\\\n]*)*'", re.DOTALL)
_COOKIE = re.compile(rb"^[ \t\f]*#.*?coding[:=][ \t]*([-\w.]+)", re.MULTILINE)
_UTF8 = re.compile(rb"(?i)(?:utf[-_]?8|ascii|us-ascii)(?:[-_][-\w.]*)?$")
#: f-strings and t-strings: from Python 3.12 they may nest quotes of their own kind.
_TEMPLATE = re.compile(r"(?<![\w])(?:[rR]?[fFtT]|[fFtT][rR])[\"']")
#: A line that begins at column 0 (in code whose comments and strings are blanked).
_LINE_AT_0 = re.compile(r"^\S", re.MULTILINE)
#: The clauses that go on a compound statement begun above.
_CLAUSE = re.compile(r"(?:else|elif|except|finally)\b")
_DEF = re.compile(r"(async[ \t]+)?def[ \t]+([A-Za-z_][A-Za-z0-9_]*)[ \t]*\(")
_CLASS = re.compile(r"class[ \t]+([A-Za-z_][A-Za-z0-9_]*)[ \t]*[(:]")


def decoded(source: bytes) -> str | None:
    r"""``source`` as text (a UTF-8 BOM dropped, every line ending in ``\n`` as the tokenizer
    reads ``\r\n`` and ``\r``), or None when it cannot be read as UTF-8 here: a coding cookie
    of another encoding, bytes that are not UTF-8, or (from Python 3.12 on) an f-string, which
    may nest quotes that ``NOT_CODE`` would misread."""
    second = source.find(b"\n", source.find(b"\n") + 1)
    cookie = _COOKIE.search(source, 0, second if second >= 0 else len(source))
    if cookie and not _UTF8.match(cookie.group(1)):
        return None
    try:
        text = source.decode("utf-8-sig")
    except UnicodeDecodeError:
        return None
    if sys.version_info >= (3, 12) and _TEMPLATE.search(text):
        return None
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    return text


def _blank(match: re.Match[str]) -> str:
    """A comment or string literal as blanks of the same length, its newlines kept; a string
    keeps its opening quote, so that a statement made of a string still begins a line."""
    found = match.group()
    if found[0] == "#":
        return " " * len(found)
    if "\n" not in found:
        return found[0] + " " * (len(found) - 1)
    return found[0] + "\n".join(" " * len(part) for part in found.split("\n"))[1:]


class Part(NamedTuple):
    """One top-level statement of a module (with the statements after a ``;`` on its line, and
    what follows it up to the next one: comments, blank lines): ``kind`` "def", "async def" or
    "class" for a plain (undecorated) definition named ``name``, else "" (any other statement,
    a decorated definition)."""

    start: int  #: offset of its first character in the text
    end: int  #: offset where the next statement begins (the text's length for the last)
    lineno: int  #: its first line (1-based), named as an AST node's
    kind: str
    name: str


def top_level(text: str) -> list[Part] | None:
    r"""The top-level statements of ``text`` in order, found without parsing it (the text before
    the first one, blank lines and comments, is not a part), or None when the text is not one
    this reading can split (a form feed, which resets a line's indentation; unbalanced
    brackets).  Lines end in ``\n`` only (as ``decoded`` gives them).

    For the text of a module that compiles, every line that begins at column 0 outside a string
    and a comment, at bracket depth 0 and not after a backslash continuation, begins a
    top-level statement, or goes on one (``else``, ``elif``, ``except``, ``finally``; the
    decorated definition after its decorators).  Comments and strings are found by
    ``NOT_CODE``; offsets and lines in the blanked code are those of the text."""
    if "\f" in text:
        return None
    code = NOT_CODE.sub(_blank, text)
    begins: list[int] = []
    depth, last = 0, 0
    for match in _LINE_AT_0.finditer(code):
        at = match.start()
        between = code[last:at]
        depth += (between.count("(") + between.count("[") + between.count("{")
                  - between.count(")") - between.count("]") - between.count("}"))
        last = at
        if depth < 0:
            return None
        if depth == 0 and not (at >= 2 and code[at - 2] == "\\"):
            begins.append(at)
    tail = code[last:]
    if depth + tail.count("(") + tail.count("[") + tail.count("{") != (
            tail.count(")") + tail.count("]") + tail.count("}")):
        return None
    heads: list[tuple[int, str, str]] = []
    decorated = False
    for at in begins:
        if _CLAUSE.match(code, at):
            continue
        if decorated:
            decorated = code.startswith("@", at)  # more decorators, or the definition itself
            continue
        if code.startswith("@", at):
            decorated = True
            heads.append((at, "", ""))
        elif found := _DEF.match(code, at):
            heads.append((at, "async def" if found.group(1) else "def", found.group(2)))
        elif found := _CLASS.match(code, at):
            heads.append((at, "class", found.group(1)))
        else:
            heads.append((at, "", ""))
    parts: list[Part] = []
    line = 1
    for index, (at, kind, name) in enumerate(heads):
        line += text.count("\n", heads[index - 1][0] if index else 0, at)
        end = heads[index + 1][0] if index + 1 < len(heads) else len(text)
        parts.append(Part(at, end, line, kind, name))
    return parts
