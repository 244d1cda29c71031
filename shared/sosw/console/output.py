"""One output layer for every listing of the CLI: ``--output table|json|jsonl``.

``table`` is for people: it fits the width it is given (80 columns when standard output is not a
terminal), first with full headers, then with short ones, then by cutting free-text columns, and
at last by stacking each row's figures under its name. On a terminal the header is bold and ruled;
anywhere else it is plain text with no box drawing or colour, so ``grep`` and ``awk`` read it.
``json`` is one document, ``jsonl`` one object per line (per row), for scripts and CI; their
shapes are fixed by the JSON Schemas in ``schemas/`` (tested).

    out = Output.for_stream("table")
    out.rows("labourers", [{"labourer": "resize", "queued": 3}], [Column("labourer", align="left"), Column("queued")])
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TextIO

__all__ = ["DEFAULT_WIDTH", "FORMATS", "Column", "Output", "add_output_option", "render_table"]

FORMATS = ("table", "json", "jsonl")
#: The width of a table when standard output is not a terminal (``$COLUMNS`` overrides it).
DEFAULT_WIDTH = 80
_GAP = "  "
_MIN_SHRUNK = 12


def add_output_option(parser: Any) -> None:
    """``--output table|json|jsonl`` on a sub-command."""
    parser.add_argument(
        "--output",
        "-o",
        choices=FORMATS,
        default="table",
        help="table (for people; plain text when not a terminal), json (one document) or jsonl (one object a line)",
    )


@dataclass(frozen=True)
class Column:
    """A column of a table: ``key`` in each row, its header, and how it may give way to fit the width."""

    key: str
    header: str | None = None  # the key when not given
    short: str | None = None  # the header used when full headers don't fit
    align: str = "right"  # or "left"
    shrink: bool = False  # free text that may be cut (with "…") to fit
    format: Callable[[Any], str] | None = None  # the cell's text; str() by default, "-" for None

    def title(self, short: bool) -> str:
        full = self.header or self.key
        return (self.short or full) if short else full

    def cell(self, value: Any) -> str:
        if self.format is not None:
            return self.format(value)
        return "-" if value is None else str(value)


def _fit(text: str, width: int) -> str:
    return text if len(text) <= width else text[: max(0, width - 1)] + "…"


def _line(cells: Sequence[str], widths: Sequence[int], columns: Sequence[Column]) -> str:
    parts = [
        cell.ljust(width) if column.align == "left" else cell.rjust(width)
        for cell, width, column in zip(cells, widths, columns, strict=True)
    ]
    return _GAP.join(parts).rstrip()


def render_table(rows: Sequence[Mapping[str, Any]], columns: Sequence[Column], width: int) -> tuple[list[str], bool]:
    """The table's lines, no longer than ``width``; and whether the first line is a header.

    Full headers if they fit, else short ones, else free-text columns cut down, else one block per
    row (its first column as a heading, then ``header value`` pairs wrapped to the width).
    """
    cells = [[column.cell(row.get(column.key)) for column in columns] for row in rows]
    for short in (False, True):
        titles = [column.title(short) for column in columns]
        widths = [max([len(t)] + [len(r[i]) for r in cells]) for i, t in enumerate(titles)]
        excess = sum(widths) + len(_GAP) * (len(columns) - 1) - width
        if excess > 0 and short:
            # Cut free-text columns, widest first, down to a readable minimum.
            for i in sorted(range(len(columns)), key=lambda i: -widths[i]):
                if excess <= 0:
                    break
                if columns[i].shrink:
                    floor = max(len(titles[i]), _MIN_SHRUNK)
                    cut = min(excess, max(0, widths[i] - floor))
                    widths[i] -= cut
                    excess -= cut
        if excess <= 0:
            lines = [_line(titles, widths, columns)]
            lines += [_line([_fit(c, w) for c, w in zip(r, widths, strict=True)], widths, columns) for r in cells]
            return lines, True
    return _stacked(cells, columns, width), False


def _stacked(cells: list[list[str]], columns: Sequence[Column], width: int) -> list[str]:
    lines: list[str] = []
    for row in cells:
        lines.append(_fit(row[0], width))
        current = ""
        for column, cell in zip(columns[1:], row[1:], strict=True):
            pair = f"{column.title(False)} {cell}"
            if current and len(current) + len(_GAP) + len(pair) > width:
                lines.append(current)
                current = ""
            current = f"{current}{_GAP}{pair}" if current else _fit(f"  {pair}", width)
        if current:
            lines.append(current)
    return lines


class Output:
    """Where and how a command prints: a format, a stream, and the width a table must fit."""

    def __init__(self, format: str = "table", stream: TextIO | None = None, width: int | None = None) -> None:
        if format not in FORMATS:
            raise ValueError(f"--output: expected one of {list(FORMATS)}, got {format!r}")
        self.format = format
        self.stream = stream or sys.stdout
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.width = width or self._width()

    @classmethod
    def for_stream(cls, format: str = "table", stream: TextIO | None = None) -> Output:
        return cls(format, stream)

    def _width(self) -> int:
        if self.tty:
            return shutil.get_terminal_size((DEFAULT_WIDTH, 24)).columns
        columns = os.environ.get("COLUMNS", "")
        return int(columns) if columns.isdigit() and int(columns) > 0 else DEFAULT_WIDTH

    # ------------------------------------------------------------------ writing

    def write(self, text: str = "") -> None:
        self.stream.write(text + "\n")
        self.stream.flush()

    def rows(
        self,
        name: str,
        rows: Sequence[Mapping[str, Any]],
        columns: Sequence[Column],
        *,
        meta: Mapping[str, Any] | None = None,
        empty: str = "",
    ) -> None:
        """A listing: ``{name: rows, **meta}`` as json, one row a line as jsonl, else a table."""
        if self.format == "json":
            self.write(json.dumps({name: list(rows), **(meta or {})}, indent=2, default=str))
        elif self.format == "jsonl":
            for row in rows:
                self.write(json.dumps(row, default=str))
        elif not rows:
            if empty:
                self.write(empty)
        else:
            self.write("\n".join(self.table_lines(rows, columns)))

    def table_lines(self, rows: Sequence[Mapping[str, Any]], columns: Sequence[Column]) -> list[str]:
        lines, header = render_table(rows, columns, self.width)
        if header and self.tty:
            rule = "─" * min(self.width, max(len(line) for line in lines))
            lines = [f"\x1b[1m{lines[0]}\x1b[0m", rule, *lines[1:]]
        return lines

    def document(self, doc: Mapping[str, Any], text: Callable[[], list[str]]) -> None:
        """One object: json (indented), jsonl (one line), or the lines ``text`` gives for people."""
        if self.format == "json":
            self.write(json.dumps(doc, indent=2, default=str))
        elif self.format == "jsonl":
            self.write(json.dumps(doc, default=str))
        else:
            self.write("\n".join(text()))
