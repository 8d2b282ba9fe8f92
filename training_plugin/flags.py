"""What a training script accepts on its command line, learned statically (AST only).

A script is never imported or executed.  The analysis finds every real ``add_argument`` call in
the script (module level, functions, argument groups, mutually exclusive groups, parent
parsers) and follows the helper functions the script calls from modules inside the repository
(``from aimedres.training.common import add_common_args``, relative imports, ``import pkg.mod``,
src-layout packages), transitively, with a depth limit and cycle protection.  Strings, comments
and docstrings never count: only ``ast.Call`` nodes do.

Three outcomes (``ParserInfo.status``):

- ``"resolved"``: the flags are known;
- ``"none"``: the script has no command-line parser at all (it accepts no flags);
- ``"unresolved"``: something cannot be known statically (computed option strings,
  ``**kwargs``, ``parse_known_args``, sub-commands, a parser handed to code outside the
  repository, another CLI library, a syntax error).  Nothing is guessed: callers forward no
  shared flags to such a script.
"""

from __future__ import annotations

import ast
import hashlib
import json
import os
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

#: How many helper calls deep the analysis follows imported functions.
MAX_DEPTH = 8
#: Bump when the analysis changes, so cached results of older versions are ignored.
ANALYSIS_VERSION = 5

RESOLVED = "resolved"
NO_PARSER = "none"
UNRESOLVED = "unresolved"

_NO_VALUE_ACTIONS = frozenset(
    {"store_true", "store_false", "store_const", "append_const", "count", "help", "version"}
)
_OTHER_CLI_MODULES = frozenset(
    {"click", "typer", "fire", "docopt", "hydra", "jsonargparse", "simple_parsing", "tyro"}
)
#: Calls that may receive a parser without adding flags to it.
_HARMLESS_CALLS = frozenset(
    {"print", "repr", "str", "vars", "id", "type", "isinstance", "len", "getattr", "hasattr"}
)
#: argparse methods called on parsers/groups; never helpers to follow.
_PARSER_METHODS = frozenset(
    {
        "add_argument",
        "add_argument_group",
        "add_mutually_exclusive_group",
        "parse_args",
        "parse_known_args",
        "parse_intermixed_args",
        "set_defaults",
        "add_subparsers",
        "print_help",
        "print_usage",
        "format_help",
        "error",
        "exit",
        "get_default",
    }
)


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
            return "parser not resolved statically (" + "; ".join(self.reasons) + ")"
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


def _literal(node: ast.AST | None) -> tuple[bool, Any]:
    if node is None:
        return False, None
    try:
        return True, ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return False, None


def _dotted(node: ast.AST) -> str | None:
    """``a.b.c`` for Name/Attribute chains, else None."""
    parts: list[str] = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
        return ".".join(reversed(parts))
    return None


_UNKNOWN = object()


def _value_of(node: ast.AST, env: dict[str, Any], module: _Module) -> Any:
    """A call-site argument's value: a literal, a bound name, a module-level literal constant."""
    ok, value = _literal(node)
    if ok:
        return value
    if isinstance(node, ast.Name):
        if node.id in env:
            return env[node.id]
        assigned = module.assigned.get(node.id)
        if assigned is not None:
            ok, value = _literal(assigned)
            if ok:
                return value
    return _UNKNOWN


def _bind(
    call: ast.Call, funcdef: ast.FunctionDef | ast.AsyncFunctionDef, env: dict[str, Any],
    module: _Module,
) -> dict[str, Any]:
    """Known parameter values of ``funcdef`` for this call (unknown ones are left out)."""
    if any(isinstance(a, ast.Starred) for a in call.args) or any(
        k.arg is None for k in call.keywords
    ):
        return {}
    args = funcdef.args
    positional = [*args.posonlyargs, *args.args]
    bound: dict[str, Any] = {}
    for param, default in zip(positional[len(positional) - len(args.defaults):], args.defaults):
        ok, value = _literal(default)
        bound[param.arg] = value if ok else _UNKNOWN
    for param, default in zip(args.kwonlyargs, args.kw_defaults):
        if default is not None:
            ok, value = _literal(default)
            bound[param.arg] = value if ok else _UNKNOWN
    for param, arg in zip(positional, call.args):
        bound[param.arg] = _value_of(arg, env, module)
    for kw in call.keywords:
        bound[str(kw.arg)] = _value_of(kw.value, env, module)
    return {name: value for name, value in bound.items() if value is not _UNKNOWN}


