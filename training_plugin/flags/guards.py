"""Literal values and ``if`` guards: what a followed helper does for one call site.

``bind`` gives a helper's parameters the literal values of the call (or the helper's literal
defaults); ``walk_pruned`` walks a function's AST skipping ``if`` branches those values decide
and everything after an early ``return`` they decide.
"""

from __future__ import annotations

import ast
from collections import deque
from collections.abc import Iterator
from typing import Any

from training_plugin.flags.source import FunctionNode, Module, literal, walk

_UNKNOWN = object()


def _value_of(node: ast.AST, env: dict[str, Any], module: Module) -> Any:
    """A call-site argument's value: a literal, a bound name, a module-level literal constant."""
    ok, value = literal(node)
    if ok:
        return value
    if isinstance(node, ast.Name):
        if node.id in env:
            return env[node.id]
        assigned = module.assigned.get(node.id)
        if assigned is not None:
            ok, value = literal(assigned)
            if ok:
                return value
    return _UNKNOWN


def bind(
    call: ast.Call, funcdef: FunctionNode, env: dict[str, Any],
    module: Module,
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
        ok, value = literal(default)
        bound[param.arg] = value if ok else _UNKNOWN
    for param, default in zip(args.kwonlyargs, args.kw_defaults):
        if default is not None:
            ok, value = literal(default)
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
        ok, right = literal(test.comparators[0])
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


def walk_pruned(node: ast.AST, env: dict[str, Any]) -> Iterator[ast.AST]:
    """``ast.walk`` (breadth first) that skips ``if`` branches decided false by ``env`` and
    statements after an early ``return`` decided by ``env`` (``source.walk`` without them:
    expression contexts left out)."""
    return _walk_bound(node, env) if env else walk(node)


def _walk_bound(node: ast.AST, env: dict[str, Any]) -> Iterator[ast.AST]:
    todo = deque([node])
    while todo:
        current = todo.popleft()
        yield current
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
            elif isinstance(value, ast.AST) and not isinstance(value, ast.expr_context):
                todo.append(value)
