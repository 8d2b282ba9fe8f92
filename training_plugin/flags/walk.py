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
#: Imported names that make another library a script's command line (prefixes).
_OTHER_CLI_ENTRIES = (
    "hydra.main", "click.", "typer.", "fire.Fire", "docopt.docopt", "tyro.cli", "tyro.extras",
    "jsonargparse.", "simple_parsing.", "absl.flags.", "absl.app.run",
)
#: argparse methods that parse the command line.
_PARSE_METHODS = frozenset({"parse_args", "parse_known_args", "parse_intermixed_args",
                            "parse_known_intermixed_args"})
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
        "parse_known_intermixed_args",
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
        made_by: dict[str, list[ast.Call]] = {}  # local name -> the calls assigned to it
        scope = list(ast.walk(module.tree)) if depth == 0 else nodes
        for node in scope:
            if isinstance(node, ast.Assign) and isinstance(node.value, ast.Call):
                made = _dotted(node.value.func) or ""
                targets = [_dotted(t) for t in node.targets]
                if made.split(".")[-1] in (
                    "ArgumentParser", "add_argument_group", "add_mutually_exclusive_group"
                ):
                    parser_names.update(t or "" for t in targets)
                for target in targets:
                    if target:
                        made_by.setdefault(target, []).append(node.value)
            elif self._reads_argv(module, node):
                state.opaque("reads sys.argv directly" if depth == 0 else
                             f"{os.path.basename(module.path)} reads sys.argv directly")
        if depth == 0:
            self._other_cli(module, scope, state)
        for call in calls:
            func = call.func
            if isinstance(func, ast.Attribute) and func.attr in _PARSER_METHODS:
                receiver = _dotted(func.value)
                if receiver:
                    parser_names.add(receiver)
                if func.attr == "add_argument":
                    state.has_parser = True
                    self._add_argument(call, module, state)
                elif func.attr == "add_subparsers":
                    state.unresolved("uses sub-commands (add_subparsers)")
                elif func.attr in _PARSE_METHODS:
                    self._check_parsed(module, func.value, made_by, state, call.lineno)
                continue
            dotted = _dotted(func)
            if dotted == "exec" and call.args and not isinstance(call.args[0], ast.Constant):
                state.opaque(f"exec() at line {call.lineno}"
                             + (f" of {os.path.basename(module.path)}" if depth else "")
                             + " runs code that may read the command line")
            if dotted and dotted.split(".")[-1] == "ArgumentParser":
                state.has_parser = True
                for kw in call.keywords:
                    if kw.arg == "parents" and isinstance(kw.value, (ast.List, ast.Tuple)):
                        for parent in kw.value.elts:
                            if isinstance(parent, ast.Call):
                                continue  # calls are followed below
                            name = _dotted(parent)
                            if name in made_by:  # base = helper(): that call is followed
                                self._check_made(module, made_by[name], state, name)
                            else:
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

    def _made_in_repo(self, module: _Module, call: ast.Call, script: Path) -> bool:
        """Whether ``call`` makes its parser where the analysis can see it: argparse itself, a
        function of the script or a repository function (followed)."""
        dotted = _dotted(call.func) or ""
        if dotted.split(".")[-1] == "ArgumentParser":
            return True
        if "." not in dotted and dotted in module.functions:
            return True
        return self._resolve_call(module, call.func, script) is not None

    def _check_made(
        self, module: _Module, made: list[ast.Call], state: _State, name: str
    ) -> None:
        """A parser held in ``name`` must come from a call the analysis follows."""
        makers = [c for c in made
                  if not (isinstance(c.func, ast.Attribute) and c.func.attr in _PARSER_METHODS)]
        if makers and not any(self._made_in_repo(module, c, state.script) for c in makers):
            first = makers[0]
            state.unresolved(f"the parser {name} comes from {_dotted(first.func) or 'a call'}() "
                             f"at line {first.lineno}, which is not in the repository")

    def _check_parsed(
        self, module: _Module, receiver: ast.AST, made_by: dict[str, list[ast.Call]],
        state: _State, line: int,
    ) -> None:
        """``X.parse_args()``: X must be a parser the analysis can see."""
        if isinstance(receiver, ast.Call):
            if not self._made_in_repo(module, receiver, state.script):
                state.unresolved(f"parse_args() at line {line} is called on a parser made by "
                                 f"{_dotted(receiver.func) or 'a call'}(), which is not in the "
                                 "repository")
            return
        name = _dotted(receiver)
        if name in made_by:
            self._check_made(module, made_by[name], state, name)

    def _reads_argv(self, module: _Module, node: ast.AST) -> bool:
        """``sys.argv`` (or ``argv`` imported from sys)."""
        if isinstance(node, ast.Attribute) and node.attr == "argv":
            base = _dotted(node.value)
            return base is not None and module.imports.get(base, ("",))[0] == "sys"
        if isinstance(node, ast.Name) and node.id in module.imports:
            return module.imports[node.id][0::2] == ("sys", "argv")
        return False

    def _other_cli(self, module: _Module, scope: list[ast.AST], state: _State) -> None:
        """Another CLI library counts where the script uses it as its command line: a
        decorator or call such as ``@hydra.main``, ``@click.command``, ``fire.Fire(...)``.
        Importing such a library for something else (``hydra.utils``) does not."""
        used: list[ast.AST] = [n.func for n in scope if isinstance(n, ast.Call)]
        for node in scope:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                used += [d for d in node.decorator_list if not isinstance(d, ast.Call)]
        for func in used:
            origin = self._origin(module, func)
            if origin and origin.startswith(_OTHER_CLI_ENTRIES):
                state.unresolved(f"uses {origin.split('.')[0]} (not argparse) at line "
                                 f"{func.lineno}")

    @staticmethod
    def _origin(module: _Module, func: ast.AST) -> str | None:
        """The imported name a call refers to: ``hydra.main`` for ``@hydra.main(...)`` after
        ``import hydra``, ``fire.Fire`` after ``from fire import Fire``; None if not imported."""
        dotted = _dotted(func)
        if dotted is None:
            return None
        head, _, rest = dotted.partition(".")
        binding = module.imports.get(head)
        if binding is None or binding[1]:
            return None
        modname, _level, attr = binding
        base = f"{modname}.{attr}" if attr else modname
        return f"{base}.{rest}" if rest else base

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
            # argparse needs a value for a positional unless nargs is "?", "*" or REMAINDER
            # ("..."), a default notwithstanding; an nargs it cannot read counts as optional
            nargs_node = kwargs.get("nargs")
            if nargs_node is None:
                is_required = True
            else:
                is_required = ok_nargs and nargs not in ("?", "*", "...", 0)
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
    #: why a script without an argparse parser may still read the command line
    opaque_reasons: list[str] = field(default_factory=list)

    def unresolved(self, reason: str) -> None:
        if reason not in self.reasons:
            self.reasons.append(reason)

    def opaque(self, reason: str) -> None:
        """Something reads the command line without argparse (counts when no parser is seen)."""
        if reason not in self.opaque_reasons:
            self.opaque_reasons.append(reason)

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
            if self.opaque_reasons:
                return ParserInfo(UNRESOLVED, (), tuple(self.opaque_reasons), deps)
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
