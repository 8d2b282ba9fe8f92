"""Static argparse analysis (training_plugin.flags): pure unit tests on tiny files."""

from __future__ import annotations

import os
import textwrap
import time
from pathlib import Path

import pytest

from training_plugin.flags import (
    NO_PARSER,
    RESOLVED,
    UNRESOLVED,
    Analyzer,
    FlagCache,
    ParserInfo,
)
from training_plugin.flags import cache as flag_cache


def write(root: Path, rel: str, source: str) -> Path:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(source))
    return path


def analyze(root: Path, rel: str, source: str) -> ParserInfo:
    return Analyzer(root).analyze(write(root, rel, source))


def options(info: ParserInfo) -> set[str]:
    return {o for f in info.flags for o in f.options}


def test_helpers_groups_and_parent_parsers(tmp_path: Path) -> None:
    info = analyze(tmp_path, "train_a.py", """
        import argparse

        def add_model_args(parser):
            group = parser.add_argument_group("model")
            group.add_argument("--hidden", type=int, default=64)

        def base_parser():
            base = argparse.ArgumentParser(add_help=False)
            base.add_argument("--seed", type=int, default=42)
            return base

        def main():
            parser = argparse.ArgumentParser(parents=[base_parser()])
            add_model_args(parser)
            exclusive = parser.add_mutually_exclusive_group()
            exclusive.add_argument("--cpu", action="store_true")
            exclusive.add_argument("--gpu", action="store_true")
            return parser.parse_args()

        if __name__ == "__main__":
            main()
    """)
    assert info.status == RESOLVED
    assert options(info) == {"--hidden", "--seed", "--cpu", "--gpu"}
    assert info.find("seed").default == 42
    assert info.find("cpu").takes_value is False


def test_imported_helper_from_src_layout_package_is_followed(tmp_path: Path) -> None:
    write(tmp_path, "src/pkg/__init__.py", "")
    write(tmp_path, "src/pkg/training/__init__.py", "from .common import add_common_args\n")
    write(tmp_path, "src/pkg/training/common.py", """
        from .extra import add_output

        def add_common_args(parser, *, epochs=None):
            if epochs is not None:
                parser.add_argument("-e", "--epochs", type=int, default=epochs)
            parser.add_argument("--n_jobs", type=int)
            add_output(parser)

        def unrelated_parser():
            import argparse
            p = argparse.ArgumentParser()
            p.add_argument("--not-for-scripts")
    """)
    write(tmp_path, "src/pkg/training/extra.py", """
        def add_output(parser):
            parser.add_argument("--output-dir")
    """)
    info = analyze(tmp_path, "scripts/train_b.py", """
        import argparse
        from pkg.training import add_common_args
        import pkg.training.common as common

        parser = argparse.ArgumentParser()
        add_common_args(parser, epochs=5)
        common.add_common_args(parser)
        args = parser.parse_args()
    """)
    assert info.status == RESOLVED
    assert options(info) == {"-e", "--epochs", "--n_jobs", "--output-dir"}
    # the result depends on the followed modules (cache key)
    assert {Path(p).name for p in info.deps} == {"common.py", "extra.py"}


def test_parent_parser_built_at_module_level_in_an_imported_module(tmp_path: Path) -> None:
    write(tmp_path, "src/pkg/__init__.py", "")
    write(tmp_path, "src/pkg/cli.py", """
        import argparse

        def add_io(parser):
            parser.add_argument("--output-dir")

        def make_shared():
            shared = argparse.ArgumentParser(add_help=False)
            shared.add_argument("--folds", type=int, default=5)
            return shared

        base = argparse.ArgumentParser(add_help=False)
        base.add_argument("--seed", type=int, default=42)
        tuning = base.add_argument_group("tuning")
        tuning.add_argument("-e", "--epochs", type=int, required=True)
        add_io(base)

        shared = make_shared()

        other = argparse.ArgumentParser()
        other.add_argument("--not-for-scripts")
    """)
    info = analyze(tmp_path, "scripts/train_p.py", """
        import argparse
        from pkg.cli import base
        import pkg.cli as cli

        parser = argparse.ArgumentParser(parents=[base, cli.shared])
        parser.add_argument("--lr", type=float)
        parser.parse_args()
    """)
    assert info.status == RESOLVED
    assert options(info) == {"--seed", "-e", "--epochs", "--output-dir", "--folds", "--lr"}
    assert info.find("epochs").required
    assert info.find("folds").default == 5
    assert {Path(p).name for p in info.deps} == {"cli.py"}


