"""Walking a script's AST for argparse calls: the entry point ``Analyzer.analyze``.

The walk finds every real ``add_argument`` call (module level, functions, argument groups,
mutually exclusive groups), decides what a script's parser accepts, and hands calls into
repository helpers and parent parsers to ``follow.Follower``.  Strings, comments and docstrings
never count: only ``ast.Call`` nodes do.
"""

from __future__ import annotations

import ast
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from training_plugin.flags.follow import MAX_DEPTH, Follower, _Module
from training_plugin.flags.guards import _bind, _dotted, _literal, _walk_pruned
from training_plugin.flags.model import NO_PARSER, RESOLVED, UNRESOLVED, Flag, ParserInfo

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


class Analyzer(Follower):
    """Static argparse analysis with an in-memory module cache (one per session)."""

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


def analyze_source(source: str, *, rootdir: Path, filename: str = "train_x.py") -> ParserInfo:
    """Convenience for tests: analyze ``source`` as if it were ``rootdir/filename``."""
    path = Path(rootdir) / filename
    path.write_text(source)
    return Analyzer(rootdir).analyze(path)
