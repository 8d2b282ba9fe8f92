"""The flag cache: analysis results keyed by the contents of the script and followed modules,
and each candidate file's entry point keyed by its contents.

A file's contents are known by their sha256.  A later session takes that hash from the cache
without reading the file while its stat signature (size, mtime, ctime, inode) is the one the
hash was taken with; a file changed within ``SETTLED_NS`` of the hash gets no signature (two
writes within the file system's clock tick can leave the same mtime), so it is read and hashed
again next time.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from training_plugin.flags.entry import entry_point
from training_plugin.flags.model import ParserInfo, sha256_bytes
from training_plugin.flags.walk import Analyzer

#: Bump when the analysis changes, so cached results of older versions are ignored.
ANALYSIS_VERSION = 9
#: How long ago (ns) a file must have changed for its stat signature to stand for its contents.
SETTLED_NS = 2_000_000_000


def _signature(st: os.stat_result) -> list[int]:
    return [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino]


class FlagCache:
    """Analysis results keyed by the sha256 of the script and of every followed module.

    ``data`` is a plain dict (path -> ``[version, sha256, ParserInfo.to_json() or None, entry
    point or None, stat signature or None]``) that the plugin loads from and stores into
    pytest's cache; this class only reads and updates it.  Each file is stat'ed once per
    session, and read and hashed only when its signature is not the cached one.
    """

    def __init__(self, analyzer: Analyzer, data: dict[str, Any] | None = None) -> None:
        self.analyzer = analyzer
        self.data: dict[str, Any] = dict(data or {})
        self.changed = False
        self._sha: dict[str, str | None] = {}
        #: bytes read to hash a file, kept until its entry point is decided
        self._read: dict[str, bytes] = {}
        #: files whose text shows no entry point, until ``settle`` checks that they parse
        self._pending: dict[str, tuple[list[Any], bytes]] = {}

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

    @staticmethod
    def _current(entry: Any) -> bool:
        return (isinstance(entry, list) and len(entry) in (4, 5)
                and entry[0] == ANALYSIS_VERSION)

    def _sha_of(self, path: str, keep: bool = False) -> str | None:
        """The sha256 of the file at ``path`` (None when it cannot be read): the cached one
        while the file's stat signature is unchanged, else read and hashed (``keep``: the
        bytes read stay in ``_read`` for the caller)."""
        if path in self._sha:
            return self._sha[path]
        sha: str | None = None
        try:
            st = os.stat(path)
            signature = _signature(st)
            entry = self.data.get(path)
            if self._current(entry) and len(entry) == 5 and entry[4] == signature:
                sha = entry[1]
            else:
                source = Path(path).read_bytes()
                sha = sha256_bytes(source)
                if keep:
                    self._read[path] = source
                entry = self._entry(path, sha)
                settled = time.time_ns() - max(st.st_mtime_ns, st.st_ctime_ns) > SETTLED_NS
                if entry[4] != (signature if settled else None):
                    entry[4] = signature if settled else None
                    self.changed = True
        except OSError:
            sha = None
        self._sha[path] = sha
        return sha

    def _entry(self, key: str, sha: str) -> list[Any]:
        """The cached entry of ``key`` for contents ``sha`` (a fresh one when stale)."""
        entry = self.data.get(key)
        if self._current(entry) and entry[1] == sha:
            if len(entry) == 4:
                entry.append(None)
            return entry
        entry = [ANALYSIS_VERSION, sha, None, None, None]
        self.data[key] = entry
        return entry

    def entry_point(self, path: Path) -> str | None:
        """What makes ``path`` a script (``flags.entry``), or None when it has no entry
        point.  A file that cannot be read or parsed counts as a script: its analysis then
        says why it cannot be read.

        A file not decided yet whose text has no ``__main__`` is not a script for now: it is
        decided by ``settle``, once the scripts' analysis has parsed the modules it follows."""
        key = str(path)
        sha = self._sha_of(key, keep=True)
        source = self._read.pop(key, None)
        if sha is None:
            try:
                source = Path(key).read_bytes()
            except OSError as exc:
                return f"cannot be read: {exc.strerror}"
            sha = sha256_bytes(source)  # unreadable a moment ago
        entry = self._entry(key, sha)
        if not isinstance(entry[3], str):
            if source is None:
                try:
                    source = Path(key).read_bytes()
                except OSError as exc:
                    return f"cannot be read: {exc.strerror}"
            follower = self.analyzer.follower
            module = follower.parsed(Path(key))  # a followed helper's: its top level will do
            if module is None and b"__main__" not in source:
                self._pending[key] = (entry, source)
                follower.offer(Path(key), source)
                return None
            if module is None:
                module = follower.parse(Path(key), source)
            entry[3] = module if isinstance(module, str) else entry_point(module, source) or ""
            self.changed = True
        return entry[3] or None

    def settle(self) -> list[str]:
        """Decide the files that ``entry_point`` left for later, each by its top level: a file
        parsed meanwhile (a followed module) as it was, any other parsed in part
        (``Module.partial``: its plain definitions are not parsed).  Returns the scripts among
        them (the caller looks for scripts again); a file that cannot be parsed counts as a
        script."""
        scripts = []
        follower = self.analyzer.follower
        for key, (entry, source) in self._pending.items():
            module = follower.parsed(Path(key)) or follower.parse(Path(key), source, whole=False)
            found = module if isinstance(module, str) else entry_point(module, source) or ""
            entry[3] = found
            self.changed = True
            if found:
                scripts.append(key)
        self._pending.clear()
        return scripts

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