def _decide(test: ast.AST, env: dict[str, Any]) -> bool | None:
    """The truth of an ``if`` test from bound names, or None when it cannot be known."""
    if isinstance(test, ast.Constant):
        return bool(test.value)
    if isinstance(test, ast.Name):
        return bool(env[test.id]) if test.id in env else None
    if isinstance(test, ast.UnaryOp) and isinstance(test.op, ast.Not):
        inner = _decide(test.operand, env)
        return None if inner is None else not inner
    if isinstance(test, ast.BoolOp):
        values = [_decide(v, env) for v in test.values]
        if isinstance(test.op, ast.And):
            if False in values:
                return False
            return True if all(v is True for v in values) else None
        if True in values:
            return True
        return False if all(v is False for v in values) else None
    if (
        isinstance(test, ast.Compare)
        and len(test.ops) == 1
        and isinstance(test.left, ast.Name)
        and test.left.id in env
    ):
        ok, right = _literal(test.comparators[0])
        if not ok:
            return None
        left, op = env[test.left.id], test.ops[0]
        try:
            if isinstance(op, ast.Is):
                return left is right if right is None or isinstance(right, bool) else None
            if isinstance(op, ast.IsNot):
                return left is not right if right is None or isinstance(right, bool) else None
            if isinstance(op, ast.Eq):
                return bool(left == right)
            if isinstance(op, ast.NotEq):
                return bool(left != right)
        except Exception:  # noqa: BLE001 - an odd literal comparison is simply undecided
            return None
    return None


def _terminates(stmts: list[ast.stmt], env: dict[str, Any]) -> bool:
    """True when ``stmts`` certainly end in ``return``/``raise`` (given ``env``)."""
    for stmt in stmts:
        if isinstance(stmt, (ast.Return, ast.Raise)):
            return True
        if isinstance(stmt, ast.If):
            decided = _decide(stmt.test, env)
            if decided is True and _terminates(stmt.body, env):
                return True
            if decided is False and _terminates(stmt.orelse, env):
                return True
    return False


def _reachable(stmts: list[ast.stmt], env: dict[str, Any]) -> list[ast.stmt]:
    """``stmts`` up to the first one that certainly returns (an early ``return``)."""
    for i, stmt in enumerate(stmts):
        if _terminates([stmt], env):
            return stmts[: i + 1]
    return stmts


def _walk_pruned(node: ast.AST, env: dict[str, Any]) -> Iterator[ast.AST]:
    """``ast.walk`` (breadth first) that skips ``if`` branches decided false by ``env`` and
    statements after an early ``return`` decided by ``env``."""
    todo = deque([node])
    while todo:
        current = todo.popleft()
        yield current
        if not env:
            todo.extend(ast.iter_child_nodes(current))
            continue
        if isinstance(current, ast.If):
            decided = _decide(current.test, env)
            if decided is not None:
                todo.append(current.test)
                todo.extend(_reachable(current.body if decided else current.orelse, env))
                continue
        for name, value in ast.iter_fields(current):
            if isinstance(value, list):
                items = _reachable(value, env) if name in ("body", "orelse") else value
                todo.extend(v for v in items if isinstance(v, ast.AST))
            elif isinstance(value, ast.AST):
                todo.append(value)


class _Module:
    """A parsed module: its AST, top-level functions and import bindings."""

    def __init__(self, path: Path, source: bytes, tree: ast.Module) -> None:
        self.path = path
        self.sha = sha256_bytes(source)
        self.tree = tree
        self.functions: dict[str, ast.FunctionDef | ast.AsyncFunctionDef] = {}
        self.imports: dict[str, tuple[str, int, str | None]] = {}  # name -> (module, level, attr)
        self.assigned: dict[str, ast.AST] = {}
        for node in tree.body:
            self._index(node)

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


