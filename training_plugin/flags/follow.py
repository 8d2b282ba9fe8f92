"""Following a parser across modules: imports, repository helpers, parent parsers.

``_Module`` indexes one parsed file (functions, imports, module-level assignments).
``Follower`` resolves names used in a module to repository modules and functions (``from pkg
import f``, ``import pkg.mod as m``, relative imports, src-layout packages; only files inside
rootdir) and follows parent parsers (``ArgumentParser(parents=[base])``) into the module that
builds them.  The walk itself (``walk.Analyzer._scan``) calls back into this class.
"""

from __future__ import annotations

import ast
import os
from pathlib import Path
from typing import TYPE_CHECKING

from training_plugin.flags.guards import _dotted
from training_plugin.flags.model import sha256_bytes

if TYPE_CHECKING:
    from training_plugin.flags.walk import _State

#: How many helper calls deep the analysis follows imported functions.
MAX_DEPTH = 8


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


class Follower:
    """Module loading and name resolution inside rootdir (a base of ``walk.Analyzer``)."""

    def __init__(self, rootdir: Path) -> None:
        self.rootdir = Path(os.path.abspath(rootdir))
        self._real_root = os.path.realpath(self.rootdir)
        self._modules: dict[str, _Module | None] = {}

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
