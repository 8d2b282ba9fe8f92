"""The partial parse of a followed helper module (``flags.source.Module.partial``): its top level
parsed, each plain ``def`` and ``class`` left as a stand-in until looked up.  What it gives must
be what the whole syntax tree gives: the same functions (same nodes, same lines), imports,
assignments, top-level statements and entry point."""

from __future__ import annotations

import ast
import sysconfig
import textwrap
from pathlib import Path

import pytest
from fakejobs import write_files

from training_plugin.flags import cache as flag_cache
from training_plugin.flags import UNRESOLVED, entry, source, text, walk


def _dump(node: ast.AST) -> str:
    return ast.dump(node, include_attributes=True)


def differences(path: Path, source_bytes: bytes) -> list[str] | None:
    """How the partial parse of ``source_bytes`` differs from its whole syntax tree ([] when it
    does not), or None when no partial parse was made (the whole tree is used then)."""
    whole = source.Module(path, source_bytes, ast.parse(source_bytes))
    part = source.Module.partial(path, source_bytes)
    if part is None:
        return None
    found = []
    if set(part.functions) != set(whole.functions):
        found.append(f"functions {sorted(set(part.functions) ^ set(whole.functions))}")
    else:
        found += [f"def {name}" for name in whole.functions
                  if _dump(part.functions[name]) != _dump(whole.functions[name])]
    if part.imports != whole.imports:
        found.append("imports")
    if {k: _dump(v) for k, v in part.assigned.items()} != {
            k: _dump(v) for k, v in whole.assigned.items()}:
        found.append("assignments")
    kinds = {ast.FunctionDef: "def", ast.AsyncFunctionDef: "async def", ast.ClassDef: "class"}

    def plain(s: ast.stmt) -> bool:  # left out: undecorated, an ASCII name
        return type(s) in kinds and not s.decorator_list and s.name.isascii()

    left_out = [(kinds[type(s)], s.name, s.lineno) for s in whole.tree.body if plain(s)]
    if [(p.kind, p.name, p.lineno) for p in part.stubs] != left_out:
        found.append("the definitions left out")
    kept = [s for s in whole.tree.body if not plain(s)]
    if [_dump(s) for s in part.tree.body] != [_dump(s) for s in kept]:
        found.append("the top-level statements parsed")
    if entry.entry_point(part, source_bytes) != entry.entry_point(whole, source_bytes):
        found.append("entry point")
    # the split itself: one part per top-level line, from its first line (decorators); the
    # statements after a ';' go with the line's first
    firsts = list(dict.fromkeys(
        min([s.lineno] + [d.lineno for d in getattr(s, "decorator_list", [])])
        for s in whole.tree.body))
    parts = text.top_level(text.decoded(source_bytes) or "") or []
    if [p.lineno for p in parts] != firsts:
        found.append("where the top-level statements begin")
    return found


def _stdlib_modules() -> list[Path]:
    """The standard library's top-level modules (a few hundred files of every style)."""
    return sorted(Path(sysconfig.get_paths()["stdlib"]).glob("*.py"))


def test_the_standard_library_parsed_in_part_matches_its_whole_trees() -> None:
    made = 0
    wrong = {}
    for path in _stdlib_modules():
        source_bytes = path.read_bytes()
        try:
            found = differences(path, source_bytes)
        except SyntaxError:
            continue  # not for this Python
        if found is not None:
            made += 1
            if found:
                wrong[path.name] = found
    assert wrong == {}
    assert made >= 100  # most modules define functions or classes: they are parsed in part


#: Texts whose top-level statements a line-by-line reading could split wrongly.
TRICKY = {
    "a_triple_quoted_string_with_code_at_column_0": '''\
        USAGE = """
        def fake():
            pass
        class Fake:
        """


        def real(x):
            return x
        ''',
    "a_docstring_with_code_at_column_0": '''\
        def helper(parser):
            """Adds:
        def hidden(): the text of a docstring
            """
            parser.add_argument("--a")


        class Model:
            pass
        ''',
    "brackets_closed_at_column_0": '''\
        CONFIG = dict(
        a=1,
        b=[
        2,
        ],
        )


        def after(parser):
            parser.add_argument("--b")
        ''',
    "a_backslash_continuation": '''\
        X = 1 + \\
        2


        def f():
            return X
        ''',
    "decorated_and_async": '''\
        import functools


        @functools.lru_cache()
        def cached(x):
            return x


        async def later():
            return 1


        def plain():
            return 2
        ''',
    "clauses_at_column_0": '''\
        try:
            import torch
        except ImportError:
            torch = None
        else:
            pass
        finally:
            pass
        for i in range(2):
            pass
        else:
            DONE = True


        def uses_torch():
            return torch
        ''',
    "a_def_with_comments_and_strings_at_column_0": '''\
        def f(parser):
        # a comment at column 0 inside the function
            parser.add_argument("--c", help="a (bracket")
            return parser
        "a string statement after the function"


        def g():
            return f"{1 + (2)}"
        ''',
    "a_def_named_twice": '''\
        def twice():
            return 1


        twice = twice


        def twice():
            return 2
        ''',
    "a_multi_line_signature": '''\
        def f(
            a,
            b=(1,
        2),
        ):
            return a


        class C(
            object,
        ):
            def method(self):
                return 1
        ''',
    "non_ascii_names_and_a_bom": '''\
        def café():
            return 1


        def ascii_name():
            return café()
        ''',
    "statements_after_a_semicolon": "import os; import sys\nX = 1; Y = 2\n\n\ndef f():\n"
                                    "    return os; pass\n",
    "windows_line_endings": ("def f():\r\n    return '''a\r\nb'''\r\n\r\n\r\n"
                             "def g():\r\n    return 1\r\n"),
}


