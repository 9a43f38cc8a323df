"""Serve MathJax from the build itself: the site's math renders with no network.

The ``docs`` extra installs django-static-mathjax, whose top-level package ``mathjax`` holds MathJax 3
(``static/mathjax/es5/tex-svg.js``: TeX input and SVG output in one file, no fonts to fetch). This extension
finds it, points ``mathjax_path`` at ``_static/mathjax/tex-svg.js`` and copies that one file there when an
HTML build finishes. Without the package the build stops with a message saying how to install it: it never
falls back to a CDN.
"""

import importlib.util
import shutil
from pathlib import Path

from sphinx.errors import ConfigError

TARGET = "mathjax/tex-svg.js"  # relative to the build's _static folder


def mathjax_source():
    """The packaged ``tex-svg.js``; ConfigError naming the missing package when it is not installed."""
    spec = importlib.util.find_spec("mathjax")
    roots = list(spec.submodule_search_locations or []) if spec else []
    for root in roots:
        path = Path(root) / "static" / "mathjax" / "es5" / "tex-svg.js"
        if path.is_file():
            return path
    raise ConfigError(
        "offline MathJax not found: the site renders its math with the MathJax that the PyPI package "
        "django-static-mathjax ships (module 'mathjax', file static/mathjax/es5/tex-svg.js); install the "
        "docs extra: pip install -e \".[docs]\""
    )


def _configure(app, config):
    app.env_mathjax_source = mathjax_source()  # fail before reading any page
    config.mathjax_path = TARGET


def _copy(app, exception):
    if exception is not None or app.builder.format != "html":
        return
    dest = Path(app.outdir) / "_static" / TARGET
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(app.env_mathjax_source, dest)


def setup(app):
    app.connect("config-inited", _configure)
    app.connect("build-finished", _copy)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
