"""Precision and recall of the static flag analysis on tests/flag_corpus/, against argparse.

Each case folder holds a script written in the shape of a real repository's training script
(see tests/flag_corpus/README.md).  For every case this prints what the plugin would forward
(`build_argv` with --epochs/--folds/--seed/--output-dir set) and the required flags it finds,
and compares them with:

- the spellings labelled in case.json as meaning each shared setting, and
- argparse's own answer: the case's script is executed in a subprocess in which argparse's
  parse_args/parse_known_args record the parser's actions instead of parsing (modules that
  are not installed are stubbed); the required arguments are those argparse reports missing
  when given an empty command line.  A forwarded flag that argparse does not accept counts as
  a false positive even if case.json were wrong.

Usage: python bench/bench_flags_corpus.py [--no-aliases] [-v]
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT / "tests" / "flag_corpus"
sys.path.insert(0, str(ROOT))

from training_plugin import flags as flags_mod  # noqa: E402
from training_plugin import options  # noqa: E402
from training_plugin.collect import argv as argv_mod  # noqa: E402

SETTINGS = {"epochs": "3", "folds": "4", "seed": "1234567"}
OUT = "/probe-output-dir"

PROBE = r'''
import argparse, importlib.abc, importlib.machinery, json, runpy, sys, types

class _Stub(types.ModuleType):
    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        return _Stub(name)
    def __call__(self, *a, **k):
        if len(a) == 1 and callable(a[0]) and not k:
            return a[0]
        return _Stub("call")

class _Finder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, name, path, target=None):
        for finder in sys.meta_path:
            if finder is self:
                continue
            try:
                if finder.find_spec(name, path, target) is not None:
                    return None
            except Exception:
                pass
        return importlib.machinery.ModuleSpec(name, self, is_package=True)
    def create_module(self, spec):
        module = _Stub(spec.name)
        module.__path__ = []
        return module
    def exec_module(self, module):
        pass

sys.meta_path.append(_Finder())
seen = []

class _Done(BaseException):
    pass

class _Missing(Exception):
    pass

def _record(parser):
    options = [o for a in parser._actions for o in a.option_strings]
    def name(a):
        if a.option_strings:
            longs = [o for o in a.option_strings if o.startswith("--")]
            return (longs or a.option_strings)[0]
        return "<" + a.dest + ">"
    required = []
    real_error = parser.error
    def error(message):
        raise _Missing(message)
    def missing(args):
        try:
            _real_known(parser, args, None)
        except _Missing as exc:
            text = str(exc)
            if "required:" in text:
                return [t.strip() for t in text.split("required:", 1)[1].split(",")]
        return []
    parser.error = error
    try:
        listed = missing([])
        for a in parser._actions:
            if a.option_strings and argparse._get_action_name(a) in listed:
                required.append(name(a))
        # a positional is required when it is reported missing while every positional
        # before it has a value
        positionals = [a for a in parser._actions if not a.option_strings]
        for i, a in enumerate(positionals):
            if argparse._get_action_name(a) in missing(["x"] * i):
                required.append(name(a))
    finally:
        parser.error = real_error
    seen.append({"options": options, "required": required})

_real_known = argparse.ArgumentParser.parse_known_args

def parse_known_args(self, args=None, namespace=None):
    _record(self)
    ns = argparse.Namespace(**{a.dest: a.default for a in self._actions
                               if a.dest != argparse.SUPPRESS})
    return ns, []

def parse_args(self, args=None, namespace=None):
    _record(self)
    raise _Done

argparse.ArgumentParser.parse_known_args = parse_known_args
argparse.ArgumentParser.parse_args = parse_args
script = sys.argv[1]
sys.argv = [script]
sys.path.insert(0, __import__("os").path.dirname(script))
try:
    runpy.run_path(script, run_name="__main__")
except _Done:
    pass
except SystemExit:
    pass
print("PROBE" + json.dumps(seen))
'''


def argparse_answer(case_dir: Path, script: Path) -> dict[str, set[str]] | None:
    """Options argparse accepts and the required arguments it reports, or None."""
    proc = subprocess.run(
        [sys.executable, "-c", PROBE, str(script)], cwd=case_dir, capture_output=True,
        text=True, timeout=60,
    )
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("PROBE")]
    if not lines:
        print(f"    probe failed: {proc.stderr.strip().splitlines()[-1:]}")
        return None
    parsers = json.loads(lines[-1][5:])
    if not parsers:
        return None
    return {
        "options": {o for p in parsers for o in p["options"]},
        "required": {r for p in parsers for r in p["required"]},
    }


def settings_for(case: dict, rootdir: Path, use_aliases: bool) -> options.Settings:
    values = dict(rootdir=rootdir, output_dir=Path(OUT).parent, epochs=3, folds=4, seed=1234567)
    names = {f.name for f in dataclasses.fields(options.Settings)}
    if use_aliases and "flag_aliases" in names and case.get("aliases"):
        values["flag_aliases"] = tuple(
            (name, tuple(spellings)) for name, spellings in case["aliases"].items()
        )
    return options.Settings(**values)


def forwarded(argv: list[str]) -> dict[str, str]:
    """setting -> spelling forwarded, read back from the command."""
    by_value = {v: k for k, v in SETTINGS.items()}
    by_value[OUT] = "output-dir"
    out: dict[str, str] = {}
    tokens = argv[2:]
    for option, value in zip(tokens, tokens[1:]):
        if option.startswith("-") and value in by_value:
            out[by_value[value]] = option
    return out


def required_of(info: flags_mod.ParserInfo) -> set[str]:
    if not info.resolved:
        return set()
    return {
        (f.long_options or f.options)[0] if f.options else f"<{f.dest}>"
        for f in info.flags if f.required
    }


def main() -> int:
    use_aliases = "--no-aliases" not in sys.argv
    verbose = "-v" in sys.argv
    shared = {"tp": 0, "fp": 0, "fn": 0}
    required = {"tp": 0, "fp": 0, "fn": 0}
    status_ok = 0
    cases = sorted(p.parent for p in CORPUS.glob("*/case.json"))
    for case_dir in cases:
        case = json.loads((case_dir / "case.json").read_text())
        script = case_dir / case["script"]
        info = flags_mod.Analyzer(case_dir).analyze(script)
        settings = settings_for(case, case_dir, use_aliases)
        argv, _missing, _notes = argv_mod.build_argv(
            case["script"], info, settings, (), Path(OUT)
        )
        got = forwarded(argv)
        truth = dict(case["shared"])
        if not use_aliases:
            for name in case.get("aliases", {}):
                truth.pop(name, None)
        want_required = set(case["required"])
        answer = argparse_answer(case_dir, script) if case.get("argparse", True) else None
        problems: list[str] = []
        if answer is not None:
            for name, spelling in case["shared"].items():
                if spelling not in answer["options"]:
                    problems.append(f"case.json labels {spelling} but argparse has no such option")
            if answer["required"] != want_required:
                problems.append(f"case.json required {sorted(want_required)} but argparse says "
                                f"{sorted(answer['required'])}")
            want_required = answer["required"]
        elif case.get("argparse", True):
            problems.append("argparse answer unavailable")
        for name, spelling in got.items():
            accepted_by_argparse = answer is None or spelling in answer["options"]
            if truth.get(name) == spelling and accepted_by_argparse:
                shared["tp"] += 1
            else:
                shared["fp"] += 1
                problems.append(f"forwarded {spelling} for {name} (expected {truth.get(name)})")
        for name, spelling in truth.items():
            if got.get(name) != spelling:
                shared["fn"] += 1
                problems.append(f"missed {spelling} for {name}")
        found_required = required_of(info)
        required["tp"] += len(found_required & want_required)
        required["fp"] += len(found_required - want_required)
        required["fn"] += len(want_required - found_required)
        if found_required != want_required:
            problems.append(f"required {sorted(found_required)}, argparse {sorted(want_required)}")
        if info.status == case["status"]:
            status_ok += 1
        else:
            problems.append(f"status {info.status}, expected {case['status']}")
        mark = "ok  " if not problems else "MISS"
        print(f"{mark} {case_dir.name:22} {info.status:10} forwarded {got or '{}'}")
        for problem in problems:
            print(f"       {problem}")
        if verbose:
            print(f"       {info.describe()}")

    def pr(c: dict[str, int]) -> str:
        p = c["tp"] / (c["tp"] + c["fp"]) if c["tp"] + c["fp"] else 1.0
        r = c["tp"] / (c["tp"] + c["fn"]) if c["tp"] + c["fn"] else 1.0
        return f"precision {p:.3f}  recall {r:.3f}  (tp {c['tp']}, fp {c['fp']}, fn {c['fn']})"

    print()
    print(f"corpus: {len(cases)} scripts; ini aliases {'used' if use_aliases else 'not used'}")
    print(f"shared flags:   {pr(shared)}")
    print(f"required flags: {pr(required)}")
    print(f"status as expected: {status_ok}/{len(cases)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
