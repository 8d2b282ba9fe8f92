"""The flag cache: analysis results keyed by the contents of the script and followed modules."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from training_plugin.flags.model import ParserInfo, sha256_bytes
from training_plugin.flags.walk import Analyzer

#: Bump when the analysis changes, so cached results of older versions are ignored.
ANALYSIS_VERSION = 7


class FlagCache:
    """Analysis results keyed by the sha256 of the script and of every followed module.

    ``data`` is a plain dict (relpath -> entry) that the plugin loads from and stores into
    pytest's cache; this class only reads and updates it.
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

    def _sha_of(self, path: str) -> str | None:
        if path not in self._dep_sha:
            try:
                self._dep_sha[path] = sha256_bytes(Path(path).read_bytes())
            except OSError:
                self._dep_sha[path] = None
        return self._dep_sha[path]

    def get(self, script: Path) -> ParserInfo:
        """Cached analysis of ``script`` (recomputed when it or a followed module changed)."""
        key = str(script)
        try:
            with open(key, "rb") as fh:
                sha = sha256_bytes(fh.read())
        except OSError:
            return self.analyzer.analyze(script)
        entry = self.data.get(key)  # [version, sha256, ParserInfo.to_json()]
        if isinstance(entry, list) and len(entry) == 3 and entry[0] == ANALYSIS_VERSION:
            try:
                info = ParserInfo.from_json(entry[2]) if entry[1] == sha else None
            except (TypeError, ValueError):
                info = None
            if info is not None and all(self._sha_of(p) == s for p, s in info.deps.items()):
                return info
        info = self.analyzer.analyze(script)
        self.data[key] = [ANALYSIS_VERSION, sha, info.to_json()]
        self.changed = True
        return info
