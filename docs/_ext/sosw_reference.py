"""Reference tables generated from the code at build time, so the site can't drift from it.

``sosw-config-keys``: every key of the TaskManager config, from ``sosw.config`` (the one place they are
defined: ``DEFAULT_CONFIG``, ``ROLE_DEFAULTS`` and ``MEANINGS``), with its default and whether it is sosw's.
"""

from __future__ import annotations

import json
from typing import Any

from docutils import nodes
from docutils.statemachine import StringList
from pygments.lexers.special import TextLexer
from sphinx.application import Sphinx
from sphinx.util.docutils import SphinxDirective

from sosw import config

__all__ = ["config_key_rows", "setup"]


def _default_of(key: str) -> Any:
    """The default of a dotted key: merged ones from DEFAULT_CONFIG, the roles' own from ROLE_DEFAULTS."""
    if key in config.ROLE_DEFAULTS:
        return config.ROLE_DEFAULTS[key]
    if key == "max_attempts_<labourer>":
        return "max_attempts"
    value: Any = config.DEFAULT_CONFIG
    for part in key.split("."):
        value = value[part]
    return value


def _shown(value: Any) -> str:
    if value is None:
        return "none"
    if isinstance(value, bool | int | float):
        return f"`{value}`"
    if isinstance(value, str):
        return f"`{value}`"
    if (isinstance(value, dict) and all(isinstance(k, str) for k in value)) or isinstance(value, list):
        return f"`{json.dumps(value)}`"
    return f"`{value!r}`"


def config_key_rows() -> list[tuple[str, str, str, str]]:
    """(key, default, sosw's or this project's, meaning) for every key, in the order of ``MEANINGS``."""
    rows = []
    for key, meaning in config.MEANINGS.items():
        origin = "sosw" if key.split(".")[0] in config.SOSW_KEYS else "this project"
        rows.append((key, _shown(_default_of(key)), origin, meaning))
    return rows


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


class ConfigKeys(SphinxDirective):
    """A Markdown table of every TaskManager config key, parsed as the page's own Markdown."""

    has_content = False

    def run(self) -> list[nodes.Node]:
        lines = ["| key | default | from | meaning |", "| --- | --- | --- | --- |"]
        lines += [f"| `{key}` | {_cell(d)} | {origin} | {_cell(m)} |" for key, d, origin, m in config_key_rows()]
        container = nodes.container(classes=["sosw-config-keys"])
        self.state.nested_parse(StringList(lines, source="sosw.config"), self.content_offset, container)
        return [container]


def setup(app: Sphinx) -> dict[str, Any]:
    app.add_directive("sosw-config-keys", ConfigKeys)
    # Mermaid diagrams render on code hosts; here they are shown as text, rather than warned about.
    app.add_lexer("mermaid", TextLexer)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
