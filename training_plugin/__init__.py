"""training_plugin: run every training script as a pytest item (``pytest -p training_plugin``).

The entry's hooks live in :mod:`training_plugin.plugin` and are re-exported here, because
``-p training_plugin`` registers this package module as the plugin.  ``pytest_plugins`` names
the feature modules: each is a pytest plugin of its own, and
``-p no:training_plugin.features.<name>`` switches one off.
"""

from training_plugin.plugin import (
    pytest_addhooks,
    pytest_addoption,
    pytest_configure,
    pytest_unconfigure,
)

pytest_plugins = [
    "training_plugin.features.gates",
    "training_plugin.features.baseline",
    "training_plugin.features.history",
    "training_plugin.features.fingerprint",
    "training_plugin.features.report",
    "training_plugin.features.tracking",
]

__all__ = ["pytest_addhooks", "pytest_addoption", "pytest_configure", "pytest_unconfigure"]
