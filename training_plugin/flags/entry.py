"""Whether a file is a script: its entry point, found statically (AST only).

A file is a script when running it does something beyond defining names:

- an ``if __name__ == "__main__":`` block;
- a top-level statement beyond imports, definitions, assignments and docstrings: a call such
  as ``main()``, ``sys.exit(main())``, ``fire.Fire(Model)``, ``cli()`` (a click or typer command
  invoked), even a lone ``print(...)``; ``raise SystemExit(main())``;
- a CLI decorator that runs the function at import time: ``@hydra.main(...)``.

What does not count: imports, ``def`` / ``class``, assignments (``x = f()`` included),
docstrings and other constants, ``pass``, ``assert``, a ``raise`` of anything but
``SystemExit``, and calls that set a module up: ``sys.path.*``, ``warnings.*``, ``logging.*``,
``os.environ.*``, ``matplotlib.use``, ``__all__.*``.  Statements under a top-level ``if``,
``try``, ``with``, ``for``, ``while`` or ``match`` count as if they stood at the top level.
"""

from __future__ import annotations

import ast

from training_plugin.flags.source import Module, dotted, origin

#: Calls that set a module up rather than run it (prefixes of the dotted name called).
SETUP_CALLS = ("sys.path.", "warnings.", "logging.", "os.environ.", "matplotlib.use",
               "__all__.")
#: Decorators that run the decorated function when the module is run (imported names).
RUNNING_DECORATORS = ("hydra.main",)
_NO_EFFECT = (ast.Import, ast.ImportFrom, ast.Assign, ast.AugAssign, ast.AnnAssign, ast.Pass,
              ast.Global, ast.Nonlocal, ast.Delete, ast.Assert)


def _is_main_test(test: ast.AST) -> bool:
    """``__name__ == "__main__"`` (either way round, ``==`` or ``in``)."""
    if not isinstance(test, ast.Compare) or len(test.ops) != 1:
        return False
    sides = [test.left, test.comparators[0]]
    names = [s for s in sides if isinstance(s, ast.Name) and s.id == "__name__"]
    others = [s for s in sides if s not in names]
    if len(names) != 1 or len(others) != 1:
        return False
    other = others[0]
    values = other.elts if isinstance(other, (ast.Tuple, ast.List, ast.Set)) else [other]
    return isinstance(test.ops[0], (ast.Eq, ast.In)) and any(
        isinstance(v, ast.Constant) and v.value == "__main__" for v in values)


def _origin(module: Module, node: ast.AST) -> str:
    """The dotted name ``node`` refers to, through the module's imports."""
    return origin(module, node) or dotted(node) or ""


def _of_statements(module: Module, body: list[ast.stmt]) -> str | None:
    for stmt in body:
        found = _of_statement(module, stmt)
        if found:
            return found
    return None


def _of_statement(module: Module, stmt: ast.stmt) -> str | None:
    line = stmt.lineno
    if isinstance(stmt, _NO_EFFECT):
        return None
    if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        for decorator in stmt.decorator_list:
            target = decorator.func if isinstance(decorator, ast.Call) else decorator
            origin = _origin(module, target)
            if origin.startswith(RUNNING_DECORATORS):
                return f"@{origin} at line {decorator.lineno}"
        return None
    if isinstance(stmt, ast.If) and _is_main_test(stmt.test):
        return f"a __main__ block at line {line}"
    if isinstance(stmt, ast.Expr):
        value = stmt.value
        if isinstance(value, ast.Call) and _origin(module, value.func).startswith(SETUP_CALLS):
            return None
        if any(isinstance(n, ast.Call) for n in ast.walk(value)):
            called = dotted(value.func) if isinstance(value, ast.Call) else None
            return f"a top-level call to {called or 'an expression'}() at line {line}"
        return None
    if isinstance(stmt, ast.Raise):
        exc = stmt.exc.func if isinstance(stmt.exc, ast.Call) else stmt.exc
        if exc is not None and dotted(exc) == "SystemExit":
            return f"raise SystemExit at line {line}"
        return None
    bodies: list[list[ast.stmt]] = []
    if isinstance(stmt, ast.Match):
        bodies = [case.body for case in stmt.cases]
    for name in ("body", "orelse", "finalbody"):
        value = getattr(stmt, name, None)
        if isinstance(value, list):
            bodies.append(value)
    for handler in getattr(stmt, "handlers", ()):
        bodies.append(handler.body)
    for body in bodies:
        found = _of_statements(module, body)
        if found:
            return found
    return None


def entry_point(module: Module) -> str | None:
    """What makes ``module`` a script ("a __main__ block at line 40"), or None when running
    it only imports, defines and assigns names.  A package's ``__init__.py`` is never a
    script."""
    if module.path.name == "__init__.py":
        return None
    return _of_statements(module, module.tree.body)
