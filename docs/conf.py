"""Sphinx configuration of the manual-bp site.

Build (from the repository root): ``python -m sphinx -W --keep-going -b html docs docs/_build/html``.
Everything renders offline: MathJax comes from the ``docs`` extra (django-static-mathjax), never a CDN.
"""

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE / "_ext"))

project = "manual-bp"
author = "manual-bp contributors"
copyright = "manual-bp contributors"

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",
    "offline_mathjax",  # _ext/: the packaged MathJax copied into _static, mathjax_path pointed at it
    "docstring_prose",  # _ext/: prose after a numpydoc list section becomes a Notes section
    "runpython",  # _ext/: {runpython} blocks run at build time, their output shown beneath them
]

source_suffix = {".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build", "_ext"]
suppress_warnings = []

myst_enable_extensions = ["dollarmath", "amsmath"]
myst_heading_anchors = 3

# MathJax 3 from django-static-mathjax (tex-svg.js: TeX in, SVG out, no font files). Only the macros of its
# bundled packages (base, ams, newcommand, ...) are available: nothing may be autoloaded from the network.
mathjax3_config = {"tex": {"inlineMath": [["\\(", "\\)"]], "displayMath": [["\\[", "\\]"]]}}

autodoc_default_options = {"members": True}
autodoc_member_order = "bysource"
autodoc_typehints = "none"
autodoc_use_type_comments = False  # no type comments in the package; skips parsing each function again
napoleon_google_docstring = False
napoleon_numpy_docstring = True

html_theme = "furo"
html_title = "manual-bp"
html_static_path = ["_static"]
html_css_files = ["math.css"]
