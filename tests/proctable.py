"""The process table, as the process-safety tests read it.

Every process a test starts carries ``MARKER_VAR=<unique marker>`` in its environment, inherited by
children, grandchildren and ``setsid`` escapees alike; a test passes only when none of them is alive.
"""

from __future__ import annotations

import os

MARKER_VAR = "TP_TEST_MARKER"


def marked_pids(marker: str) -> list[int]:
    """Live processes (zombies excluded, this one excluded) whose environment has MARKER_VAR=marker."""
    needle = f"{MARKER_VAR}={marker}".encode()
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) == os.getpid():
            continue
        try:
            with open(f"/proc/{name}/environ", "rb") as fh:
                env = fh.read().split(b"\0")
            with open(f"/proc/{name}/stat", "rb") as fh:
                state = fh.read().rsplit(b")", 1)[1].split()[0]
        except OSError:
            continue
        if needle in env and state not in (b"Z", b"X"):
            found.append(int(name))
    return found
