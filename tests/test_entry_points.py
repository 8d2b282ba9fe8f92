"""Only scripts become jobs: the entry-point rule (training_plugin.flags.entry), the listing of
what is not a script, and one read and one scan of each module per session."""

from __future__ import annotations

import ast
import textwrap
from collections import Counter
from pathlib import Path

import pytest
from fakejobs import write_files

from training_plugin.collect.listing import MSG_NOT_SCRIPTS
from training_plugin.flags import cache as flag_cache
from training_plugin.flags import entry, source, walk

pytest_plugins = ["pytester"]

#: One file per shape: (source, whether it is a script).
SHAPES: dict[str, tuple[str, bool]] = {
    "main_block.py": ("""\
        from trainer import run


        def settings():
            return {"epochs": 1}


        if __name__ == "__main__":
            run(settings)
        """, True),
    "top_level_main.py": ("""\
        def main():
            print("training")


        main()
        """, True),
    "sys_exit_main.py": ("""\
        import sys


        def main():
            return 0


        sys.exit(main())
        """, True),
    "raise_system_exit.py": ("""\
        def main():
            return 0


        raise SystemExit(main())
        """, True),
    "hydra_main.py": ("""\
        import hydra


        @hydra.main(config_path=None, version_base=None)
        def train(cfg):
            print(cfg)
        """, True),
    "click_invoked.py": ("""\
        import click


        @click.command()
        @click.option("--epochs", type=int)
        def cli(epochs):
            print(epochs)


        cli()
        """, True),
    "typer_app.py": ("""\
        import typer

        app = typer.Typer()


        @app.command()
        def train(epochs: int = 1):
            print(epochs)


        app()
        """, True),
    "fire_fire.py": ("""\
        import fire


        class Trainer:
            def fit(self, epochs=1):
                return epochs


        fire.Fire(Trainer)
        """, True),
    "parse_args_at_top.py": ("""\
        import argparse


        def make_parser():
            parser = argparse.ArgumentParser()
            parser.add_argument("--epochs", type=int)
            return parser


        args = make_parser().parse_args()
        """, True),
    "print_only.py": ("""\
        print("a flat script: running it prints")
        """, True),
    "library.py": ('''\
        """Helpers: definitions only."""
        import math


        def area(r):
            return math.pi * r * r


        class Model:
            def forward(self, x):
                return x
        ''', False),
    "constants.py": ('''\
        """Constants only."""
        import os

        EPOCHS = 10
        DATA = os.path.join(os.path.dirname(__file__), "data")
        __all__ = ["EPOCHS", "DATA"]
        ''', False),
    "click_not_invoked.py": ("""\
        import click


        @click.command()
        def cli():
            pass
        """, False),
    "registrations.py": ("""\
        from registry import register_model


        def resnet():
            return "resnet"


        def _register_defaults():
            register_model(resnet)


        register_model(resnet)
        _register_defaults()
        """, False),
    "hubconf.py": ("""\
        dependencies = ["torch"]
        import timm
        globals().update(timm.models.entrypoints)
        """, False),
    "flat_setup.py": ("""\
        import sys
        import warnings

        sys.path.insert(0, "..")
        warnings.filterwarnings("ignore")
        try:
            import torch
        except ImportError:
            torch = None
        """, False),
}


def _entry(path: Path, text: str) -> str | None:
    source_bytes = textwrap.dedent(text).encode()
    module = source.Module(path, source_bytes, ast.parse(source_bytes))
    return entry.entry_point(module)


@pytest.mark.parametrize("name", sorted(SHAPES))
def test_the_entry_point_rule_on_each_shape(tmp_path: Path, name: str) -> None:
    text, is_script = SHAPES[name]
    found = _entry(tmp_path / name, text)
    assert bool(found) is is_script, found


def test_a_package_init_is_never_a_script(tmp_path: Path) -> None:
    main_block = SHAPES["main_block.py"][0]
    assert _entry(tmp_path / "train.py", main_block)
    assert _entry(tmp_path / "__init__.py", main_block) is None


def _project(pytester: pytest.Pytester, ini: str = "", extra: dict[str, str] | None = None
             ) -> None:
    pytester.makeini("[pytest]\ntestpaths = tests\ntraining_glob = *.py\n" + ini)
    files = {f"shapes/{name}": text for name, (text, _) in SHAPES.items()}
    files["shapes/__init__.py"] = ""
    write_files(pytester.path, {**files, **(extra or {})})


