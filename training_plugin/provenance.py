"""Facts about the session that several features record: the commit, the session id, the
time."""

from __future__ import annotations

import datetime as dt
import subprocess
import uuid
from pathlib import Path
from typing import Any

import pytest

_SESSION_KEY = pytest.StashKey[dict[str, Any]]()


def git_commit(rootdir: Path) -> str | None:
    """The checkout's HEAD commit, or None (not a git checkout, no git)."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=rootdir, capture_output=True, text=True,
            timeout=10, check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    sha = out.stdout.strip()
    return sha if out.returncode == 0 and len(sha) == 40 else None


def git_dirty(rootdir: Path) -> bool | None:
    """Whether the checkout has uncommitted changes to tracked files (None: unknown)."""
    try:
        out = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], cwd=rootdir,
            capture_output=True, text=True, timeout=10, check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return bool(out.stdout.strip()) if out.returncode == 0 else None


def session_facts(config: pytest.Config) -> dict[str, Any]:
    """This session's id and commit (worked out once, on first use, in this process)."""
    facts = config.stash.get(_SESSION_KEY, None)
    if facts is None:
        facts = {"session": uuid.uuid4().hex[:12], "commit": git_commit(Path(config.rootpath))}
        config.stash[_SESSION_KEY] = facts
    return facts


def now_iso() -> str:
    """The time now, ISO-8601 UTC to the second."""
    return dt.datetime.now(dt.timezone.utc).replace(microsecond=0).isoformat()


def when(entry: dict[str, Any]) -> str:
    """A recorded ISO time (``entry["time"]``) as "YYYY-MM-DD HH:MM UTC"."""
    text = str(entry.get("time") or "")
    return text[:16].replace("T", " ") + " UTC" if len(text) >= 16 else text or "an earlier run"
