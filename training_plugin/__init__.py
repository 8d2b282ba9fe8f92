"""training_plugin: run every training script as a pytest item (``pytest -p training_plugin``).

The hooks live in :mod:`training_plugin.plugin`; they are re-exported here because ``-p
training_plugin`` registers this package module as the plugin.
"""

from training_plugin.plugin import (
    pytest_addhooks,
    pytest_addoption,
    pytest_collect_directory,
    pytest_collect_file,
    pytest_configure,
    pytest_report_collectionfinish,
    pytest_report_header,
    pytest_sessionstart,
    pytest_terminal_summary,
    pytest_unconfigure,
)

__all__ = [
    "pytest_addhooks",
    "pytest_addoption",
    "pytest_collect_directory",
    "pytest_collect_file",
    "pytest_configure",
    "pytest_report_collectionfinish",
    "pytest_report_header",
    "pytest_sessionstart",
    "pytest_terminal_summary",
    "pytest_unconfigure",
]
