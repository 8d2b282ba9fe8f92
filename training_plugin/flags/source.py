"""What the walk, the follower and the guards share: AST helpers, the parsed module and the
state of one analysis.

This module is the flags package's leaf: it imports only ``flags.model``.

- ``dotted`` and ``literal`` read names and literal values off AST nodes;
- ``Module`` indexes one parsed file (top-level functions, import bindings, module-level
  assignments);
- ``State`` collects what the analysis of one script (or of one followed helper) finds (flags,
  reasons, followed modules) and turns it into a ``ParserInfo``; ``Scanned`` is a helper's
  state shared with later scripts.
"""

from __future__ import annotations

import ast
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from training_plugin.flags.model import (
    NO_PARSER,
    RESOLVED,
    UNRESOLVED,
    Flag,
    ParserInfo,
    sha256_bytes,
)

#: How many helper calls deep the analysis follows imported functions (the depth budget of
#: one script's analysis; each helper is scanned once per session, so the breadth needs none).
MAX_DEPTH = 8
#: The reason a script's analysis gives when its helper chain is deeper than ``MAX_DEPTH``.
MSG_DEPTH_BUDGET = f"helper calls nested deeper than the depth budget of {MAX_DEPTH} levels"

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


def walk(node: ast.AST) -> Iterator[ast.AST]:
    """``ast.walk`` (breadth first, the same order) without the expression contexts (``Load``,
    ``Store``, ``Del``: one shared object per kind, never looked at)."""
    todo = deque([node])
    pop, append, extend = todo.popleft, todo.append, todo.extend
    node_type, context = ast.AST, ast.expr_context
    while todo:
        current = pop()
        yield current
        for name in current._fields:
            value = getattr(current, name, None)
            if isinstance(value, list):
                extend([v for v in value if isinstance(v, node_type)])
            elif isinstance(value, node_type) and not isinstance(value, context):
                append(value)


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


def origin(module: Module, func: ast.AST) -> str | None:
    """The imported name a call or decorator refers to: ``hydra.main`` for ``@hydra.main(...)``
    after ``import hydra``, ``fire.Fire`` after ``from fire import Fire``; None if not imported."""
    called = dotted(func)
    if called is None:
        return None
    head, _, rest = called.partition(".")
    binding = module.imports.get(head)
    if binding is None or binding[1]:
        return None
    modname, _level, attr = binding
    base = f"{modname}.{attr}" if attr else modname
    return f"{base}.{rest}" if rest else base


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


#: A followed helper: (module path, function name or ``<parent NAME>``, its bound literals).
Key = tuple[str, str, str]


@dataclass
class State:
    """What the analysis of one script (or of one followed helper, ``key``) has found so far.

    A followed helper gets a ``State`` of its own (``child``), merged into its caller's; when
    its result does not depend on the way it was reached (no cycle back to a caller, no depth
    budget hit, the script itself not entered), the walk shares it with every later script.
    """

    script: Path
    flags: list[Flag] = field(default_factory=list)
    reasons: list[str] = field(default_factory=list)
    deps: dict[str, str] = field(default_factory=dict)
    visited: set[Key] = field(default_factory=set)
    has_parser: bool = False
    #: why a script without an argparse parser may still read the command line
    opaque_reasons: list[str] = field(default_factory=list)
    key: Key | None = None  #: the followed helper this state is about (None: the script)
    callers: frozenset[Key] = frozenset()  #: the helpers on the way here (cycles end there)
    cycles: set[Key] = field(default_factory=set)  #: callers that a call led back to
    deepest: int = 0  #: the deepest helper level entered
    truncated: bool = False  #: the depth budget was hit
    entered_script: bool = False  #: a followed call led into the script's own file
    imported: frozenset[str] = frozenset()  #: top-level names of the absolute imports followed
    #: the helpers scanned for this script so far (one set for the script and its helpers)
    scanned: set[Key] = field(default_factory=set)

    def unresolved(self, reason: str) -> None:
        """Record why the command line cannot be read statically."""
        if reason not in self.reasons:
            self.reasons.append(reason)

    def opaque(self, reason: str) -> None:
        """Something reads the command line without argparse (counts when no parser is seen)."""
        if reason not in self.opaque_reasons:
            self.opaque_reasons.append(reason)

    def enter(self, key: Key, module: Module, depth: int) -> bool:
        """Whether to follow into ``module`` (a helper, a parent parser) from ``depth``: not
        seen with ``key`` yet, not a caller on the way here, and within the depth budget;
        records the module as a dependency."""
        if key in self.visited:
            return False
        if key in self.callers or key == self.key:
            self.cycles.add(key)
            return False
        if depth + 1 > MAX_DEPTH:
            self.unresolved(MSG_DEPTH_BUDGET)
            self.truncated = True
            return False
        self.visited.add(key)
        self.deepest = max(self.deepest, depth + 1)
        if module.path != self.script:
            self.deps[str(module.path)] = module.sha
        else:
            self.entered_script = True
        return True

    def child(self, key: Key) -> State:
        """The state of the helper ``key`` followed from here."""
        callers = self.callers | {self.key} if self.key is not None else self.callers
        return State(script=self.script, key=key, callers=callers, scanned=self.scanned)

    @property
    def shareable(self) -> bool:
        """Whether this helper's result holds for any script that reaches it the same way (at
        the same depth when the budget was hit)."""
        return not (self.cycles - {self.key}) and not self.entered_script

    def merge(self, part: State, depth_offset: int = 0) -> None:
        """Add what a followed helper found (``depth_offset``: how much deeper it starts here
        than where it was found)."""
        self.flags += part.flags
        for reason in part.reasons:
            self.unresolved(reason)
        for reason in part.opaque_reasons:
            self.opaque(reason)
        self.deps.update(part.deps)
        self.has_parser = self.has_parser or part.has_parser
        self.cycles |= part.cycles - {part.key}
        self.deepest = max(self.deepest, part.deepest + depth_offset)
        self.truncated = self.truncated or part.truncated
        self.entered_script = self.entered_script or part.entered_script
        self.imported |= part.imported

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


class Scanned(NamedTuple):
    """A followed helper's result, shared by the scripts that reach it alike."""

    part: State
    depth: int  #: the helper level it was scanned at
    folder: Path  #: the folder of the script it was scanned for (its ``sys.path[0]``)
    local: bool  #: an absolute import it looked up is shadowed by that folder
