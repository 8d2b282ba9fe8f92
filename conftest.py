"""Root conftest: shared test set-up for the project's own test suite."""

pytest_plugins = ["pytester"]
