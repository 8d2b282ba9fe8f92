"""The flag analysis on tests/flag_corpus/: real-world parser shapes, one folder per case.

Each case's case.json says what the analysis should conclude and which spelling each shared
setting should reach (bench/bench_flags_corpus.py also checks those labels against argparse).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from training_plugin.collect.argv import build_argv
from training_plugin.flags import Analyzer
from training_plugin.options import Settings

CORPUS = Path(__file__).parent / "flag_corpus"
CASES = sorted(p.parent.name for p in CORPUS.glob("*/case.json"))
VALUES = {"epochs": "3", "folds": "4", "seed": "1234567", "output-dir": "/out/job"}


def test_the_corpus_covers_the_constructs() -> None:
    assert len(CASES) >= 20


@pytest.mark.parametrize("case", CASES)
def test_corpus_case(case: str) -> None:
    folder = CORPUS / case
    spec = json.loads((folder / "case.json").read_text())
    info = Analyzer(folder).analyze(folder / spec["script"])
    assert info.status == spec["status"], info.describe()
    settings = Settings(
        rootdir=folder, output_dir=Path("/out"), epochs=3, folds=4, seed=1234567,
        flag_aliases=tuple((k, tuple(v)) for k, v in spec.get("aliases", {}).items()),
    )
    argv, _missing, _notes = build_argv(spec["script"], info, settings, (), Path("/out/job"))
    by_value = {v: k for k, v in VALUES.items()}
    tokens = argv[2:]
    forwarded = {by_value[v]: o for o, v in zip(tokens, tokens[1:]) if v in by_value}
    assert forwarded == spec["shared"]
    required = {
        (f.long_options or f.options)[0] if f.options else f"<{f.dest}>"
        for f in info.flags if f.required
    }
    assert required == set(spec["required"])
