"""A configuration's verdict as a testcase of its own.

A configuration (``aggregate``) is no item: its cells are, and only the controller sees all of
them, after the run loop (under ``-n`` they run on several workers).  Its verdict (a gate on
the mean, a regression of the mean) is therefore a *made* ``pytest.TestReport`` per
configuration, logged through ``pytest_runtest_logreport`` (setup, call and teardown, between
``pytest_runtest_logstart`` and ``pytest_runtest_logfinish``) from a ``pytest_runtestloop``
wrapper once the loop has run.  Every reporting plugin then takes it like a test's report:
the terminal counts it and prints its failure, ``--junitxml`` writes a ``<testcase>`` with its
``user_properties`` as ``<property>``s, the cache's ``--lf`` remembers it, and pytest's
session counts a failed one, so the exit code is 1 (``_main`` reads ``testsfailed`` right
after the loop).
"""

from __future__ import annotations

from collections.abc import Iterable

import pytest


def log_verdict(config: pytest.Config, nodeid: str, script: str, *, failed: bool,
                story: str | None = None,
                properties: Iterable[tuple[str, object]] = ()) -> None:
    """Log one made testcase ``nodeid`` (``<script>::<name>``): passed, or failed with
    ``story`` as its failure text, with ``properties`` for JUnit."""
    name = nodeid.split("::", 1)[-1]
    location = (script, None, name)
    keywords = {name: 1, "training_configuration": 1}
    hook = config.hook
    hook.pytest_runtest_logstart(nodeid=nodeid, location=location)
    for when in ("setup", "call", "teardown"):
        bad = failed and when == "call"
        report = pytest.TestReport(
            nodeid=nodeid, location=location, keywords=keywords,
            outcome="failed" if bad else "passed", longrepr=story if bad else None, when=when,
            user_properties=list(properties) if when == "teardown" else [],
        )
        hook.pytest_runtest_logreport(report=report)
    hook.pytest_runtest_logfinish(nodeid=nodeid, location=location)
