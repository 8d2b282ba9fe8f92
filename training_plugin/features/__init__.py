"""Features built on the plugin's hooks (``hookspecs.py``), one pytest plugin module each:
gates, baseline, history, fingerprint, report, tracking.

Each module has ``add_ini(parser)`` (its ini keys), ``pytest_addoption(parser)`` (its options in
the "training" group, and its ini keys) and ``pytest_configure(config)`` (registers its plugin
object when the session asks for the feature).  None imports another feature, nor a heavy
library (mlflow, ray, matplotlib) at import time; what they share lives in core modules
(``metrics``, ``provenance``, ``store``, ``results``, ``options``, ``run.logs``,
``collect.argv``).
"""