def _jobs(result: pytest.RunResult) -> set[str]:
    return {line.split("::", 1)[0] for line in result.stdout.lines if "::" in line}


def test_only_scripts_are_collected_and_the_rest_is_listed_in_one_line(
    pytester: pytest.Pytester,
) -> None:
    _project(pytester)
    result = pytester.runpytest("-p", "training_plugin", "-p", "no:cacheprovider",
                                "--collect-only")
    assert result.ret == 0, result.stderr.str()
    scripts = {f"shapes/{n}" for n, (_, is_script) in SHAPES.items() if is_script}
    assert {line.split(": ", 1)[1].split()[1] for line in result.stdout.lines
            if line.startswith("job ")} == scripts
    not_scripts = sorted([f"shapes/{n}" for n, (_, s) in SHAPES.items() if not s]
                         + ["shapes/__init__.py"])
    line = MSG_NOT_SCRIPTS.format(count=len(not_scripts), files="files",
                                  examples=", ".join(not_scripts[:3]) + ", ...")
    assert line in result.stdout.lines
    quiet = pytester.runpytest("-p", "training_plugin", "-p", "no:cacheprovider",
                               "--collect-only", "-q")
    assert _jobs(quiet) == scripts


def test_require_entry_point_false_collects_every_matching_file(
    pytester: pytest.Pytester,
) -> None:
    _project(pytester, "training_require_entry_point = false\n")
    result = pytester.runpytest("-p", "training_plugin", "-p", "no:cacheprovider",
                                "--collect-only", "-q")
    assert result.ret == 0, result.stderr.str()
    assert _jobs(result) == {f"shapes/{n}" for n in SHAPES} | {"shapes/__init__.py"}
    assert "not scripts" not in result.stdout.str()


def test_the_job_table_keeps_a_file_without_an_entry_point(pytester: pytest.Pytester) -> None:
    table = ('[tool.training_plugin.jobs.library]\ntimeout = 30\n'
             '[tool.training_plugin.jobs.consts]\nscript = "shapes/constants.py"\n')
    _project(pytester, extra={"pyproject.toml": table})
    result = pytester.runpytest("-p", "training_plugin", "-p", "no:cacheprovider",
                                "--collect-only", "-q")
    assert result.ret == 0, result.stderr.str()
    assert "shapes/library.py::library" in result.stdout.lines
    assert "shapes/constants.py::consts" in result.stdout.lines
    named = pytester.runpytest("-p", "training_plugin", "-p", "no:cacheprovider",
                               "--collect-only", "-q", "shapes/registrations.py")
    assert "shapes/registrations.py::registrations" in named.stdout.lines


HELPER = """\
def add_common_args(parser):
    parser.add_argument("--epochs", type=int)
    parser.add_argument("--output-dir")


def unused(values):
    return [v * 2 for v in values]


class Model:
    def forward(self, x):
        return x
"""
SCRIPT = """\
import argparse
from shared.common import add_common_args

p = argparse.ArgumentParser()
add_common_args(p)
p.add_argument("--own-{i}")
p.parse_args()
"""


