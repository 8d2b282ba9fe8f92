"""What a training script accepts on its command line, learned statically (AST only).

A script is never imported or executed.  Three outcomes (``ParserInfo.status``):

- ``"resolved"``: the flags are known;
- ``"none"``: the script has no command-line parser at all (it accepts no flags);
- ``"unresolved"``: something cannot be read statically (computed option strings,
  ``**kwargs``, sub-commands, a parser made or used outside the repository, another CLI
  library, ``exec`` of a configurator, a helper that reads ``sys.argv``, a syntax error).
  Nothing is guessed: callers forward no shared flags to such a script.

Where each part lives:

- ``model``:  ``Flag``, ``ParserInfo``, option-name helpers (``normalize``, ``find_flag``);
- ``source``: what the others share (the leaf): AST helpers (``dotted``, ``literal``), the
  parsed ``Module`` and the ``State`` of one analysis;
- ``guards``: literal values at call sites and the ``if`` branches they decide;
- ``text``:   where a module's top-level statements begin, read off its text (a leaf);
- ``entry``:  whether a file is a script at all: its entry point (``entry_point``), read off
  its top level;
- ``follow``: the session's module table (each file read and parsed once, a followed helper
  in part: its top level, and each definition when looked up) and where a name
  used in a module leads: imports (``training_plugin.imports``, the resolver the fingerprint
  uses too) and repository functions (``Follower``);
- ``walk``:   the AST walk of one script: ``add_argument``, parsers, ``parse_*`` calls, parent
  parsers, helpers, other CLI libraries (``Analyzer``, the entry point); each followed helper
  is scanned once per session and shared by the scripts that reach it alike;
- ``cache``:  results keyed by the contents of the script and every followed module, and each
  candidate file's entry point keyed by its contents (a file's hash is trusted while its stat
  signature is unchanged).

Imports go one way: model, text <- source <- guards, entry, follow <- walk <- cache.
"""

from __future__ import annotations

from training_plugin.flags.cache import ANALYSIS_VERSION, FlagCache
from training_plugin.flags.model import (
    NO_PARSER,
    RESOLVED,
    SPELLINGS,
    UNRESOLVED,
    Flag,
    ParserInfo,
    find_flag,
    find_shared,
    iter_option_tokens,
    normalize,
    sha256_bytes,
)
from training_plugin.flags.source import MAX_DEPTH
from training_plugin.flags.walk import Analyzer

__all__ = [
    "ANALYSIS_VERSION",
    "MAX_DEPTH",
    "NO_PARSER",
    "RESOLVED",
    "SPELLINGS",
    "UNRESOLVED",
    "Analyzer",
    "Flag",
    "FlagCache",
    "ParserInfo",
    "find_flag",
    "find_shared",
    "iter_option_tokens",
    "normalize",
    "sha256_bytes",
]
