"""What the walk, the follower and the guards share: AST helpers, the parsed module and the
state of one analysis.

This module is the flags package's leaf: it imports only ``flags.model``.

- ``dotted`` and ``literal`` read names and literal values off AST nodes;
- ``Module`` indexes one parsed file (top-level functions, import bindings, module-level
  assignments);
- ``State`` collects what the analysis of one script finds (flags, reasons, followed modules)
  and turns it into a ``ParserInfo``.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from training_plugin.flags.model import (
    NO_PARSER,
    RESOLVED,
    UNRESOLVED,
    Flag,
    ParserInfo,
    sha256_bytes,
)

#: How many helper calls deep the analysis follows imported functions.
MAX_DEPTH = 8

#: A top-level function definition.
FunctionNode = ast.FunctionDef | ast.AsyncFunctionDef


def literal(node: ast.AST | None) -> tuple[bool, Any]:
    """``(True, value)`` for a literal node (``ast.literal_eval``), else ``(False, None)``."""
    if node is None:
        return False, None
    try:
        return True, ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return False, None


def dotted(node: ast.AST) -> str | None:
    """``a.b.c`` for Name/Attribute chains, else None."""
    parts: list[str] = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
        return ".".join(reversed(parts))
    return None


class Module:
    """A parsed module: its AST, top-level functions and import bindings."""

    def __init__(self, path: Path, source: bytes, tree: ast.Module) -> None:
        self.path = path
        self.sha = sha256_bytes(source)
        self.tree = tree
        self.functions: dict[str, FunctionNode] = {}
        #: local name -> (module, level, attribute or None for ``import module``)
        self.imports: dict[str, tuple[str, int, str | None]] = {}
        self.assigned: dict[str, ast.AST] = {}
        for node in tree.body:
            self._index(node)

    @property
    def is_package(self) -> bool:
        """True for a package's ``__init__.py`` (a module that has submodules)."""
        return self.path.name == "__init__.py"

    def _index(self, node: ast.stmt) -> None:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            self.functions[node.name] = node
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.asname:
                    self.imports[alias.asname] = (alias.name, 0, None)
                else:
                    head = alias.name.split(".")[0]
                    self.imports[head] = (head, 0, None)
        elif isinstance(node, ast.ImportFrom):
            for alias in node.names:
                if alias.name != "*":
                    self.imports[alias.asname or alias.name] = (
                        node.module or "",
                        node.level,
                        alias.name,
                    )
        elif isinstance(node, ast.Assign):
            for target in node.targets:
                if isinstance(target, ast.Name):
                    self.assigned[target.id] = node.value
        elif isinstance(node, (ast.If, ast.Try)):
            for child in ast.iter_child_nodes(node):
                if isinstance(child, ast.stmt):
                    self._index(child)


@dataclass
class State:
    """What the analysis of one script has found so far."""

    script: Path
    flags: list[Flag] = field(default_factory=list)
    reasons: list[str] = field(default_factory=list)
    deps: dict[str, str] = field(default_factory=dict)
    visited: set[tuple[str, str, str]] = field(default_factory=set)
    has_parser: bool = False
    #: why a script without an argparse parser may still read the command line
    opaque_reasons: list[str] = field(default_factory=list)

    def unresolved(self, reason: str) -> None:
        """Record why the command line cannot be read statically."""
        if reason not in self.reasons:
            self.reasons.append(reason)

    def opaque(self, reason: str) -> None:
        """Something reads the command line without argparse (counts when no parser is seen)."""
        if reason not in self.opaque_reasons:
            self.opaque_reasons.append(reason)

    def enter(self, key: tuple[str, str, str], module: Module, depth: int) -> bool:
        """Whether to follow into ``module`` (a helper, a parent parser) from ``depth``: not
        seen with ``key`` yet and not too deep; records the module as a dependency."""
        if key in self.visited:
            return False
        if depth + 1 > MAX_DEPTH:
            self.unresolved(f"helper calls nested deeper than {MAX_DEPTH} levels")
            return False
        self.visited.add(key)
        if module.path != self.script:
            self.deps[str(module.path)] = module.sha
        return True

    def result(self) -> ParserInfo:
        """The analysis' conclusion."""
        deps = dict(sorted(self.deps.items()))
        if self.reasons:
            return ParserInfo(UNRESOLVED, tuple(self.flags), tuple(self.reasons), deps)
        if not self.has_parser:
            if self.opaque_reasons:
                return ParserInfo(UNRESOLVED, (), tuple(self.opaque_reasons), deps)
            return ParserInfo(NO_PARSER, (), (), deps)
        unique: dict[tuple[str, ...] | str, Flag] = {}
        for flag in self.flags:
            unique.setdefault(flag.options or flag.dest, flag)
        return ParserInfo(RESOLVED, tuple(unique.values()), (), deps)
