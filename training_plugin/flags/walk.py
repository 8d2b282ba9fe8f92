"""Walking a script's AST for argparse calls: the entry point ``Analyzer.analyze``.

The walk finds every real ``add_argument`` call (module level, functions, argument groups,
mutually exclusive groups) and decides what a script's parser accepts.  It walks on into
repository helpers and parent parsers (``ArgumentParser(parents=[...])``) wherever
``follow.Follower`` says a call or a name leads.  Strings, comments and docstrings never
count: only ``ast.Call`` nodes do.
"""

from __future__ import annotations

import ast
import os
from pathlib import Path
from typing import Any

from training_plugin.flags.follow import Follower
from training_plugin.flags.guards import bind, walk_pruned
from training_plugin.flags.model import UNRESOLVED, Flag, ParserInfo
from training_plugin.flags.source import (
    MAX_DEPTH,
    Key,
    Module,
    Scanned,
    State,
    dotted,
    literal,
    origin,
    walk,
)

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


class Analyzer:
    """Static argparse analysis over one session's module table.

    The analyzer walks; its ``Follower`` only says where a name leads (it never calls back).
    Each followed helper (module, function, bound literals) is scanned once per session and
    its result shared by every script that reaches it alike: from a folder that shadows none
    of the imports it looked up, within the depth budget.
    """

    def __init__(self, rootdir: Path) -> None:
        self.follower = Follower(rootdir)
        self.rootdir = self.follower.rootdir
        self._scanned: dict[Key, Scanned] = {}

    def analyze(self, script: Path) -> ParserInfo:
        """Analyze one script (never imports or runs it)."""
        script = Path(os.path.abspath(script))
        module = self.follower.parse(script)
        if isinstance(module, str):
            return ParserInfo(UNRESOLVED, reasons=(module,))
        state = State(script=script)
        self._scan(module, [module.tree], state, depth=0)
        return state.result()

    def _reusable(self, found: Scanned, folder: Path, depth: int) -> bool:
        if found.part.truncated:
            if depth != found.depth:
                return False
        elif found.part.deepest - found.depth + depth > MAX_DEPTH:
            return False
        if folder == found.folder:
            return True
        shadows = self.follower.resolver.shadows
        return not found.local and not any(shadows(folder, n) for n in found.part.imported)

    def _follow(self, module: Module, funcdef: ast.AST, key: Key, state: State, depth: int,
                env: dict[str, Any]) -> None:
        """Scan the helper ``funcdef`` of ``module`` at ``depth`` into ``state``: a result
        shared from an earlier script where it holds, else a scan of its own."""
        folder = self.follower.resolver.script_folder(state.script)
        found = self._scanned.get(key)
        if (found is not None and self._reusable(found, folder, depth)
                and str(state.script) not in found.part.deps):
            state.merge(found.part, depth - found.depth)
            return
        if key in state.scanned:
            # scanned for this script already (its findings are the script's): once per
            # script, as a helper reached along many paths of a call graph with cycles
            state.cycles.add(key)
            return
        state.scanned.add(key)
        part = state.child(key)
        part.deepest = depth
        names = self.follower.record()
        try:
            self._scan(module, [funcdef], part, depth, env)
        finally:
            self.follower.stop(names)
        part.imported |= frozenset(names)
        state.merge(part)
        if part.shareable:
            shadows = self.follower.resolver.shadows
            self._scanned[key] = Scanned(part, depth, folder,
                                          any(shadows(folder, n) for n in names))

    def _scan(
        self,
        module: Module,
        roots: list[ast.AST],
        state: State,
        depth: int,
        env: dict[str, Any] | None = None,
    ) -> None:
        """Collect add_argument calls under ``roots`` and follow repository helper calls.

        ``env`` binds a followed helper's parameters to the literal values of the call site
        (or the helper's literal defaults); ``if`` branches decidable from them are pruned.
        """
        env = env or {}
        nodes = [n for root in roots for n in walk_pruned(root, env)]
        calls = [n for n in nodes if isinstance(n, ast.Call)]
        parser_names: set[str] = set()
        made_by: dict[str, list[ast.Call]] = {}  # local name -> the calls assigned to it
        # the script's whole tree at depth 0 (without bound literals its walk is source.walk)
        whole = depth == 0 and not env and len(roots) == 1 and roots[0] is module.tree
        scope = nodes if depth or whole else list(walk(module.tree))
        for node in scope:
            if isinstance(node, ast.Assign) and isinstance(node.value, ast.Call):
                made = dotted(node.value.func) or ""
                targets = [dotted(t) for t in node.targets]
                if made.split(".")[-1] in (
                    "ArgumentParser", "add_argument_group", "add_mutually_exclusive_group"
                ):
                    parser_names.update(t or "" for t in targets)
                for target in targets:
                    if target:
                        made_by.setdefault(target, []).append(node.value)
            elif isinstance(node, (ast.Attribute, ast.Name)) and self._reads_argv(module, node):
                state.opaque("reads sys.argv directly" if depth == 0 else
                             f"{os.path.basename(module.path)} reads sys.argv directly")
        if depth == 0:
            self._other_cli(module, scope, state)
        for call in calls:
            func = call.func
            if isinstance(func, ast.Attribute) and func.attr in _PARSER_METHODS:
                receiver = dotted(func.value)
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
            called = dotted(func)
            if called == "exec" and call.args and not isinstance(call.args[0], ast.Constant):
                state.opaque(f"exec() at line {call.lineno}"
                             + (f" of {os.path.basename(module.path)}" if depth else "")
                             + " runs code that may read the command line")
            if called and called.split(".")[-1] == "ArgumentParser":
                state.has_parser = True
                for kw in call.keywords:
                    if kw.arg == "parents" and isinstance(kw.value, (ast.List, ast.Tuple)):
                        for parent in kw.value.elts:
                            if isinstance(parent, ast.Call):
                                continue  # calls are followed below
                            name = dotted(parent)
                            if name in made_by:  # base = helper(): that call is followed
                                self._check_made(module, made_by[name], state, name)
                            else:
                                self._follow_parent(module, parent, state, depth)
                continue
        for call in calls:
            func = call.func
            if isinstance(func, ast.Attribute) and func.attr in _PARSER_METHODS:
                continue
            called = dotted(func)
            if called is None or called.split(".")[-1] == "ArgumentParser":
                continue
            head = called.split(".")[0]
            if head in parser_names and "." in called:
                continue  # some other method of a parser object
            is_local = "." not in called and called in module.functions
            if is_local and depth == 0:
                continue  # the whole script is scanned already
            target = self.follower.resolve_call(module, func, state.script)
            if target is None:
                passes_parser = any(
                    dotted(a) in parser_names
                    for a in [*call.args, *(k.value for k in call.keywords)]
                    if not isinstance(a, ast.Starred)
                )
                if passes_parser and called not in _HARMLESS_CALLS:
                    state.unresolved(
                        f"the parser is passed to {called}() at line {call.lineno}, "
                        "which is not in the repository"
                    )
                continue
            target_module, fname = target
            funcdef = target_module.functions[fname]
            callee_env = bind(call, funcdef, env, module)
            key = (str(target_module.path), fname, repr(sorted(callee_env.items())))
            if not state.enter(key, target_module, depth):
                continue
            self._follow(target_module, funcdef, key, state, depth + 1, callee_env)

    def _made_in_repo(self, module: Module, call: ast.Call, script: Path) -> bool:
        """Whether ``call`` makes its parser where the analysis can see it: argparse itself, a
        function of the script or a repository function (followed)."""
        called = dotted(call.func) or ""
        if called.split(".")[-1] == "ArgumentParser":
            return True
        if "." not in called and called in module.functions:
            return True
        return self.follower.resolve_call(module, call.func, script) is not None

    def _check_made(
        self, module: Module, made: list[ast.Call], state: State, name: str
    ) -> None:
        """A parser held in ``name`` must come from a call the analysis follows."""
        makers = [c for c in made
                  if not (isinstance(c.func, ast.Attribute) and c.func.attr in _PARSER_METHODS)]
        if makers and not any(self._made_in_repo(module, c, state.script) for c in makers):
            first = makers[0]
            state.unresolved(f"the parser {name} comes from {dotted(first.func) or 'a call'}() "
                             f"at line {first.lineno}, which is not in the repository")

    def _check_parsed(
        self, module: Module, receiver: ast.AST, made_by: dict[str, list[ast.Call]],
        state: State, line: int,
    ) -> None:
        """``X.parse_args()``: X must be a parser the analysis can see."""
        if isinstance(receiver, ast.Call):
            if not self._made_in_repo(module, receiver, state.script):
                state.unresolved(f"parse_args() at line {line} is called on a parser made by "
                                 f"{dotted(receiver.func) or 'a call'}(), which is not in the "
                                 "repository")
            return
        name = dotted(receiver)
        if name in made_by:
            self._check_made(module, made_by[name], state, name)

    def _follow_parent(self, module: Module, node: ast.AST, state: State, depth: int) -> None:
        """``ArgumentParser(parents=[base])`` with ``base`` a parser built at module level in
        a repository module: its ``add_argument`` calls (and its groups') count, as do the
        helpers it is passed to there."""
        where = f"line {getattr(node, 'lineno', '?')}"
        ref = dotted(node)
        found = self.follower.resolve_assigned(module, ref, state.script) if ref else None
        if found is None:
            if module.path == state.script and ref in module.assigned:
                return  # built in the script itself: the whole script is scanned already
            state.unresolved(f"parent parser {ref or '<expression>'} ({where}) is not built "
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
                        and dotted(n.value.func.value) in names):
                    names.update(dotted(t) or "" for t in n.targets)
        followed: list[ast.AST] = []
        if isinstance(value, ast.Call) and (dotted(value.func) or "").split(".")[-1] != (
            "ArgumentParser"
        ):
            followed.append(value)  # base = make_base(): the helper builds it
        for stmt in top:
            for n in ast.walk(stmt):
                if not isinstance(n, ast.Call):
                    continue
                func = n.func
                if isinstance(func, ast.Attribute) and dotted(func.value) in names:
                    if func.attr == "add_argument":
                        self._add_argument(n, target, state)
                elif any(dotted(a) in names for a in n.args):
                    followed.append(n)  # add_common_args(base) at module level
        if followed:
            self._scan(target, followed, state, depth + 1)

    def _reads_argv(self, module: Module, node: ast.AST) -> bool:
        """``sys.argv`` (or ``argv`` imported from sys)."""
        if isinstance(node, ast.Attribute) and node.attr == "argv":
            base = dotted(node.value)
            return base is not None and module.imports.get(base, ("",))[0] == "sys"
        if isinstance(node, ast.Name) and node.id in module.imports:
            return module.imports[node.id][0::2] == ("sys", "argv")
        return False

    def _other_cli(self, module: Module, scope: list[ast.AST], state: State) -> None:
        """Another CLI library counts where the script uses it as its command line: a
        decorator or call such as ``@hydra.main``, ``@click.command``, ``fire.Fire(...)``.
        Importing such a library for something else (``hydra.utils``) does not."""
        used: list[ast.AST] = [n.func for n in scope if isinstance(n, ast.Call)]
        for node in scope:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                used += [d for d in node.decorator_list if not isinstance(d, ast.Call)]
        for func in used:
            name = origin(module, func)
            if name and name.startswith(_OTHER_CLI_ENTRIES):
                state.unresolved(f"uses {name.split('.')[0]} (not argparse) at line "
                                 f"{func.lineno}")

    def _add_argument(self, call: ast.Call, module: Module, state: State) -> None:
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
            action = dotted(action_node) or "<custom>"
        ok_nargs, nargs = literal(kwargs.get("nargs"))
        takes_value = not (
            (action in _NO_VALUE_ACTIONS) or (ok_nargs and nargs == 0)
            or (action or "").endswith("BooleanOptionalAction")
        )
        ok_default, default = literal(kwargs.get("default"))
        if not ok_default or not isinstance(default, (str, int, float, bool, type(None))):
            default = None
        ok_req, required = literal(kwargs.get("required"))
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
            ok_dest, dest = literal(kwargs.get("dest"))
            if not ok_dest or not isinstance(dest, str):
                longs = [o for o in options if o.startswith("--")]
                dest = (longs[0] if longs else options[0]).lstrip("-").replace("-", "_")
            all_options = list(options)
            if (action or "").endswith("BooleanOptionalAction"):
                all_options += ["--no-" + o[2:] for o in options if o.startswith("--")]
            flag = Flag(tuple(all_options), dest, bool(ok_req and required), takes_value, default)
        state.flags.append(flag)
