"""Sphinx configuration of the mpiml API reference (``sphinx-build -W -b html docs OUT``)."""

import os
import sys

sys.path.insert(0, os.path.abspath(".."))   # mpiml and serve from this checkout

project = "mpiml"
author = "mpiml developers"
release = "0.1.0"

extensions = ["sphinx.ext.autodoc", "sphinx.ext.napoleon"]
napoleon_google_docstring = False
napoleon_numpy_docstring = True
napoleon_use_rtype = False
napoleon_use_param = False
napoleon_use_ivar = True
autodoc_member_order = "bysource"
autodoc_default_options = {"members": True}
autodoc_typehints = "none"

exclude_patterns = ["_build", "perf"]
html_theme = "alabaster"