@pytest.mark.parametrize("name", sorted(TRICKY))
def test_a_tricky_text_parsed_in_part_matches_its_whole_tree(tmp_path: Path, name: str) -> None:
    source_bytes = textwrap.dedent(TRICKY[name]).encode()
    if "bom" in name:
        source_bytes = b"\xef\xbb\xbf" + source_bytes
    assert differences(tmp_path / "m.py", source_bytes) == []


def test_a_text_it_cannot_split_is_parsed_whole(tmp_path: Path) -> None:
    for unsure in ("def f():\n    pass\n\fX = 1\n",  # a form feed
                   "X = 1\n"):  # no definition to leave for later
        assert source.Module.partial(tmp_path / "m.py", unsure.encode()) is None
    assert text.top_level("def f(:\n    pass\n") is None  # brackets that never close


def test_a_definition_whose_text_does_not_parse_alone_takes_the_whole_files_node(
        tmp_path: Path) -> None:
    source_bytes = b"def f(parser):\n    parser.add_argument('--a')\n\n\ndef g():\n    pass\n"
    module = source.Module.partial(tmp_path / "m.py", source_bytes)
    assert module is not None and [p.name for p in module.stubs] == ["f", "g"]
    first = module.stubs[0]
    module.functions["f"] = first._replace(end=first.start + 12)  # what a wrong split gives
    node = module.functions["f"]
    assert isinstance(node, ast.FunctionDef) and node.lineno == 1 and len(node.body) == 1
    assert _dump(node) == _dump(ast.parse(source_bytes).body[0])


def test_a_followed_module_is_completed_when_it_is_analysed_as_a_script(tmp_path: Path) -> None:
    write_files(tmp_path, {
        "helpers.py": "def add(parser):\n    parser.add_argument('--a')\n\n\n"
                      "def main():\n    import argparse\n    p = argparse.ArgumentParser()\n"
                      "    add(p)\n    p.add_argument('--own')\n    p.parse_args()\n\n\n"
                      "main()\n",
        "train.py": "import argparse\nfrom helpers import add\n"
                    "p = argparse.ArgumentParser()\nadd(p)\np.parse_args()\n",
    })
    analyzer = walk.Analyzer(tmp_path)
    assert [f.options for f in analyzer.analyze(tmp_path / "train.py").flags] == [("--a",)]
    helper = analyzer.follower.parsed(tmp_path / "helpers.py")
    assert isinstance(helper, source.Module) and not helper.whole
    # the helper runs main() at its top level: a script too, analysed whole
    info = analyzer.analyze(tmp_path / "helpers.py")
    assert helper.whole
    assert sorted(f.options for f in info.flags) == [("--a",), ("--own",)]


def test_a_library_module_with_a_broken_function_body_is_no_script(tmp_path: Path) -> None:
    # its top level parses and runs nothing; the body of a function is not read (Python
    # reports the error when a script imports it); a broken top level still makes a job
    write_files(tmp_path, {
        "lib.py": "import os\n\n\ndef broken():\n    return 1 +\n\n\ndef fine():\n    pass\n",
        "top.py": "import os\nX = (\n\n\ndef fine():\n    pass\n",
    })
    cache = flag_cache.FlagCache(walk.Analyzer(tmp_path))
    assert [cache.entry_point(tmp_path / n) for n in ("lib.py", "top.py")] == [None, None]
    assert cache.settle() == [str(tmp_path / "top.py")]
    assert (cache.entry_point(tmp_path / "top.py") or "").startswith("syntax error")
    assert cache.entry_point(tmp_path / "lib.py") is None


def test_a_call_of_a_function_whose_body_is_broken_is_not_followed(tmp_path: Path) -> None:
    # the helper module's top level parses; the body of the function the script calls does
    # not: the call is one the analysis cannot follow (Python fails the import when it runs)
    write_files(tmp_path, {
        "helpers.py": "def add(parser):\n    parser.add_argument('--a') +\n\n\n"
                      "def other():\n    pass\n",
        "train.py": "import argparse\nfrom helpers import add, other\n"
                    "p = argparse.ArgumentParser()\nadd(p)\nother()\np.parse_args()\n",
    })
    info = walk.Analyzer(tmp_path).analyze(tmp_path / "train.py")
    assert info.status == UNRESOLVED
    assert info.reasons == ("the parser is passed to add() at line 4, which is not in the "
                            "repository",)


def test_a_script_found_in_part_whose_function_body_is_broken_says_why(tmp_path: Path) -> None:
    # no __main__ in its text: decided after the scripts, in part (a top-level main() call);
    # its analysis parses it whole, and says where it does not parse
    train = tmp_path / "train.py"
    write_files(tmp_path, {"train.py": "import argparse\n\n\ndef main():\n"
                                       "    p = argparse.ArgumentParser() +\n\n\nmain()\n"})
    cache = flag_cache.FlagCache(walk.Analyzer(tmp_path))
    assert cache.entry_point(train) is None
    assert cache.settle() == [str(train)]
    assert cache.entry_point(train) == "a top-level call to main() at line 8"
    info = cache.get(train)
    assert info.status == UNRESOLVED and info.reasons[0].startswith("syntax error, line 5"), info