def test_parent_parser_from_outside_the_repository_is_unresolved(tmp_path: Path) -> None:
    info = analyze(tmp_path, "train_q.py", """
        import argparse
        from somelib.cli import base_parser
        parser = argparse.ArgumentParser(parents=[base_parser])
        parser.add_argument("--lr", type=float)
        parser.parse_args()
    """)
    assert info.status == UNRESOLVED
    assert "parent parser base_parser (line 4) is not built in the repository" in info.reasons[0]


def test_relative_import_in_package(tmp_path: Path) -> None:
    write(tmp_path, "jobs/__init__.py", "")
    write(tmp_path, "jobs/shared.py", "def add(p):\n    p.add_argument('--folds', type=int)\n")
    info = analyze(tmp_path, "jobs/train_c.py", """
        import argparse
        from . import shared
        from .shared import add as add_shared
        p = argparse.ArgumentParser()
        shared.add(p)
        add_shared(p)
        p.parse_args()
    """)
    assert options(info) == {"--folds"}


def test_strings_comments_and_docstrings_are_not_flags(tmp_path: Path) -> None:
    info = analyze(tmp_path, "train_d.py", '''
        """Usage: parser.add_argument("--doc-flag")"""
        import argparse
        # parser.add_argument("--comment-flag")
        HELP = 'parser.add_argument("--string-flag")'
        def f():
            """parser.add_argument("--docstring-flag")"""
        p = argparse.ArgumentParser(description="--epochs is not a flag here")
        p.add_argument("--real")
        p.parse_args()
    ''')
    assert options(info) == {"--real"}


def test_short_long_required_and_value_kinds(tmp_path: Path) -> None:
    info = analyze(tmp_path, "train_e.py", """
        import argparse
        p = argparse.ArgumentParser()
        p.add_argument("-e", "--epochs", type=int, default=3, help=compute_help())
        p.add_argument("--config", required=True)
        p.add_argument("-v", "--verbose", action="count")
        p.add_argument("--amp", action=argparse.BooleanOptionalAction)
        p.add_argument("data", nargs="?")
        p.parse_args()
    """)
    epochs = info.find("epochs")
    assert epochs.options == ("-e", "--epochs") and epochs.default == 3 and epochs.takes_value
    assert info.find("config").required is True
    assert info.find("verbose").takes_value is False
    assert "--no-amp" in info.find("amp").options
    positional = [f for f in info.flags if f.positional]
    assert positional and positional[0].required is False


def test_find_accepts_underscore_and_dash_spellings(tmp_path: Path) -> None:
    info = analyze(tmp_path, "train_f.py", """
        import argparse
        p = argparse.ArgumentParser()
        p.add_argument("--output_dir")
        p.add_argument("--learning-rate")
        p.parse_args()
    """)
    assert info.find("output-dir").options == ("--output_dir",)
    assert info.find("learning_rate").options == ("--learning-rate",)
    assert info.find("epochs") is None


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ("name = '--x'\np.add_argument(name)", "computed option strings"),
        ("p.add_argument(*['--x'])", "computed option strings"),
        ("kw = {}\np.add_argument('--x', **kw)", "**kwargs"),
        ("import somelib\nsomelib.add_flags(p)", "not in the repository"),
        ("sub = p.add_subparsers()", "sub-commands"),
    ],
)
def test_unresolved_parsers_are_reported_not_guessed(tmp_path: Path, body: str, reason: str) -> None:
    info = analyze(tmp_path, "train_g.py", "import argparse\np = argparse.ArgumentParser()\n" + body)
    assert info.status == UNRESOLVED
    assert reason in info.describe()
    assert "cannot be read statically" in info.describe()


def test_syntax_error_is_unresolved(tmp_path: Path) -> None:
    info = analyze(tmp_path, "train_h.py", "import argparse\ndef broken(:\n")
    assert info.status == UNRESOLVED and "syntax error, line 2" in info.describe()