def test_each_module_is_read_parsed_and_scanned_once_per_session(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    files = {f"group{i % 3}/train_s{i}.py": SCRIPT.format(i=i) for i in range(6)}
    files["shared/__init__.py"] = ""
    files["shared/common.py"] = HELPER
    # every file a candidate: the helper's entry-point check reads it before the scripts follow it
    pytester.makeini("[pytest]\ntestpaths = tests\ntraining_glob = *.py\n")
    write_files(pytester.path, files)
    parsed: Counter[str] = Counter()
    scanned: Counter[str] = Counter()
    read: Counter[str] = Counter()
    defs: Counter[str] = Counter()  # the definitions a partial module parsed when looked up
    completed: Counter[str] = Counter()
    module_init, scan, read_bytes = source.Module.__init__, walk.Analyzer._scan, Path.read_bytes
    parse_def, complete = source.Functions._parsed, source.Module.complete

    def counting_read(self):  # type: ignore[no-untyped-def]
        read[str(self)] += 1
        return read_bytes(self)

    def counting_init(self, path, *args, **kwargs):  # type: ignore[no-untyped-def]
        parsed[Path(path).name] += 1
        module_init(self, path, *args, **kwargs)

    def counting_parse_def(self, name):  # type: ignore[no-untyped-def]
        defs[name] += 1
        return parse_def(self, name)

    def counting_complete(self):  # type: ignore[no-untyped-def]
        if not self.whole:
            completed[self.path.name] += 1
        complete(self)

    def counting_scan(self, module, *args, **kwargs):  # type: ignore[no-untyped-def]
        scanned[module.path.name] += 1
        return scan(self, module, *args, **kwargs)

    monkeypatch.setattr(source.Module, "__init__", counting_init)
    monkeypatch.setattr(source.Module, "complete", counting_complete)
    monkeypatch.setattr(source.Functions, "_parsed", counting_parse_def)
    monkeypatch.setattr(walk.Analyzer, "_scan", counting_scan)
    monkeypatch.setattr(Path, "read_bytes", counting_read)
    result = pytester.runpytest_inprocess("-p", "training_plugin", "-p", "no:cacheprovider",
                                          "--collect-only")
    assert result.ret == 0, result.stderr.str()
    assert result.stdout.str().count(", --epochs, --output-dir\n") == 6
    assert parsed["common.py"] == 1 and scanned["common.py"] == 1
    # the entry-point check's bytes serve the parse when a script's analysis follows it
    assert read[str(pytester.path / "shared" / "common.py")] == 1, read
    # the helper is parsed in part: the one function followed once, the rest never
    assert defs == {"add_common_args": 1} and not completed, (defs, completed)
    assert all(parsed[f"train_s{i}.py"] == 1 for i in range(6))


def test_a_script_folder_that_shadows_a_helper_import_gets_its_own_scan(
    pytester: pytest.Pytester,
) -> None:
    # both scripts reach shared/common.py; its `import extra` means ./extra.py for a's script
    # and b/extra.py for b's (the script's folder comes first on sys.path)
    files = {"a/train_one.py": SCRIPT.format(i=1), "b/train_two.py": SCRIPT.format(i=2),
             "shared/__init__.py": "",
             "shared/common.py": "import extra\n\n\ndef add_common_args(parser):\n"
                                 "    extra.add_more(parser)\n",
             "extra.py": "def add_more(parser):\n    parser.add_argument('--more')\n",
             "b/extra.py": "def add_more(parser):\n    parser.add_argument('--b-only')\n"}
    pytester.makeini("[pytest]\ntestpaths = tests\n")
    write_files(pytester.path, files)
    result = pytester.runpytest("-p", "training_plugin", "-p", "no:cacheprovider",
                                "--collect-only")
    result.stdout.fnmatch_lines(["job one: *", "    flags: --own-1, --more",
                                 "job two: *", "    flags: --own-2, --b-only"])


def test_a_warm_session_parses_no_file(pytester: pytest.Pytester,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    _project(pytester)
    first = pytester.runpytest_inprocess("-p", "training_plugin", "--collect-only", "-q")
    assert first.ret == 0, first.stderr.str()
    parsed: list[str] = []
    module_init = source.Module.__init__

    def counting_init(self, path, *args, **kwargs):  # type: ignore[no-untyped-def]
        parsed.append(Path(path).name)
        module_init(self, path, *args, **kwargs)

    monkeypatch.setattr(source.Module, "__init__", counting_init)
    warm = pytester.runpytest_inprocess("-p", "training_plugin", "--collect-only", "-q")
    assert _jobs(warm) == _jobs(first)
    assert parsed == []
    (pytester.path / "shapes/library.py").write_text("print('now a flat script')\n")
    edited = pytester.runpytest_inprocess("-p", "training_plugin", "--collect-only", "-q")
    assert "shapes/library.py::library" in edited.stdout.lines
    assert parsed == ["library.py"]


#: Scripts whose entry point hides from a line-by-line reading of their text; the partial parse
#: (``source.Module.partial``, which splits the text where top-level statements begin) must
#: not hide it.
HIDDEN_ENTRY_POINTS = {
    "after_a_semicolon": "import os; main()\ndef main():\n    pass\n",
    "carriage_returns": "def main():\r    pass\rmain()\r",
    "a_tuple_after_a_lambda": "def main():\n    pass\nlambda: 0, main()\n",
    "in_a_try": "def main():\n    pass\ntry:\n    main()\nexcept OSError:\n    pass\n",
    "on_an_if_line": "def main():\n    pass\nif True: main()\n",
    "a_string_method": "def main():\n    pass\n''.join([main()])\n",
    "an_f_string": "f'{print(1)}'\n",
    "a_normalized_name": "def main():\n    pass\n\uff4d\uff41\uff49\uff4e()\n",
    "a_concatenated_main": "if __name__ == '__ma' 'in__':\n    print(1)\n",
    "a_form_feed": "def main():\n    pass\n  \fmain()\n",
    "after_a_docstring": '"""Run it:\nmain()\n"""\ndef main():\n    pass\nmain()\n',
    "a_continued_import": "from os import (path,\n    sep); print(sep)\n",
    "latin_1": "# coding: latin-1\ndef main():\n    pass\nmain()\n",
    "a_string_statement_after_a_def": 'def main():\n    pass\n"x" if main() else 0\n',
    "a_call_in_a_closing_line": "def main():\n    pass\nx = [\n1,\n] + [main()\n]\nmain()\n",
    "after_a_backslash": "def main():\n    pass\nx = 1 + \\\n2; main()\n",
}


def _partly(path: Path, source_bytes: bytes) -> source.Module:
    """``path``'s module as the follower makes a helper's: in part when it can."""
    return source.Module.partial(path, source_bytes) or source.Module(
        path, source_bytes, ast.parse(source_bytes))


@pytest.mark.parametrize("name", sorted(HIDDEN_ENTRY_POINTS))
def test_a_partly_parsed_module_never_hides_an_entry_point(tmp_path: Path, name: str) -> None:
    text = HIDDEN_ENTRY_POINTS[name]
    source_bytes = text.encode("latin-1" if name == "latin_1" else "utf-8")
    whole = source.Module(tmp_path / "s.py", source_bytes, ast.parse(source_bytes))
    found = entry.entry_point(whole, source_bytes)
    assert found
    assert entry.entry_point(_partly(tmp_path / "s.py", source_bytes), source_bytes) == found


@pytest.mark.parametrize("name", sorted(SHAPES))
def test_a_partly_parsed_module_has_the_entry_point_of_its_whole_tree(
        tmp_path: Path, name: str) -> None:
    text, is_script = SHAPES[name]
    source_bytes = textwrap.dedent(text).encode()
    module = _partly(tmp_path / name, source_bytes)
    assert bool(entry.entry_point(module, source_bytes)) is is_script
    if name == "library.py":
        assert not module.whole  # its definitions were left unparsed


def test_a_file_that_looks_like_no_script_but_does_not_parse_is_one(tmp_path: Path) -> None:
    write_files(tmp_path, {"broken.py": "def area(r:\n    return r\n",
                           "strict.py": "nonlocal_x = 1\nnonlocal x\n",  # symtable refuses
                           "library.py": SHAPES["library.py"][0]})
    cache = flag_cache.FlagCache(walk.Analyzer(tmp_path))
    assert [cache.entry_point(tmp_path / n) for n in ("broken.py", "strict.py", "library.py")
            ] == [None, None, None]
    assert cache.settle() == [str(tmp_path / "broken.py")]
    assert (cache.entry_point(tmp_path / "broken.py") or "").startswith("syntax error, line 1")
    assert cache.entry_point(tmp_path / "strict.py") is None
    assert cache.entry_point(tmp_path / "library.py") is None


def test_a_module_that_does_not_parse_is_listed_as_a_job(pytester: pytest.Pytester) -> None:
    _project(pytester, extra={"shapes/broken.py": "def area(r:\n    return r\n"})
    result = pytester.runpytest("-p", "training_plugin", "-p", "no:cacheprovider",
                                "--collect-only", "-q")
    assert result.ret == 0, result.stderr.str()
    assert "shapes/broken.py::broken" in result.stdout.lines
    scripts = {f"shapes/{n}" for n, (_, is_script) in SHAPES.items() if is_script}
    assert _jobs(result) == scripts | {"shapes/broken.py"}
