"""What the walk, the follower and the guards share: AST helpers, the parsed module and the
state of one analysis.

This module is the flags package's leaf: it imports only ``flags.model`` and ``flags.text``.

- ``dotted`` and ``literal`` read names and literal values off AST nodes;
- ``Module`` indexes one parsed file (top-level functions, import bindings, module-level
  assignments), whole or ``partial`` (its plain definitions parsed when first looked up,
  ``Functions``);
- ``State`` collects what the analysis of one script (or of one followed helper) finds (flags,
  reasons, followed modules) and turns it into a ``ParserInfo``; ``Scanned`` is a helper's
  state shared with later scripts.
"""

from __future__ import annotations

import ast
from collections import deque
from collections.abc import Iterator, MutableMapping
from dataclasses import dataclass, field
from operator import attrgetter
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
from training_plugin.flags.text import Part, decoded, top_level

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
    """A parsed module: its AST, top-level functions and import bindings.

    A module made by ``partial`` has parsed all but its plain top-level ``def`` and ``class``
    statements: ``tree`` holds the others, ``stubs`` the definitions left out (``text.Part``:
    kind, name, first line and where its text lies), and a function's own syntax tree is
    parsed when ``functions`` is first asked for it.  ``whole`` tells which kind a module is."""

    def __init__(self, path: Path, source: bytes, tree: ast.Module,
                 stubs: tuple[str, list[Part]] | None = None) -> None:
        """``stubs``: for a ``partial`` module, its text and the definitions ``tree`` leaves
        out."""
        self.path = path
        self.sha = sha256_bytes(source)
        self.tree = tree
        #: whether ``tree`` holds every statement's syntax tree (False: made by ``partial``)
        self.whole = stubs is None
        self._source = None if stubs is None else source
        #: the plain definitions that ``tree`` leaves out, in order (``partial``)
        self.stubs: list[Part] = [] if stubs is None else stubs[1]
        self.functions: dict[str, FunctionNode] | Functions = (
            {} if stubs is None else Functions(path, source, stubs[0]))
        #: local name -> (module, level, attribute or None for ``import module``)
        self.imports: dict[str, tuple[str, int, str | None]] = {}
        self.assigned: dict[str, ast.AST] = {}
        nodes: list[Any] = tree.body
        if self.stubs:  # in the order of the file, as the whole tree would be indexed
            nodes = sorted(nodes + self.stubs, key=attrgetter("lineno"))
        for node in nodes:
            if isinstance(node, Part):
                if node.kind != "class":
                    self.functions[node.name] = node  # type: ignore[assignment]
            else:
                self._index(node)

    @classmethod
    def partial(cls, path: Path, source: bytes) -> Module | None:
        """``path``'s module parsed but for its plain top-level definitions, or None when that
        cannot be done here or would not pay (``text.top_level`` cannot split its text, it has
        no such definition, or its top level does not parse: then ``ast.parse`` of the whole
        file says why).  The text is split where its top-level statements begin
        (``text.top_level``); a syntax error inside a definition's body is not seen."""
        text = decoded(source)
        parts = None if text is None else top_level(text)
        if not parts:
            return None
        lazy = [p for p in parts if p.kind]
        if not lazy:
            return None  # nothing to leave for later: ast.parse alone is cheaper
        pieces, at = [], 0  # the text parsed keeps its lines: a definition's become blank
        for part in lazy:
            pieces += [text[at:part.start], "\n" * text.count("\n", part.start, part.end)]
            at = part.end
        pieces.append(text[at:])
        try:
            eager = ast.parse("".join(pieces), filename=str(path))
        except (SyntaxError, ValueError, RecursionError):
            return None
        return cls(path, source, eager, stubs=(text, lazy))

    def complete(self) -> None:
        """Parse the whole file (a ``partial`` module): its tree and index then hold every
        statement's syntax tree."""
        if self._source is not None:
            self.__init__(self.path, self._source,  # type: ignore[misc]
                          ast.parse(self._source, filename=str(self.path)))

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


class Functions(MutableMapping[str, FunctionNode]):
    """A ``partial`` module's top-level functions by name; a definition left out of its tree (a
    ``text.Part``) is parsed when first looked up, ``in`` included.  Should its text not parse
    alone, the whole file is, for that function; should the whole file not parse either (a
    syntax error in that function's body), the name is forgotten: a call of it is then one the
    analysis cannot follow, as a call into a module that does not parse is.  It holds the
    module's path, bytes and text, not the module: no reference cycle keeps a module alive
    while the cyclic garbage collector is paused (``collect.pipeline``)."""

    _KINDS = {"def": ast.FunctionDef, "async def": ast.AsyncFunctionDef}

    def __init__(self, path: Path, source: bytes, text: str) -> None:
        self._path, self._source, self._text = path, source, text
        self._nodes: dict[str, FunctionNode | Part] = {}

    def __contains__(self, name: object) -> bool:
        node = self._nodes.get(name)  # type: ignore[call-overload]
        if node is None:
            return False
        return not isinstance(node, Part) or self._parsed(str(name)) is not None

    def __getitem__(self, name: str) -> FunctionNode:
        node = self._nodes[name]
        if not isinstance(node, Part):
            return node
        parsed = self._parsed(name)
        if parsed is None:
            raise KeyError(name)
        return parsed

    def _parsed(self, name: str) -> FunctionNode | None:
        """The function's own syntax tree, parsed now and kept (None, the name forgotten, when
        neither its text nor the whole file parses)."""
        part = self._nodes[name]
        assert isinstance(part, Part)
        node: Any = None
        try:  # its lines are the file's: as many newlines before it as lines above it
            body = ast.parse("\n" * (part.lineno - 1) + self._text[part.start:part.end]).body
        except (SyntaxError, ValueError, RecursionError):
            body = []
        if len(body) == 1 and type(body[0]) is self._KINDS[part.kind] and body[0].name == name:
            node = body[0]
        else:
            try:
                tree = ast.parse(self._source, filename=str(self._path))
            except (SyntaxError, ValueError, RecursionError):
                node = None
            else:
                node = Module(self._path, self._source, tree).functions.get(name)
        if node is None:
            del self._nodes[name]
            return None
        self._nodes[name] = node
        return node

    def __setitem__(self, name: str, node: FunctionNode | Part) -> None:
        self._nodes[name] = node

    def __delitem__(self, name: str) -> None:
        del self._nodes[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._nodes)

    def __len__(self) -> int:
        return len(self._nodes)


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