def test_no_parser_means_no_flags(tmp_path: Path) -> None:
    info = analyze(tmp_path, "train_i.py", "print('training without arguments')\n")
    assert info.status == NO_PARSER and info.flags == ()
    assert "accepts no flags" in info.describe()
    argv_only = analyze(tmp_path, "train_j.py", "import sys\nepochs = int(sys.argv[1])\n")
    assert argv_only.status == UNRESOLVED and "sys.argv" in argv_only.describe()


def test_large_file_with_add_argument_at_the_end(tmp_path: Path) -> None:
    filler = "".join(f"def f{i}(x):\n    return x + {i}\n" for i in range(20000))
    info = analyze(
        tmp_path,
        "train_k.py",
        "import argparse\n" + filler + "p = argparse.ArgumentParser()\np.add_argument('--last')\n",
    )
    assert options(info) == {"--last"}


def test_helper_cycles_terminate(tmp_path: Path) -> None:
    write(tmp_path, "a.py", "from b import g\ndef f(p):\n    p.add_argument('--a')\n    g(p)\n")
    write(tmp_path, "b.py", "from a import f\ndef g(p):\n    p.add_argument('--b')\n    f(p)\n")
    info = analyze(tmp_path, "train_l.py", """
        import argparse
        from a import f
        p = argparse.ArgumentParser()
        f(p)
    """)
    assert options(info) == {"--a", "--b"}


def test_scripts_are_never_executed(tmp_path: Path) -> None:
    marker = tmp_path / "executed"
    info = analyze(tmp_path, "train_m.py", f"""
        import argparse, pathlib
        pathlib.Path({str(marker)!r}).write_text("ran")
        p = argparse.ArgumentParser()
        p.add_argument("--x")
    """)
    assert options(info) == {"--x"}
    assert not marker.exists()


def test_cache_is_keyed_by_script_and_followed_module_contents(tmp_path: Path) -> None:
    helper = write(tmp_path, "helpers.py", "def add(p):\n    p.add_argument('--one')\n")
    script = write(tmp_path, "train_n.py", """
        import argparse
        from helpers import add
        p = argparse.ArgumentParser()
        add(p)
    """)
    first = FlagCache(Analyzer(tmp_path))
    assert options(first.get(script)) == {"--one"} and first.changed
    warm = FlagCache(Analyzer(tmp_path), first.data)
    assert options(warm.get(script)) == {"--one"} and not warm.changed
    helper.write_text("def add(p):\n    p.add_argument('--two')\n")
    after_edit = FlagCache(Analyzer(tmp_path), first.data)
    assert options(after_edit.get(script)) == {"--two"} and after_edit.changed


