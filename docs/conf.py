"""Sphinx configuration for snowg's documentation.

Pages are Markdown (MyST), so the README and the docs share one syntax; the API
reference is built by autodoc + napoleon from the Google-style docstrings in
the code. Build: ``sphinx-build -W --keep-going -b html docs OUT`` (``tox -e docs``).
"""

from __future__ import annotations

import snowg

project = "snowg"
author = "the snowg authors"
copyright = "the snowg authors"  # noqa: A001 - Sphinx's name
release = snowg.__version__
version = ".".join(release.split(".")[:2])

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.viewcode",
]

source_suffix = {".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build"]

# MyST: `(rule-7)=` targets, ``:::`` fences, and anchors for headings up to
# ### so that links to a heading (page.md#a-heading) resolve.
myst_enable_extensions = ["colon_fence", "deflist"]
myst_heading_anchors = 3

# autodoc: members in source order; type hints in the description rather than
# in long signatures; no duplicate entries for the attributes napoleon already
# lists from "Attributes:" sections. Each page names the members it documents:
# a "members" default here would replace those lists.
autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_typehints_description_target = "documented_params"
autodoc_default_options = {"show-inheritance": True}
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_ivar = True

html_theme = "furo"
html_title = f"snowg {release}"
html_static_path = []