class Analyzer:
    """Static argparse analysis with an in-memory module cache (one per session)."""

    def __init__(self, rootdir: Path) -> None:
        self.rootdir = Path(os.path.abspath(rootdir))
        self._real_root = os.path.realpath(self.rootdir)
        self._modules: dict[str, _Module | None] = {}

    # -- modules -------------------------------------------------------------------------------
    def _load(self, path: Path) -> _Module | None:
        key = os.path.abspath(path)
        if key in self._modules:
            return self._modules[key]
        module: _Module | None
        try:
            source = Path(key).read_bytes()
            module = _Module(Path(key), source, ast.parse(source, filename=key))
        except (OSError, SyntaxError, ValueError, RecursionError):
            module = None
        self._modules[key] = module
        return module

    def _inside_root(self, path: str) -> bool:
        real = os.path.realpath(path)
        return real == self._real_root or real.startswith(self._real_root + os.sep)

    def resolve_module(self, name: str, *, level: int, from_file: Path, script: Path) -> Path | None:
        """File of module ``name`` (``level`` dots relative to ``from_file``) inside rootdir."""
        parts = [p for p in name.split(".") if p]
        if level > 0:
            base = from_file.parent
            for _ in range(level - 1):
                base = base.parent
            bases = [base]
        else:
            bases = [script.parent, self.rootdir, self.rootdir / "src"]
        for base in bases:
            candidate = base.joinpath(*parts) if parts else base
            for path in (candidate.with_suffix(".py") if parts else None, candidate / "__init__.py"):
                if path is not None and path.is_file() and self._inside_root(str(path)):
                    return path
        return None

    def _resolve_name(
        self, module: _Module, name: str, script: Path, depth: int = 0
    ) -> tuple[_Module, str | None] | None:
        """Where ``name`` used in ``module`` is defined: (module, function name or None=module)."""
        if depth > MAX_DEPTH:
            return None
        if name in module.functions:
            return module, name
        if name in module.assigned:
            value = module.assigned[name]
            if isinstance(value, ast.Name) and value.id != name:
                return self._resolve_name(module, value.id, script, depth + 1)
            return None
        binding = module.imports.get(name)
        if binding is None:
            return None
        modname, level, attr = binding
        if attr is None:
            path = self.resolve_module(modname, level=level, from_file=module.path, script=script)
            target = self._load(path) if path else None
            return (target, None) if target else None
        path = self.resolve_module(modname, level=level, from_file=module.path, script=script)
        target = self._load(path) if path else None
        if target is not None and target is not module:
            found = self._resolve_name(target, attr, script, depth + 1)
            if found is not None:
                return found
        # `from pkg import submodule`
        sub = ".".join(p for p in (modname, attr) if p)
        path = self.resolve_module(sub, level=level, from_file=module.path, script=script)
        target = self._load(path) if path else None
        return (target, None) if target else None

    def _submodule(self, package: _Module, name: str) -> _Module | None:
        """Module ``name`` beside ``package``'s file (``pkg/__init__.py`` -> ``pkg/name.py``
        or ``pkg/name/__init__.py``) inside rootdir, parsed; None if there is none."""
        sub = package.path.parent / name
        path = next((p for p in (sub.with_suffix(".py"), sub / "__init__.py") if p.is_file()), None)
        return self._load(path) if path and self._inside_root(str(path)) else None

    def _resolve_call(
        self, module: _Module, func: ast.AST, script: Path
    ) -> tuple[_Module, str] | None:
        """The repository function a call expression refers to, or None."""
        dotted = _dotted(func)
        if dotted is None:
            return None
        head, *rest = dotted.split(".")
        found = self._resolve_name(module, head, script)
        if found is None:
            return None
        target, fname = found
        for i, part in enumerate(rest):
            if fname is not None:
                return None  # attribute of a function
            if part in target.functions:
                fname = part
                if i != len(rest) - 1:
                    return None
                continue
            inner = self._resolve_name(target, part, script)
            if inner is None:
                loaded = self._submodule(target, part)
                if loaded is None:
                    return None
                target = loaded
            else:
                target, fname = inner
        if fname is None:
            return None
        return target, fname

    # -- analysis ------------------------------------------------------------------------------
    def analyze(self, script: Path) -> ParserInfo:
        """Analyze one script (never imports or runs it)."""
        script = Path(os.path.abspath(script))
        try:
            source = script.read_bytes()
        except OSError as exc:
            return ParserInfo(UNRESOLVED, reasons=(f"cannot read the script: {exc.strerror}",))
        try:
            tree = ast.parse(source, filename=str(script))
        except SyntaxError as exc:
            return ParserInfo(UNRESOLVED, reasons=(f"syntax error, line {exc.lineno}: {exc.msg}",))
        except (ValueError, RecursionError) as exc:
            return ParserInfo(UNRESOLVED, reasons=(f"cannot parse the script: {exc}",))
        module = _Module(script, source, tree)
        self._modules[str(script)] = module
        state = _State(script=script)
        self._scan(module, [tree], state, depth=0)
        return state.result(self.rootdir)

    def _scan(
        self,
        module: _Module,
        roots: list[ast.AST],
        state: _State,
        depth: int,
        env: dict[str, Any] | None = None,
    ) -> None:
        """Collect add_argument calls under ``roots`` and follow repository helper calls.

        ``env`` binds a followed helper's parameters to the literal values of the call site
        (or the helper's literal defaults); ``if`` branches decidable from them are pruned.
        """
        env = env or {}
        nodes = [n for root in roots for n in _walk_pruned(root, env)]
        calls = [n for n in nodes if isinstance(n, ast.Call)]
        parser_names: set[str] = set()
        for node in ast.walk(module.tree) if depth == 0 else nodes:
            if isinstance(node, ast.Assign) and isinstance(node.value, ast.Call):
                made = _dotted(node.value.func) or ""
                if made.split(".")[-1] in (
                    "ArgumentParser", "add_argument_group", "add_mutually_exclusive_group"
                ):
                    parser_names.update(_dotted(t) or "" for t in node.targets)
            elif isinstance(node, (ast.Import, ast.ImportFrom)):
                names = [a.name for a in node.names]
                mod = node.module if isinstance(node, ast.ImportFrom) else None
                for top in [(mod or "").split(".")[0], *[n.split(".")[0] for n in names]]:
                    if top in _OTHER_CLI_MODULES:
                        state.unresolved(f"uses {top} (not argparse)")
                if mod == "absl" and "flags" in names:
                    state.unresolved("uses absl.flags (not argparse)")
            elif (
                depth == 0
                and isinstance(node, ast.Attribute)
                and node.attr == "argv"
                and isinstance(node.value, ast.Name)
                and node.value.id == "sys"
            ):
                state.uses_sys_argv = True
        for call in calls:
            func = call.func
            if isinstance(func, ast.Attribute) and func.attr in _PARSER_METHODS:
                receiver = _dotted(func.value)
                if receiver:
                    parser_names.add(receiver)
                if func.attr == "add_argument":
                    state.has_parser = True
                    self._add_argument(call, module, state)
                elif func.attr == "parse_known_args":
                    state.unresolved("uses parse_known_args (unknown flags are passed on)")
                elif func.attr == "add_subparsers":
                    state.unresolved("uses sub-commands (add_subparsers)")
                continue
            dotted = _dotted(func)
            if dotted and dotted.split(".")[-1] == "ArgumentParser":
                state.has_parser = True
                for kw in call.keywords:
                    if kw.arg == "parents" and isinstance(kw.value, (ast.List, ast.Tuple)):
                        for parent in kw.value.elts:
                            if not isinstance(parent, ast.Call):  # calls are followed below
                                self._follow_parent(module, parent, state, depth)
                continue
        for call in calls:
            func = call.func
            if isinstance(func, ast.Attribute) and func.attr in _PARSER_METHODS:
                continue
            dotted = _dotted(func)
            if dotted is None or dotted.split(".")[-1] == "ArgumentParser":
                continue
            head = dotted.split(".")[0]
            if head in parser_names and "." in dotted:
                continue  # some other method of a parser object
            is_local = "." not in dotted and dotted in module.functions
            if is_local and depth == 0:
                continue  # the whole script is scanned already
            target = self._resolve_call(module, func, state.script)
            if target is None:
                passes_parser = any(
                    _dotted(a) in parser_names
                    for a in [*call.args, *(k.value for k in call.keywords)]
                    if not isinstance(a, ast.Starred)
                )
                if passes_parser and dotted not in _HARMLESS_CALLS:
                    state.unresolved(
                        f"the parser is passed to {dotted}() at line {call.lineno}, "
                        "which is not in the repository"
                    )
                continue
            target_module, fname = target
            funcdef = target_module.functions[fname]
            callee_env = _bind(call, funcdef, env, module)
            key = (str(target_module.path), fname, repr(sorted(callee_env.items())))
            if not state.enter(key, target_module, depth):
                continue
            self._scan(target_module, [funcdef], state, depth + 1, callee_env)

    def _resolve_assigned(
        self, module: _Module, dotted: str, script: Path, depth: int = 0
    ) -> tuple[_Module, str] | None:
        """The repository module and module-level name that ``dotted`` (used in ``module``)
        is assigned to, e.g. ``base`` from ``from common import base``; None if unknown."""
        if depth > MAX_DEPTH:
            return None
        head, _, rest = dotted.partition(".")
        if not rest:
            if head in module.assigned:
                return module, head
            binding = module.imports.get(head)
            if binding is None or binding[2] is None:
                return None
            modname, level, attr = binding
            path = self.resolve_module(modname, level=level, from_file=module.path, script=script)
            target = self._load(path) if path else None
            if target is None or target is module:
                return None
            return self._resolve_assigned(target, attr, script, depth + 1)
        found = self._resolve_name(module, head, script)
        if found is not None and found[1] is None:
            target: _Module | None = found[0]
        elif head not in module.assigned and head not in module.imports:
            target = self._submodule(module, head)
        else:
            target = None
        if target is None or target is module:
            return None
        return self._resolve_assigned(target, rest, script, depth + 1)

    def _follow_parent(
        self, module: _Module, node: ast.AST, state: _State, depth: int
    ) -> None:
        """``ArgumentParser(parents=[base])`` with ``base`` a parser built at module level in
        a repository module: its ``add_argument`` calls (and its groups') count, as do the
        helpers it is passed to there."""
        where = f"line {getattr(node, 'lineno', '?')}"
        dotted = _dotted(node)
        found = self._resolve_assigned(module, dotted, state.script) if dotted else None
        if found is None:
            if module.path == state.script and dotted in module.assigned:
                return  # built in the script itself: the whole script is scanned already
            state.unresolved(f"parent parser {dotted or '<expression>'} ({where}) is not built "
                             "in the repository")
            return
        target, name = found
        if target.path == state.script and depth == 0:
            return
        if not state.enter((str(target.path), f"<parent {name}>", ""), target, depth):
            return
        value = target.assigned[name]
        top = [s for s in target.tree.body
               if not isinstance(s, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))]
        names = {name}
        for stmt in top:  # groups of the parent: g = base.add_argument_group(...)
            for n in ast.walk(stmt):
                if (isinstance(n, ast.Assign) and isinstance(n.value, ast.Call)
                        and isinstance(n.value.func, ast.Attribute)
                        and n.value.func.attr in ("add_argument_group",
                                                  "add_mutually_exclusive_group")
                        and _dotted(n.value.func.value) in names):
                    names.update(_dotted(t) or "" for t in n.targets)
        followed: list[ast.AST] = []
        if isinstance(value, ast.Call) and (_dotted(value.func) or "").split(".")[-1] != (
            "ArgumentParser"
        ):
            followed.append(value)  # base = make_base(): the helper builds it
        for stmt in top:
            for n in ast.walk(stmt):
                if not isinstance(n, ast.Call):
                    continue
                func = n.func
                if isinstance(func, ast.Attribute) and _dotted(func.value) in names:
                    if func.attr == "add_argument":
                        self._add_argument(n, target, state)
                elif any(_dotted(a) in names for a in n.args):
                    followed.append(n)  # add_common_args(base) at module level
        if followed:
            self._scan(target, followed, state, depth + 1)

    def _add_argument(self, call: ast.Call, module: _Module, state: _State) -> None:
        where = f"line {call.lineno}" + (
            "" if module.path == state.script else f" of {os.path.basename(module.path)}"
        )
        options: list[str] = []
        for arg in call.args:
            if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                options.append(arg.value)
            else:
                state.unresolved(f"add_argument with computed option strings ({where})")
                return
        kwargs: dict[str, ast.AST] = {}
        for kw in call.keywords:
            if kw.arg is None:
                state.unresolved(f"add_argument(**kwargs) ({where})")
                return
            kwargs[kw.arg] = kw.value
        if not options:
            state.unresolved(f"add_argument without option strings ({where})")
            return
        positional = not options[0].startswith("-")
        action_node = kwargs.get("action")
        action: str | None = None
        if isinstance(action_node, ast.Constant) and isinstance(action_node.value, str):
            action = action_node.value
        elif action_node is not None:
            action = _dotted(action_node) or "<custom>"
        ok_nargs, nargs = _literal(kwargs.get("nargs"))
        takes_value = not (
            (action in _NO_VALUE_ACTIONS) or (ok_nargs and nargs == 0)
            or (action or "").endswith("BooleanOptionalAction")
        )
        ok_default, default = _literal(kwargs.get("default"))
        if not ok_default or not isinstance(default, (str, int, float, bool, type(None))):
            default = None
        ok_req, required = _literal(kwargs.get("required"))
        if positional:
            dest = options[0]
            is_required = not (ok_nargs and nargs in ("?", "*")) and "default" not in kwargs
            flag = Flag((), dest, is_required, True, default)
        else:
            ok_dest, dest = _literal(kwargs.get("dest"))
            if not ok_dest or not isinstance(dest, str):
                longs = [o for o in options if o.startswith("--")]
                dest = (longs[0] if longs else options[0]).lstrip("-").replace("-", "_")
            all_options = list(options)
            if (action or "").endswith("BooleanOptionalAction"):
                all_options += ["--no-" + o[2:] for o in options if o.startswith("--")]
            flag = Flag(tuple(all_options), dest, bool(ok_req and required), takes_value, default)
        state.flags.append(flag)