def test_a_settled_file_is_known_by_its_stat_signature_and_re_read_when_it_changes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    library = write(tmp_path, "lib.py", "X = 1\n")
    fresh = FlagCache(Analyzer(tmp_path))
    assert fresh.entry_point(library) is None and fresh.settle() == []
    assert fresh.data[str(library)][4] is None  # changed just now: no signature yet
    monkeypatch.setattr(flag_cache, "SETTLED_NS", -1)
    first = FlagCache(Analyzer(tmp_path), fresh.data)
    assert first.entry_point(library) is None and first.settle() == []
    assert first.data[str(library)][4] is not None
    reads: list[Path] = []
    read_bytes = Path.read_bytes

    def counting_read(self: Path) -> bytes:
        reads.append(self)
        return read_bytes(self)

    monkeypatch.setattr(Path, "read_bytes", counting_read)
    warm = FlagCache(Analyzer(tmp_path), first.data)
    assert warm.entry_point(library) is None and not warm.changed and reads == []
    # same size, same mtime, other contents: the signature's ctime tells the change
    before = library.stat()
    time.sleep(0.05)
    library.write_text("f(12)\n")
    os.utime(library, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert library.stat().st_size == before.st_size
    edited = FlagCache(Analyzer(tmp_path), first.data)
    assert edited.entry_point(library) is None  # no __main__: decided by settle
    assert edited.settle() == [str(library)]
    assert edited.entry_point(library) == "a top-level call at line 1 (a flat script)"
    assert reads == [library]


@pytest.mark.parametrize(
    ("call", "expected"),
    [
        ("add(p, folds=None)", {"--epochs", "--n-jobs"}),
        ("add(p, folds=3, n_jobs=False)", {"--epochs", "--folds"}),
        ("add(p, 3, None, False)", {"--epochs"}),
        ("add(p)", {"--epochs", "--folds", "--n-jobs"}),  # the helper's defaults
        ("add(p, folds=FOLDS)", {"--epochs", "--n-jobs"}),  # a module-level constant (None)
        ("add(p, folds=compute())", {"--epochs", "--folds", "--n-jobs"}),  # unknown: kept
    ],
)
def test_helper_guards_are_decided_from_call_site_literals(
    tmp_path: Path, call: str, expected: set[str]
) -> None:
    write(tmp_path, "helpers.py", """
        def add(parser, epochs=10, folds=5, n_jobs=True):
            if epochs is not None:
                _epochs(parser, epochs)
            if folds is not None and folds > 1:
                parser.add_argument("--folds", type=int, default=folds)
            if n_jobs:
                parser.add_argument("--n-jobs", type=int)

        def _epochs(parser, default):
            if default is None:
                return
            parser.add_argument("--epochs", type=int, default=default)
    """)
    info = analyze(tmp_path, "train_o.py", f"""
        import argparse
        from helpers import add
        FOLDS = None
        p = argparse.ArgumentParser()
        {call}
    """)
    assert options(info) == expected


def test_early_return_in_a_helper_is_decided_from_the_call(tmp_path: Path) -> None:
    write(tmp_path, "helpers.py", """
        def add_folds(parser, folds):
            if folds is None:
                return parser
            parser.add_argument("--folds", type=int, default=folds)
            return parser
    """)
    source = "import argparse\nfrom helpers import add_folds\np = argparse.ArgumentParser()\n"
    without = analyze(tmp_path, "train_p.py", source + "add_folds(p, None)\n")
    assert without.status == RESOLVED and options(without) == set()
    assert options(analyze(tmp_path, "train_q.py", source + "add_folds(p, 5)\n")) == {"--folds"}


def test_parse_known_args_and_two_stage_parsing_count_the_scripts_own_parsers(
    tmp_path: Path,
) -> None:
    two_stage = analyze(tmp_path, "train_r.py", """
        import argparse
        config_parser = parser = argparse.ArgumentParser(add_help=False)
        parser.add_argument("-c", "--config", default="")
        parser = argparse.ArgumentParser()
        parser.add_argument("--epochs", type=int)
        cfg, remaining = config_parser.parse_known_args()
        args = parser.parse_args(remaining)
    """)
    assert two_stage.status == RESOLVED
    assert options(two_stage) == {"-c", "--config", "--epochs"}
    known = analyze(tmp_path, "train_s.py", """
        import argparse
        def parse_opt(known=False):
            parser = argparse.ArgumentParser()
            parser.add_argument("--seed", type=int)
            return parser.parse_known_args()[0] if known else parser.parse_args()
    """)
    assert known.status == RESOLVED and options(known) == {"--seed"}


def test_parent_parser_from_a_repository_helper_held_in_a_local_variable(tmp_path: Path) -> None:
    write(tmp_path, "main.py", """
        import argparse
        def get_args_parser():
            parser = argparse.ArgumentParser(add_help=False)
            parser.add_argument("--epochs", type=int)
            parser.add_argument("--output_dir")
            return parser
    """)
    info = analyze(tmp_path, "train_t.py", """
        import argparse
        import main as trainer
        def parse_args():
            base = trainer.get_args_parser()
            parser = argparse.ArgumentParser("launcher", parents=[base])
            parser.add_argument("--nodes", type=int)
            return parser.parse_args()
    """)
    assert info.status == RESOLVED
    assert options(info) == {"--epochs", "--output_dir", "--nodes"}
    outside = analyze(tmp_path, "train_u.py", """
        import argparse
        from somelib import get_args_parser
        def parse_args():
            base = get_args_parser()
            return argparse.ArgumentParser(parents=[base]).parse_args()
    """)
    assert outside.status == UNRESOLVED
    assert "the parser base comes from get_args_parser()" in outside.describe()


def test_positional_requirements_follow_argparse(tmp_path: Path) -> None:
    info = analyze(tmp_path, "train_v.py", """
        import argparse
        p = argparse.ArgumentParser()
        p.add_argument("data", default="d")          # required despite the default
        p.add_argument("maybe", nargs="?")
        p.add_argument("many", nargs="*")
        p.add_argument("rest", nargs=argparse.REMAINDER)
        p.parse_args()
    """)
    required = {f.dest for f in info.flags if f.required}
    assert required == {"data"}


@pytest.mark.parametrize(
    ("source", "status"),
    [
        ("import hydra\n@hydra.main(config_path='conf')\ndef main(cfg):\n    pass\n", UNRESOLVED),
        ("import click\n@click.command()\n@click.option('--epochs')\ndef main(epochs):\n"
         "    pass\n", UNRESOLVED),
        ("from fire import Fire\ndef train(epochs=1):\n    pass\nFire(train)\n", UNRESOLVED),
        ("import argparse\nfrom hydra.utils import instantiate\n"
         "p = argparse.ArgumentParser()\np.add_argument('--epochs')\np.parse_args()\n",
         RESOLVED),
    ],
)
def test_another_cli_library_counts_only_where_it_is_the_cli(
    tmp_path: Path, source: str, status: str
) -> None:
    assert analyze(tmp_path, "train_w.py", source).status == status


def test_an_unrelated_import_in_a_followed_helper_is_not_a_cli(tmp_path: Path) -> None:
    write(tmp_path, "helpers.py", """
        def add(parser):
            import hydra.utils  # used for something else
            parser.add_argument("--epochs", type=int)
    """)
    info = analyze(tmp_path, "train_x.py", """
        import argparse
        from helpers import add
        p = argparse.ArgumentParser()
        add(p)
        p.parse_args()
    """)
    assert info.status == RESOLVED and options(info) == {"--epochs"}


@pytest.mark.parametrize(
    ("files", "script", "reason"),
    [
        ({}, "from d2.engine import default_argument_parser\n"
             "args = default_argument_parser().parse_args()\n",
         "made by default_argument_parser(), which is not in the repository"),
        ({}, "from d2.engine import default_argument_parser\n"
             "parser = default_argument_parser()\nparser.add_argument('--x')\n"
             "args = parser.parse_args()\n",
         "the parser parser comes from default_argument_parser()"),
        ({"configurator.py": "import sys\n"}, "epochs = 1\n"
         "exec(open('configurator.py').read())\n", "exec() at line 2"),
        ({"cli.py": "import sys\ndef parse():\n    return sys.argv[1:]\n"},
         "from cli import parse\ncfg = parse()\n", "cli.py reads sys.argv directly"),
    ],
)
def test_command_lines_that_cannot_be_read_statically_are_not_called_flagless(
    tmp_path: Path, files: dict[str, str], script: str, reason: str
) -> None:
    for rel, text in files.items():
        write(tmp_path, rel, text)
    info = analyze(tmp_path, "train_y.py", script)
    assert info.status == UNRESOLVED
    assert reason in info.describe()
    assert "accepts no flags" not in info.describe()


def test_a_helper_chain_deeper_than_the_budget_is_stated_in_the_listing(
    pytester: pytest.Pytester,
) -> None:
    from training_plugin.flags.source import MAX_DEPTH, MSG_DEPTH_BUDGET

    depth = MAX_DEPTH + 2
    for n in range(depth):
        nxt = (f"from chain{n + 1} import add{n + 1}\n" if n + 1 < depth else "")
        call = f"    add{n + 1}(p)\n" if n + 1 < depth else ""
        write(pytester.path, f"chain{n}.py",
              f"{nxt}def add{n}(p):\n    p.add_argument('--level-{n}')\n{call}")
    write(pytester.path, "train_deep.py", "import argparse\nfrom chain0 import add0\n"
          "p = argparse.ArgumentParser()\nadd0(p)\np.parse_args()\n")
    write(pytester.path, "train_shallow.py", "import argparse\nfrom chain7 import add7\n"
          "p = argparse.ArgumentParser()\nadd7(p)\np.parse_args()\n")
    pytester.makeini("[pytest]\ntestpaths = tests\n")
    result = pytester.runpytest("-p", "training_plugin", "-p", "no:cacheprovider",
                                "--collect-only")
    result.stdout.fnmatch_lines(["job deep: *", f"    flags: *({MSG_DEPTH_BUDGET})",
                                 "job shallow: *", "    flags: --level-7, --level-8, --level-9"])
