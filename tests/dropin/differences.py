"""The differences from sosw 0.7.51, read from ``docs/sosw-differences.md``: the tests that meet them read them here.

Two tables there:

- **Behaviour**: one row a difference, its key first (`` `stale-report` ``); a test asserting that difference
  takes its reason with :func:`declared` (an undeclared key fails), and every key must be used by a test.
- **Names**: the sosw names this package does not offer (`` `Class.name` ``, several in one row for a group),
  each with why; the surface test fails on a missing name not listed here, and on a listed one that exists.
"""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path

DOC = Path(__file__).resolve().parents[2] / "docs" / "sosw-differences.md"
BEHAVIOUR_HEADING = "## Behaviour"
NAMES_HEADING = "## Names sosw has that this package does not"
_CODE = re.compile(r"`([^`]+)`")


def _table(heading: str) -> list[list[str]]:
    """The rows (cells, stripped) of the first table under ``heading``, header and rule left out."""
    text = DOC.read_text()
    if heading not in text:
        raise AssertionError(f"{DOC.name} has no section {heading!r}")
    section = text.split(heading, 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("|")]
    return [[cell.strip() for cell in row.strip().strip("|").split("|")] for row in rows[2:]]


@cache
def behaviour() -> dict[str, str]:
    """``{key: the row's text}`` of the behaviour table."""
    found = {}
    for cells in _table(BEHAVIOUR_HEADING):
        keys = _CODE.findall(cells[0])
        if len(keys) != 1 or not all(cells[1:]):
            raise AssertionError(f"{DOC.name}: a behaviour row needs one `key` and every cell filled: {cells}")
        if keys[0] in found:
            raise AssertionError(f"{DOC.name}: key {keys[0]!r} declared twice")
        found[keys[0]] = " | ".join(cells[1:])
    return found


def declared(key: str) -> str:
    """The declared difference ``key`` (its row's text); KeyError if the document does not declare it."""
    rows = behaviour()
    if key not in rows:
        raise KeyError(f"difference {key!r} is not declared in {DOC.name}")
    return f"{key}: {rows[key]}"


@cache
def missing_names() -> dict[str, str]:
    """``{"Class.name": why}`` of the names table."""
    found = {}
    for cells in _table(NAMES_HEADING):
        names, why = _CODE.findall(cells[0]), cells[-1]
        if not names or len(cells) < 2 or not why:
            raise AssertionError(f"{DOC.name}: a names row needs `Class.name`(s) and why: {cells}")
        for name in names:
            found[name] = why
    return found
