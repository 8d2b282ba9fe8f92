"""Writing in an output folder without following symbolic links.

Every file the plugin writes under ``<output-dir>`` (a job's folder and ``train.log``, the set
aside ``metrics.json``, ``summary.json``, ``fingerprint.json``, ``history.jsonl``, the baseline)
goes through this module:

- files are opened with ``O_NOFOLLOW`` (a link at the target is refused by the kernel, not
  written through), and a link found with ``lstat`` is an :class:`UnsafePath` naming the link
  and its target;
- a job's folder is made one component at a time below the output folder, refusing a link at
  any step, and checked to resolve inside the output folder;
- JSON goes through a temporary file (``O_EXCL | O_NOFOLLOW``) and ``os.replace``; the
  temporary file is removed when the write fails (a full disk leaves nothing behind).

Write failures a session survives (summary, baseline, fingerprint) are noted with
:func:`note_write_failure` and shown in the training summary.
"""

from __future__ import annotations

import errno
import json
import os
import stat
from pathlib import Path
from typing import Any

import pytest

MSG_LINK = "{path} is a symbolic link (to {target}); the plugin never writes through a link"
MSG_OUTSIDE = "{path} resolves to {real}, outside the output folder {root}"
MSG_NO_SPACE = "no space left on {path}"
#: Free space below which a failed job's filesystem counts as full.
FULL_BELOW_BYTES = 256 * 1024
_FAILED_WRITES = pytest.StashKey[list[str]]()


class UnsafePath(OSError):
    """A symbolic link (or a path leaving the output folder) where the plugin would write."""


def link_target(path: Path) -> str:
    """What the link ``path`` points to ("?" when it cannot be read)."""
    try:
        return os.readlink(path)
    except OSError:
        return "?"


def is_link(path: Path) -> bool:
    """Whether ``path`` itself is a symbolic link (not followed)."""
    try:
        return stat.S_ISLNK(os.lstat(path).st_mode)
    except OSError:
        return False


def refuse_link(path: Path) -> None:
    """Raise :class:`UnsafePath` when ``path`` is a symbolic link."""
    if is_link(path):
        raise UnsafePath(errno.ELOOP, MSG_LINK.format(path=path, target=link_target(path)))


def inside(path: Path, root: Path) -> bool:
    """Whether ``path`` resolves (after links) to ``root`` or below it."""
    real, base = os.path.realpath(path), os.path.realpath(root)
    return real == base or real.startswith(base.rstrip(os.sep) + os.sep)


def make_dir(path: Path, root: Path) -> None:
    """Create the folder ``path`` below ``root`` (``root`` itself may be a link the user
    chose); a link at ``path`` or between ``root`` and it is :class:`UnsafePath`, and so is a
    ``path`` that resolves outside ``root``."""
    path, root = Path(os.path.abspath(path)), Path(os.path.abspath(root))
    root.mkdir(parents=True, exist_ok=True)
    try:
        parts = path.relative_to(root).parts
    except ValueError:
        raise UnsafePath(errno.EXDEV, MSG_OUTSIDE.format(
            path=path, real=os.path.realpath(path), root=root)) from None
    current = root
    for part in parts:
        current = current / part
        refuse_link(current)
        try:
            os.mkdir(current)
        except FileExistsError:
            if not current.is_dir():
                raise
    if not inside(path, root):
        raise UnsafePath(errno.EXDEV, MSG_OUTSIDE.format(
            path=path, real=os.path.realpath(path), root=root))


def open_no_follow(path: Path, flags: int, mode: int = 0o644) -> int:
    """``os.open`` with ``O_NOFOLLOW | O_CLOEXEC``; a link at ``path`` is :class:`UnsafePath`."""
    try:
        return os.open(path, flags | os.O_NOFOLLOW | os.O_CLOEXEC, mode)
    except OSError as exc:
        if exc.errno == errno.ELOOP or is_link(path):
            raise UnsafePath(errno.ELOOP, MSG_LINK.format(
                path=path, target=link_target(path))) from None
        raise


def append_text(path: Path, text: str) -> None:
    """Append ``text`` to ``path`` (created if missing), never through a link."""
    fd = open_no_follow(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    with os.fdopen(fd, "a", encoding="utf-8") as fh:
        fh.write(text)


def write_bytes_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file and ``os.replace`` (a reader sees
    the old file or the new one).  A link at ``path`` is :class:`UnsafePath`; when the write
    fails, the temporary file is removed and the old file stays."""
    path = Path(path)
    refuse_link(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        os.unlink(tmp)  # a leftover of an earlier process with this pid (never followed)
    except FileNotFoundError:
        pass
    fd = open_no_follow(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL)
    try:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
        finally:
            os.close(fd)
        refuse_link(path)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def write_json_atomic(path: Path, data: Any, **dumps: Any) -> None:
    """``data`` as JSON (plus a newline), written with :func:`write_bytes_atomic`."""
    write_bytes_atomic(path, (json.dumps(data, **dumps) + "\n").encode("utf-8"))


def rename_no_follow(source: Path, target: Path) -> bool:
    """Rename ``source`` to ``target`` (e.g. metrics.json -> metrics.previous.json); False
    when ``source`` does not exist.  A link at either is :class:`UnsafePath`."""
    refuse_link(source)
    refuse_link(target)
    try:
        os.replace(source, target)
    except FileNotFoundError:
        return False
    return True


def no_space(path: Path) -> str | None:
    """"no space left on <path>" when the filesystem holding ``path`` (or its nearest
    existing parent) is full, else None."""
    probe = Path(os.path.abspath(path))
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    try:
        info = os.statvfs(probe)
    except OSError:
        return None
    if info.f_bavail * info.f_frsize < FULL_BELOW_BYTES or (info.f_files and not info.f_favail):
        return MSG_NO_SPACE.format(path=path)
    return None


def note_write_failure(config: pytest.Config, path: Path, exc: OSError) -> str:
    """Keep "cannot write <path>: <why>" for the training summary; return it."""
    why = MSG_NO_SPACE.format(path=path) if exc.errno == errno.ENOSPC else (
        exc.strerror or str(exc))
    message = f"cannot write {path}: {why}" if not isinstance(exc, UnsafePath) else (
        f"cannot write {path}: {exc.strerror}")
    config.stash.setdefault(_FAILED_WRITES, []).append(message)
    return message


def failed_writes(config: pytest.Config) -> list[str]:
    """The write failures noted so far in this process."""
    return list(config.stash.get(_FAILED_WRITES, []))
