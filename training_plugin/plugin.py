"""The entry of training_plugin (``pytest -p training_plugin``): options, ini keys and hook
glue only.

Without command-line paths the session collects the training jobs only (from the
``training_paths`` ini roots); with paths it collects what they name, plus the training
scripts under them.  The work lives elsewhere: ``collect/`` (discovery, job table, specs,
items, listing), ``session.py`` (the run-time hooks), ``executors/`` (who runs a job) and
``features/`` (gates, baseline, history, fingerprint, report, tracking: plugin modules of their
own, listed in the package's ``pytest_plugins``).
"""

from __future__ import annotations

import sys

import pytest

from training_plugin import options, pytest_compat
from training_plugin import session as session_mod

MSG_RAY_WITH_XDIST = (
    "--ray runs every selected job at once on the cluster, placed by its resources; "
    "-n {n} is not needed and was turned off (the jobs do not run on xdist workers)"
)
#: Options under which pytest only prints information (no session: nothing to connect for).
_INFO_ONLY = ("help", "version", "markers", "showfixtures", "show_fixtures_per_test")


def pytest_addhooks(pluginmanager: pytest.PytestPluginManager) -> None:
    """The plugin's own hooks (``hookspecs.py``)."""
    from training_plugin import hookspecs

    pluginmanager.add_hookspecs(hookspecs)


def pytest_addoption(parser: pytest.Parser) -> None:
    """The core options of the "training" group and the core ini keys (each feature module
    adds its own)."""
    options.add_core_options(parser)
    options.add_core_ini(parser)


def add_ini_options(parser: pytest.Parser) -> None:
    """Every ``training_*`` ini key (for a conftest, so that plain ``pytest`` does not warn
    about them)."""
    options.add_ini_options(parser)


def pytest_configure(config: pytest.Config) -> None:
    """Register the collector and the session object; under ``--ray``, turn xdist off (the
    cluster runs every job at once) and start connecting while the scripts are analysed."""
    address = options.ray_address(config)
    controller = pytest_compat.is_controller(config)
    numprocesses = config.getoption("numprocesses", None)
    if address is not None and numprocesses and controller:
        # runs before xdist's own (trylast) pytest_configure, which then starts no workers
        config.option.numprocesses = None
        config.option.dist = "no"
        config.issue_config_time_warning(
            pytest.PytestConfigWarning(MSG_RAY_WITH_XDIST.format(n=numprocesses)), stacklevel=2
        )
    session_mod.register(config)
    if address is not None and controller and not any(
            config.getoption(name, False) for name in _INFO_ONLY):
        from training_plugin.executors import ray as ray_executor

        ray_executor.preconnect(config, options.settings_of(config))


def pytest_unconfigure(config: pytest.Config) -> None:
    """Unregister the plugin objects; stop the executor (kills anything still running)."""
    session_mod.unregister(config)
    ray_executor = sys.modules.get("training_plugin.executors.ray")
    if ray_executor is not None:
        ray_executor.end_preconnect(config)
