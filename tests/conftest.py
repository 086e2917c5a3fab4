"""Test harness: the ``spmd`` fixture and the ``threads`` marker come from the
:mod:`mpiml.testing.plugin` pytest plugin (installed with mpiml); loaded here as well so
that a source checkout on ``PYTHONPATH`` tests its own plugin. ``pytester`` runs the
plugin's own tests (tests/test_testing_plugin.py).
"""

pytest_plugins = ["mpiml.testing.plugin", "pytester"]
