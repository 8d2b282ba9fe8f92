"""Following names across modules: which repository function or module-level value a name
used in a module stands for.

``Follower`` holds the session's module table (each file read and parsed once, shared by the
entry-point check, every script's analysis and every helper followed) and resolves names through
their imports (``from pkg import f``, ``import pkg.mod as m``, relative imports, src-layout
packages, ``from pkg import submodule``).  Which file an import means comes from
``training_plugin.imports`` (the resolver the fingerprint uses too), so only files inside the
rootdir are ever read.  The follower knows nothing of parsers: ``walk.Analyzer`` asks it where
a call or a parent parser leads and walks what it finds.
"""

from __future__ import annotations

import ast
import os
from pathlib import Path

from training_plugin.flags.source import MAX_DEPTH, Module, dotted
from training_plugin.imports import ImportResolver


class Follower:
    """Module loading and name resolution inside rootdir."""

    def __init__(self, rootdir: Path) -> None:
        self.resolver = ImportResolver(rootdir)
        self.rootdir = self.resolver.rootdir
        #: the module table: absolute path -> the parsed module, or why it cannot be parsed
        self._modules: dict[str, Module | str] = {}
        #: top-level names of absolute imports looked up, per recording (``record``)
        self._recordings: list[set[str]] = []
        #: bytes already read but not parsed yet (``offer``): a later ``parse`` reads no file
        self._offered: dict[str, bytes] = {}

    def offer(self, path: Path, source: bytes) -> None:
        """Keep the bytes read from ``path`` for when it is parsed (a module that the entry-point
        check left undecided and a script's analysis then follows)."""
        self._offered[os.path.abspath(path)] = source

    def parse(self, path: Path, source: bytes | None = None, whole: bool = True
              ) -> Module | str:
        """The parsed module at ``path``, or why it cannot be read or parsed; each file is
        read and parsed once per session (``source``: its bytes, when already read).
        ``whole=False`` (a followed helper) may give a ``Module.partial``: its plain
        definitions are parsed when looked up; a later whole parse completes it."""
        key = os.path.abspath(path)
        found = self._modules.get(key)
        if found is not None and not (whole and isinstance(found, Module) and not found.whole):
            return found
        module: Module | str | None = None
        offered = self._offered.pop(key, None)
        try:
            if isinstance(found, Module):  # parsed in part: now whole
                found.complete()
                module = found
            else:
                if source is None:
                    source = Path(key).read_bytes() if offered is None else offered
                if not whole:
                    module = Module.partial(Path(key), source)
                if module is None:
                    module = Module(Path(key), source, ast.parse(source, filename=key))
        except OSError as exc:
            module = f"cannot read the script: {exc.strerror}"
        except SyntaxError as exc:
            module = f"syntax error, line {exc.lineno}: {exc.msg}"
        except (ValueError, RecursionError) as exc:
            module = f"cannot parse the script: {exc}"
        self._modules[key] = module
        return module

    def parsed(self, path: Path) -> Module | str | None:
        """What ``parse`` gave for ``path`` this session (None: not parsed)."""
        return self._modules.get(os.path.abspath(path))

    def load(self, path: Path) -> Module | None:
        """The module at ``path``, parsed at least in part (None when it cannot be read or
        parsed): a helper that an import leads to."""
        found = self.parse(path, whole=False)
        return found if isinstance(found, Module) else None

    def record(self) -> set[str]:
        """Start recording the top-level names of absolute imports looked up (the names that
        the script's own folder could shadow); ``stop`` ends it."""
        names: set[str] = set()
        self._recordings.append(names)
        return names

    def stop(self, names: set[str]) -> None:
        """End the recording ``names`` (the latest one: recordings nest)."""
        if self._recordings and self._recordings[-1] is names:
            self._recordings.pop()

    def _import(self, name: str, level: int, importer: Module, script: Path) -> Module | None:
        """The repository module that ``import name`` in ``importer`` loads, parsed."""
        if not level:
            for names in self._recordings:
                names.add(name.partition(".")[0])
        found = self.resolver.resolve(name, level=level, from_file=importer.path, script=script)
        return self.load(found.file) if found is not None and found.file is not None else None

    def _submodule(self, package: Module, name: str) -> Module | None:
        """Submodule ``name`` of a package (``pkg/__init__.py`` -> ``pkg/name.py`` or
        ``pkg/name/__init__.py``), parsed; None for a plain module or no such submodule."""
        if not package.is_package:
            return None
        found = self.resolver.submodule((package.path.parent,), name)
        return self.load(found.file) if found is not None and found.file is not None else None

    def _resolve_name(
        self, module: Module, name: str, script: Path, depth: int = 0
    ) -> tuple[Module, str | None] | None:
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
        target = self._import(modname, level, module, script)
        if attr is None:
            return (target, None) if target else None
        if target is not None and target is not module:
            found = self._resolve_name(target, attr, script, depth + 1)
            if found is not None:
                return found
        # `from pkg import submodule`
        sub = self._import(".".join(p for p in (modname, attr) if p), level, module, script)
        return (sub, None) if sub else None

    def resolve_call(
        self, module: Module, func: ast.AST, script: Path
    ) -> tuple[Module, str] | None:
        """The repository function a call expression in ``module`` refers to, or None."""
        name = dotted(func)
        if name is None:
            return None
        head, *rest = name.split(".")
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

    def resolve_assigned(
        self, module: Module, name: str, script: Path, depth: int = 0
    ) -> tuple[Module, str] | None:
        """The repository module and module-level name that the dotted ``name`` (used in
        ``module``) is assigned to, e.g. ``base`` from ``from common import base``; None if
        unknown."""
        if depth > MAX_DEPTH:
            return None
        head, _, rest = name.partition(".")
        if not rest:
            if head in module.assigned:
                return module, head
            binding = module.imports.get(head)
            if binding is None or binding[2] is None:
                return None
            modname, level, attr = binding
            target = self._import(modname, level, module, script)
            if target is None or target is module:
                return None
            return self.resolve_assigned(target, attr, script, depth + 1)
        found = self._resolve_name(module, head, script)
        if found is not None and found[1] is None:
            target: Module | None = found[0]
        elif head not in module.assigned and head not in module.imports:
            target = self._submodule(module, head)
        else:
            target = None
        if target is None or target is module:
            return None
        return self.resolve_assigned(target, rest, script, depth + 1)
