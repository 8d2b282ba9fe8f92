"""Whether a file is a script: its entry point, found statically (AST only).

A file is a script when running it runs a program, not only defines names.  Its entry point is
the first of these at its top level (statements under a top-level ``if``, ``try``, ``with``,
``for``, ``while`` or ``match`` count as top level):

- an ``if __name__ == "__main__":`` block;
- a function decorated with a CLI decorator that runs it: ``@hydra.main(...)``;
- a statement that reads the command line: ``args = parser.parse_args()``,
  ``epochs = int(sys.argv[1])``;
- a statement that calls the program: a function or object of the module itself, by a public
  name (``main()``, ``sys.exit(main())``, a click command ``cli()``, a typer ``app()``), or a
  runner (``fire.Fire(...)``, ``absl.app.run(...)``, ``typer.run(...)``, ``tyro.cli(...)``,
  ``jsonargparse.CLI(...)``); ``raise SystemExit(...)``;
- in a flat module (one that defines no function and no class), any call statement: a module
  whose top level is ``print("hello")`` is a script, as is ``from lib import main; main()``.

What does not count: imports, definitions, other assignments (their values included), docstrings,
``pass``, ``assert``, a ``raise`` of anything but ``SystemExit``; in a module that defines
functions or classes, calls of what it imports or of its private (``_``) names (the
registrations of a library: ``register_model(...)``, ``_register_defaults()``); in a flat
module, calls that set it up: ``sys.path.*``, ``warnings.*``, ``logging.*``, ``os.environ.*``,
``matplotlib.use``, ``globals().*`` (a ``hubconf.py`` filling its namespace).  A package's ``__init__.py`` is never a script.

Only the top level is read, so a ``Module.partial`` (its plain definitions not parsed) is
decided as its whole syntax tree would be.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator

from training_plugin.flags.source import Module, dotted, origin, walk

#: Imported calls that run a program (prefixes of the name they refer to).
RUNNERS = ("fire.Fire", "absl.app.run", "typer.run", "tyro.cli", "jsonargparse.CLI",
           "sys.exit")
#: Decorators that run the decorated function when the module runs (imported names).
RUNNING_DECORATORS = ("hydra.main",)
#: Calls that set a flat module up rather than run it (prefixes of the name called).
SETUP_CALLS = ("sys.path.", "warnings.", "logging.", "os.environ.", "matplotlib.use")
_DEFINITIONS = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)
_PARSE_METHODS = frozenset({"parse_args", "parse_known_args", "parse_intermixed_args",
                            "parse_known_intermixed_args"})


def _is_main_test(test: ast.AST) -> bool:
    """``__name__ == "__main__"`` (either way round, ``==`` or ``in``)."""
    if not isinstance(test, ast.Compare) or len(test.ops) != 1:
        return False
    if not isinstance(test.ops[0], (ast.Eq, ast.In)):
        return False
    sides = [test.left, test.comparators[0]]
    names = [s for s in sides if isinstance(s, ast.Name) and s.id == "__name__"]
    if len(names) != 1:
        return False
    other = sides[1] if sides[0] is names[0] else sides[0]
    values = other.elts if isinstance(other, (ast.Tuple, ast.List, ast.Set)) else [other]
    return any(isinstance(v, ast.Constant) and v.value == "__main__" for v in values)


def _top_level(body: list[ast.stmt]) -> Iterator[ast.stmt]:
    """The statements of ``body`` and of its compound statements (not of definitions)."""
    for stmt in body:
        yield stmt
        if isinstance(stmt, _DEFINITIONS):
            continue
        if isinstance(stmt, ast.Match):
            for case in stmt.cases:
                yield from _top_level(case.body)
        for name in ("body", "orelse", "finalbody"):
            value = getattr(stmt, name, None)
            if isinstance(value, list):
                yield from _top_level(value)
        for handler in getattr(stmt, "handlers", ()):
            yield from _top_level(handler.body)


def _calls(node: ast.AST) -> Iterator[ast.Call]:
    """The calls in an expression, outside lambdas."""
    todo = [node]
    while todo:
        current = todo.pop()
        if isinstance(current, ast.Lambda):
            continue
        if isinstance(current, ast.Call):
            yield current
        todo.extend(ast.iter_child_nodes(current))


def _reads_command_line(module: Module, stmt: ast.stmt) -> bool:
    """A ``parse_args()``-like call or ``sys.argv`` in a statement (outside lambdas)."""
    for node in walk(stmt):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and (
                node.func.attr in _PARSE_METHODS):
            return True
        if isinstance(node, (ast.Attribute, ast.Name)) and origin(module, node) == "sys.argv":
            return True
    return False


def _sets_up(module: Module, call: ast.AST) -> bool:
    """A call that sets a flat module up (``SETUP_CALLS``, ``globals().update(...)``)."""
    if not isinstance(call, ast.Call):
        return False
    func = call.func
    if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Call):
        return dotted(func.value.func) in ("globals", "locals")
    return (origin(module, func) or dotted(func) or "").startswith(SETUP_CALLS)


def _runs_program(module: Module, call: ast.Call, own: set[str]) -> bool:
    """A call of the module's own public function or object, or of a runner."""
    func = call.func
    if isinstance(func, ast.Name) and func.id in own and not func.id.startswith("_"):
        return True
    return (origin(module, func) or "").startswith(RUNNERS)


def entry_point(module: Module, source: bytes | None = None) -> str | None:
    """What makes ``module`` a script ("a __main__ block at line 40"), or None when running
    it only imports, defines, assigns and registers names (module docstring).  With its
    ``source``, a module whose text names neither ``parse_`` nor ``argv`` is not searched for
    a statement that reads the command line."""
    if module.path.name == "__init__.py":
        return None
    cli = source is None or b"parse_" in source or b"argv" in source
    body = module.tree.body  # a partial module's plain definitions are its stubs instead
    flat = not module.stubs and not any(isinstance(s, _DEFINITIONS) for s in _top_level(body))
    own = set(module.functions) | set(module.assigned)
    own |= {s.name for s in body if isinstance(s, ast.ClassDef)}
    own |= {s.name for s in module.stubs if s.kind == "class"}
    for stmt in _top_level(body):
        line = stmt.lineno
        if isinstance(stmt, ast.If) and _is_main_test(stmt.test):
            return f"a __main__ block at line {line}"
        if isinstance(stmt, _DEFINITIONS):
            for decorator in stmt.decorator_list:
                target = decorator.func if isinstance(decorator, ast.Call) else decorator
                name = origin(module, target) or ""
                if name.startswith(RUNNING_DECORATORS):
                    return f"@{name} at line {decorator.lineno}"
        elif isinstance(stmt, ast.Raise):
            exc = stmt.exc.func if isinstance(stmt.exc, ast.Call) else stmt.exc
            if exc is not None and dotted(exc) == "SystemExit":
                return f"raise SystemExit at line {line}"
        elif cli and isinstance(stmt, (ast.Assign, ast.AnnAssign, ast.AugAssign, ast.Expr)) and (
                _reads_command_line(module, stmt)):
            return f"reads the command line at line {line}"
        if isinstance(stmt, ast.Expr):
            calls = list(_calls(stmt.value))
            if flat and calls and not _sets_up(module, stmt.value):
                return f"a top-level call at line {line} (a flat script)"
            for call in calls:
                if _runs_program(module, call, own):
                    return f"a top-level call to {dotted(call.func)}() at line {line}"
    return None
