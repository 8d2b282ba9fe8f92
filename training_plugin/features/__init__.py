"""Features built on the plugin's hooks (``hookspecs.py``), one module each.

Every module here provides ``add_options(group, parser)`` (its command-line options, in the
"training" group), ``add_ini(parser)`` (its ini keys; also registered for plain ``pytest`` by the
root conftest) and ``configure(config)`` (registers its plugin object when the
session asks for the feature).  None of them imports a heavy library (mlflow, ray, matplotlib)
at import time.
"""

from __future__ import annotations

import importlib
from types import ModuleType

import pytest

#: The feature modules, in the order their hooks should see a job.
FEATURES = ("gates", "history", "fingerprint", "report", "tracking")


def modules() -> list[ModuleType]:
    """The feature modules, imported."""
    return [importlib.import_module(f"{__name__}.{name}") for name in FEATURES]


def add_options(group: pytest.OptionGroup, parser: pytest.Parser) -> None:
    """Every feature's command-line options."""
    for module in modules():
        module.add_options(group, parser)


def add_ini(parser: pytest.Parser) -> None:
    """Every feature's ini keys."""
    for module in modules():
        module.add_ini(parser)


def configure(config: pytest.Config) -> None:
    """Register the plugin object of every feature the session asks for."""
    for module in modules():
        module.configure(config)
