"""TCP ports for servers that the tests start (Ray nodes, an MLflow server ...), without the
race of "bind to port 0, close, hand the number on": between the close and the server's own
bind, another process may take that port.

:func:`reserve_port` returns a port that is

- outside the kernel's ephemeral range (``ip_local_port_range``), so no ``bind(0)`` or outgoing
  connection of any process is given it, and outside the ranges Ray picks ports from by itself
  (its workers' 10002-19999, its Ray Client servers' 23000-24000);
- held by this process through a machine-wide lock file per port (``flock``, released when the
  process ends or by :func:`release_port`), so two test processes never hand out one port;
- free now (a bind succeeds).

A server may still lose its port to a program that binds that number on purpose; the callers
retry a start that fails (tests/ray_cluster.py restarts a node on new ports).
"""

from __future__ import annotations

import fcntl
import os
import random
import socket
import tempfile
from pathlib import Path

#: The ports handed out: above Ray's own ranges, below the usual ephemeral range.
FIRST_PORT = 24100
LAST_PORT = 32767
_LOCKS = Path(tempfile.gettempdir()) / "tp-test-ports"
#: port -> the open lock file that holds it (for as long as this process runs).
_HELD: dict[int, int] = {}


def _ephemeral() -> range:
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return range(int(low), int(high) + 1)
    except (OSError, ValueError):
        return range(32768, 61000)


def _candidates() -> list[int]:
    ephemeral = _ephemeral()
    ports = [p for p in range(FIRST_PORT, LAST_PORT + 1) if p not in ephemeral]
    start = random.randrange(len(ports))  # processes start at different places of the range
    return ports[start:] + ports[:start]


def _bindable(port: int, host: str) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def reserve_port(host: str = "127.0.0.1") -> int:
    """A port that no other test process is handed and nothing listens on now (see the
    module docstring); it stays reserved for this process until :func:`release_port`."""
    _LOCKS.mkdir(exist_ok=True)
    for port in _candidates():
        if port in _HELD:
            continue
        fd = os.open(_LOCKS / f"{port}.lock", os.O_CREAT | os.O_RDWR, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            continue
        if _bindable(port, host):
            _HELD[port] = fd
            return port
        os.close(fd)  # in use by something else: leave it
    raise RuntimeError(f"no free TCP port in {FIRST_PORT}-{LAST_PORT}")


def release_port(port: int) -> None:
    """Let other test processes have ``port`` again (its server has stopped)."""
    fd = _HELD.pop(port, None)
    if fd is not None:
        os.close(fd)
