"""(Being written: see the issue this feature belongs to.)"""

from __future__ import annotations

import pytest


def add_options(group: pytest.OptionGroup, parser: pytest.Parser) -> None:
    """No options yet."""


def add_ini(parser: pytest.Parser) -> None:
    """No ini keys yet."""


def configure(config: pytest.Config) -> None:
    """Nothing to register yet."""
