"""Sphinx configuration of the documentation site: Markdown pages (MyST), the CLI from its argparse parser,
the Python API from its docstrings, the configuration keys from ``sosw.config``.

`make docs` builds it into docs/_build/html; `make test` builds it strictly (tests/docs/test_docs.py).
Nothing is fetched at build time (no intersphinx): the build works offline.
"""

from __future__ import annotations

import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent
# The package under shared/ (installed editable by `make venv`, listed here so a plain checkout builds too),
# the repository root (infra/), and this folder's own extension.
for path in (ROOT / "shared", ROOT, DOCS / "_ext"):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

project = "sosw-stack"
author = "the sosw-stack developers"
copyright = "the sosw-stack developers"

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinxarg.ext",
    "sosw_reference",
]

source_suffix = {".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build", "_ext", "README.md"]

# Markdown: fenced directives, ::: blocks, and anchors for headings so pages can link to sections.
myst_enable_extensions = ["colon_fence", "deflist"]
myst_heading_anchors = 3

# Strict where it matters to us: every reference to this project's own objects must resolve. References to
# other libraries' types (boto3, botocore, Powertools) would need intersphinx, which fetches from the
# internet at build time; they stay unresolved on purpose.
nitpicky = True
nitpick_ignore_regex = [
    (r"py:.*", r"(?!sosw\.).*"),
]

autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_default_options = {"members": True, "show-inheritance": True}

html_theme = "alabaster"
html_title = "sosw-stack"
html_theme_options = {"description": "async Lambda workers through DynamoDB, a drop-in for sosw"}
