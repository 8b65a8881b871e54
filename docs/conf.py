"""Sphinx configuration for the detequiv documentation.

Build (warnings are errors, as in CI)::

    python -m sphinx -W --keep-going -b html docs docs/_build/html

No network at build time: no intersphinx, MathJax is loaded by the reader's browser.
"""

from __future__ import annotations

import os
import sys

# The package is normally installed (``pip install -e .``); fall back to the checkout.
sys.path.insert(0, os.path.abspath(".."))
sys.path.insert(0, os.path.abspath("_ext"))

import detequiv  # noqa: E402

project = "detequiv"
author = "the detequiv developers"
copyright = "the detequiv developers, MIT licence"  # noqa: A001 - Sphinx's name
version = release = detequiv.__version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
    "detequiv_docs",  # _ext/: the public-names lists and the known docstring warnings
]

root_doc = "index"
exclude_patterns = ["_build", "requirements.txt"]
templates_path: list[str] = []

# -- autodoc / napoleon (numpydoc-style docstrings) ---------------------------------
autodoc_member_order = "bysource"
autodoc_typehints = "signature"
autodoc_preserve_defaults = True
napoleon_google_docstring = False
napoleon_numpy_docstring = True
napoleon_use_rtype = False
napoleon_use_ivar = True

pygments_style = "sphinx"

# -- HTML ----------------------------------------------------------------------------
html_theme = "alabaster"
html_theme_options = {
    "description": "Deterministic equivalents from planar diagrams and free cumulants",
    "fixed_sidebar": False,
    "page_width": "1180px",  # room for the doctest lines (the default 940px scrolls most)
    "sidebar_width": "230px",
    "show_powered_by": False,
}
html_static_path: list[str] = []
html_show_sourcelink = False
html_copy_source = False

# -- known docstring defects ----------------------------------------------------------
# Each entry drops exactly one kind of warning at one place: (where, message), both
# substrings of the warning. They are defects in the package's docstrings, listed for
# fixing there; remove the entry with the fix. Any other warning fails the build (-W).
known_docstring_warnings: list[tuple[str, str]] = []  # none left: keep it that way

