#!/usr/bin/env python3
"""The original ``run_all_training.py`` command line, run through the pytest plugin.

Each old option maps onto ``pytest -p training_plugin``:

    --epochs N / --folds K / --output-dir DIR   the same options
    --only a b / --exclude c                    the node ids of exactly those jobs (ids match
                                                exactly, never as -k substrings)
    --parallel [--max-workers N]                -n N (-n auto without --max-workers; N >= 1,
                                                and --max-workers only with --parallel)
    --dry-run                                   --collect-only (each job's exact command)
    --list                                      --collect-only -q (the job ids)

Other arguments are passed to pytest as they are.  The equivalent pytest command is printed
once, then run; the exit code is pytest's.
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
from collections.abc import Mapping, Sequence

PYTEST = [sys.executable, "-m", "pytest", "-p", "training_plugin"]


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Train every model (runs `pytest -p training_plugin`; see README.md)."
    )
    parser.add_argument("--epochs", type=int, help="epochs for every job that has the flag")
    parser.add_argument("--folds", type=int, help="cross-validation folds")
    parser.add_argument("--output-dir", help="output directory (one folder per job)")
    parser.add_argument("--only", nargs="+", metavar="JOB", help="run only these job ids")
    parser.add_argument("--exclude", nargs="+", metavar="JOB", help="skip these job ids")
    parser.add_argument("--parallel", action="store_true", help="run jobs in parallel (-n)")
    parser.add_argument("--max-workers", type=int, metavar="N", help="workers with --parallel")
    parser.add_argument("--dry-run", action="store_true", help="show each job's command only")
    parser.add_argument("--list", action="store_true", help="list the job ids only")
    return parser


def job_nodes(cwd: str | None = None) -> dict[str, str]:
    """Job id -> node id, from ``pytest -p training_plugin --collect-only -q``."""
    proc = subprocess.run([*PYTEST, "--collect-only", "-q"], cwd=cwd, capture_output=True,
                          text=True)
    if proc.returncode not in (0, 5):
        sys.stderr.write(proc.stdout + proc.stderr)
        raise SystemExit(proc.returncode)
    nodes = [line.strip() for line in proc.stdout.splitlines() if "::" in line]
    return {node.rsplit("::", 1)[1]: node for node in nodes}


def check_workers(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """``--max-workers N``: N >= 1, and only with ``--parallel`` (an error otherwise)."""
    if args.max_workers is None:
        return
    if args.max_workers < 1:
        parser.error(f"--max-workers {args.max_workers}: the number of workers must be >= 1")
    if not args.parallel:
        parser.error("--max-workers works only with --parallel (add --parallel, or drop "
                     "--max-workers to run the jobs one after another)")


def build_command(
    args: argparse.Namespace, extra: Sequence[str], nodes: Mapping[str, str] | None
) -> list[str]:
    """The pytest command for the old options (``nodes``, job id -> node id, is needed for
    --only/--exclude: the chosen jobs are named by node id, so that ids match exactly)."""
    command = list(PYTEST)
    if args.epochs is not None:
        command += ["--epochs", str(args.epochs)]
    if args.folds is not None:
        command += ["--folds", str(args.folds)]
    if args.output_dir is not None:
        command += ["--output-dir", args.output_dir]
    if args.only or args.exclude:
        assert nodes is not None
        wanted = [nodes[i] for i in nodes if (not args.only or i in args.only)
                  and i not in (args.exclude or ())]
        if not wanted:  # nothing left: every job deselected
            command += [a for node in nodes.values() for a in ("--deselect", node)]
        elif len(wanted) < len(nodes):
            command += wanted
    if args.parallel:
        command += ["-n", str(args.max_workers) if args.max_workers else "auto"]
    if args.list:
        command += ["--collect-only", "-q"]
    elif args.dry_run:
        command.append("--collect-only")
    return command + list(extra)


def main(argv: Sequence[str] | None = None, cwd: str | None = None) -> int:
    parser = make_parser()
    args, extra = parser.parse_known_args(argv)
    check_workers(parser, args)
    cwd = cwd or os.path.dirname(os.path.abspath(__file__))
    nodes = job_nodes(cwd) if (args.only or args.exclude) else None
    if nodes is not None:
        unknown = [j for j in (args.only or []) + (args.exclude or []) if j not in nodes]
        if unknown:
            parser.error(f"unknown job id(s): {', '.join(unknown)}; the job ids are: "
                         f"{', '.join(sorted(nodes))}")
    command = build_command(args, extra, nodes)
    shown = ["pytest", *command[3:]]
    print(f"run_all_training.py runs: {shlex.join(shown)}", flush=True)
    return subprocess.run(command, cwd=cwd).returncode


if __name__ == "__main__":
    raise SystemExit(main())
