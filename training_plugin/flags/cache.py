"""The flag cache: analysis results keyed by the contents of the script and followed modules,
and each candidate file's entry point keyed by its contents."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from training_plugin.flags.entry import entry_point
from training_plugin.flags.model import ParserInfo, sha256_bytes
from training_plugin.flags.walk import Analyzer

#: Bump when the analysis changes, so cached results of older versions are ignored.
ANALYSIS_VERSION = 8


class FlagCache:
    """Analysis results keyed by the sha256 of the script and of every followed module.

    ``data`` is a plain dict (path -> ``[version, sha256, ParserInfo.to_json() or None, entry
    point or None]``) that the plugin loads from and stores into pytest's cache; this class
    only reads and updates it.  Each file is read and hashed once per session.
    """

    def __init__(self, analyzer: Analyzer, data: dict[str, Any] | None = None) -> None:
        self.analyzer = analyzer
        self.data: dict[str, Any] = dict(data or {})
        self.changed = False
        self._dep_sha: dict[str, str | None] = {}

    @staticmethod
    def read(path: Path | None) -> dict[str, Any]:
        """The cache data stored at ``path`` ({} when absent, unreadable or not a dict)."""
        if path is None:
            return {}
        try:
            data = json.loads(Path(path).read_bytes())
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def write(self, path: Path) -> None:
        """Store the data as compact JSON, atomically (a temp file, then ``os.replace``)."""
        path = Path(path)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        try:
            tmp.write_text(json.dumps(self.data, separators=(",", ":")), encoding="utf-8")
            os.replace(tmp, path)
        except OSError:
            tmp.unlink(missing_ok=True)

    def _sha_of(self, path: str, source: bytes | None = None) -> str | None:
        if path not in self._dep_sha:
            try:
                if source is None:
                    source = Path(path).read_bytes()
                self._dep_sha[path] = sha256_bytes(source)
            except OSError:
                self._dep_sha[path] = None
        return self._dep_sha[path]

    def _entry(self, key: str, sha: str) -> list[Any]:
        """The cached entry of ``key`` for contents ``sha`` (a fresh one when stale)."""
        entry = self.data.get(key)
        if (isinstance(entry, list) and len(entry) == 4 and entry[0] == ANALYSIS_VERSION
                and entry[1] == sha):
            return entry
        entry = [ANALYSIS_VERSION, sha, None, None]
        self.data[key] = entry
        return entry

    def entry_point(self, path: Path) -> str | None:
        """What makes ``path`` a script (``flags.entry``), or None when it has no entry
        point.  A file that cannot be read or parsed counts as a script: its analysis then
        says why it cannot be read."""
        key = str(path)
        try:
            source = Path(key).read_bytes()
        except OSError as exc:
            return f"cannot be read: {exc.strerror}"
        sha = self._sha_of(key, source)
        assert sha is not None
        entry = self._entry(key, sha)
        if not isinstance(entry[3], str):
            module = self.analyzer.follower.parse(Path(key), source)
            entry[3] = module if isinstance(module, str) else entry_point(module, source) or ""
            self.changed = True
        return entry[3] or None

    def get(self, script: Path) -> ParserInfo:
        """Cached analysis of ``script`` (recomputed when it or a followed module changed)."""
        key = str(script)
        sha = self._sha_of(key)
        if sha is None:
            return self.analyzer.analyze(script)
        entry = self._entry(key, sha)
        if entry[2] is not None:
            try:
                info: ParserInfo | None = ParserInfo.from_json(entry[2])
            except (TypeError, ValueError):
                info = None
            if info is not None and all(self._sha_of(p) == s for p, s in info.deps.items()):
                return info
        info = self.analyzer.analyze(script)
        entry[2] = info.to_json()
        self.changed = True
        return info
