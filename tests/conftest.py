"""Fixtures shared by the test suite.

Two homes for shared test scaffolding:
- fixtures, here: ``marker`` (the process marker every fake job's tree carries, with clean-up)
  and ``project`` (a pytester project for ``pytest -p training_plugin``);
- plain helpers, in tests/fakejobs.py (fake-script makers, ``Session``, ``wait_gone``,
  ``PLUGIN_ARGS``, ``CONTRACT_KEYS``) and tests/proctable.py (reading the process table),
  imported as ``from fakejobs import ...``.  Never ``from conftest import ...``: the repository
  root has a conftest.py too, and that name is ambiguous.
Message texts are imported from the plugin's modules (``MSG_*``), never retyped in tests.
"""

from __future__ import annotations

import contextlib
import signal
import uuid

import pytest

# The importlib_metadata backport (a dependency of mlflow's) deletes the standard library's
# ``PathFinder.find_distributions`` and puts its own finder on ``sys.meta_path`` when first
# imported.  Imported inside a pytester test, that finder is dropped again when pytester
# restores ``sys.meta_path`` and ``sys.modules`` at teardown, while the deletion stays: every
# later ``importlib.metadata`` lookup in that process finds no package at all (pytest's own
# "No package metadata was found for pluggy" INTERNALERROR in the next in-process run).
# Imported here, before any snapshot, the backport's finder is part of every snapshot.
with contextlib.suppress(ImportError):
    import importlib_metadata  # noqa: F401

# A suite started in the background of a shell without job control (`make test &`, nohup)
# inherits SIGINT ignored, and so would every pytest the tests start: the Ctrl-C tests would
# wait for an interruption that never comes.  Python's own handler is put back here.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

from fakejobs import kill_marked, plugin_project


@pytest.fixture
def marker():
    """A unique value for ``proctable.MARKER_VAR``; every marked process is killed afterwards."""
    value = uuid.uuid4().hex
    yield value
    kill_marked(value)


@pytest.fixture
def project(pytester: pytest.Pytester) -> pytest.Pytester:
    """A temp project for ``pytest -p training_plugin`` (its own pytest.ini)."""
    return plugin_project(pytester)
