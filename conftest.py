"""Root conftest: shared test set-up for the project's own test suite."""

pytest_plugins = ["pytester"]


def pytest_addoption(parser):
    """Register the training_* ini keys so plain `pytest` does not warn about pytest.ini."""
    from training_plugin.options import add_ini_options

    add_ini_options(parser)