@dataclass
class _State:
    script: Path
    flags: list[Flag] = field(default_factory=list)
    reasons: list[str] = field(default_factory=list)
    deps: dict[str, str] = field(default_factory=dict)
    visited: set[tuple[str, str, str]] = field(default_factory=set)
    has_parser: bool = False
    uses_sys_argv: bool = False

    def unresolved(self, reason: str) -> None:
        if reason not in self.reasons:
            self.reasons.append(reason)

    def enter(self, key: tuple[str, str, str], module: _Module, depth: int) -> bool:
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

    def result(self, rootdir: Path) -> ParserInfo:
        deps = dict(sorted(self.deps.items()))
        if self.reasons:
            return ParserInfo(UNRESOLVED, tuple(self.flags), tuple(self.reasons), deps)
        if not self.has_parser:
            if self.uses_sys_argv:
                return ParserInfo(UNRESOLVED, (), ("reads sys.argv directly",), deps)
            return ParserInfo(NO_PARSER, (), (), deps)
        unique: dict[tuple[str, ...] | str, Flag] = {}
        for flag in self.flags:
            unique.setdefault(flag.options or flag.dest, flag)
        return ParserInfo(RESOLVED, tuple(unique.values()), (), deps)


class FlagCache:
    """Analysis results keyed by the sha256 of the script and of every followed module.

    ``data`` is a plain dict (relpath -> entry) that the plugin loads from and stores into
    pytest's cache; this class only reads and updates it.
    """

    def __init__(self, analyzer: Analyzer, data: dict[str, Any] | None = None) -> None:
        self.analyzer = analyzer
        self.data: dict[str, Any] = dict(data or {})
        self.changed = False
        self._dep_sha: dict[str, str | None] = {}

    @staticmethod
    def read(path: Path | None) -> dict[str, Any]:
        """The cache data stored at ``path`` ({} when absent, unreadable or not a dict)."""
        if path is None:
            return {}
        try:
            data = json.loads(Path(path).read_bytes())
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def write(self, path: Path) -> None:
        """Store the data as compact JSON, atomically (a temp file, then ``os.replace``)."""
        path = Path(path)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        try:
            tmp.write_text(json.dumps(self.data, separators=(",", ":")), encoding="utf-8")
            os.replace(tmp, path)
        except OSError:
            tmp.unlink(missing_ok=True)

    def _sha_of(self, path: str) -> str | None:
        if path not in self._dep_sha:
            try:
                self._dep_sha[path] = sha256_bytes(Path(path).read_bytes())
            except OSError:
                self._dep_sha[path] = None
        return self._dep_sha[path]

    def get(self, script: Path) -> ParserInfo:
        """Cached analysis of ``script`` (recomputed when it or a followed module changed)."""
        key = str(script)
        try:
            with open(key, "rb") as fh:
                sha = sha256_bytes(fh.read())
        except OSError:
            return self.analyzer.analyze(script)
        entry = self.data.get(key)  # [version, sha256, ParserInfo.to_json()]
        if isinstance(entry, list) and len(entry) == 3 and entry[0] == ANALYSIS_VERSION:
            try:
                info = ParserInfo.from_json(entry[2]) if entry[1] == sha else None
            except (TypeError, ValueError):
                info = None
            if info is not None and all(self._sha_of(p) == s for p, s in info.deps.items()):
                return info
        info = self.analyzer.analyze(script)
        self.data[key] = [ANALYSIS_VERSION, sha, info.to_json()]
        self.changed = True
        return info


def analyze_source(source: str, *, rootdir: Path, filename: str = "train_x.py") -> ParserInfo:
    """Convenience for tests: analyze ``source`` as if it were ``rootdir/filename``."""
    path = Path(rootdir) / filename
    path.write_text(source)
    return Analyzer(rootdir).analyze(path)


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
