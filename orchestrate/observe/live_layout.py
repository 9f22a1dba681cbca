"""The live table's columns: one layout from frame to frame, names broken between their words.

A table laid out afresh from each frame's cells jumps: a column comes and goes as an error
appears, a count grows a digit, a status reads ``retrying in 4s (429)``. `LiveLayout` instead
lays the columns out from **reserved** widths: a name column from the longest name it has seen
(agent, module and model names are known when the run starts), a number column from a width
that holds its usual figures, the status from its longest usual text. Reservations only grow,
and only when a cell is wider than any before, so at a given terminal width the columns kept
and their widths change a handful of times in a run at most, never back and forth.

When the names do not fit, the agent column narrows and a name breaks after ``_`` or ``-``
(``reconcile_vendor_`` / ``statements_quarterly``), never inside a word unless a single word is
wider than the column. Free text (the reason) takes the room left, cut with an ellipsis (its full
text is in the closing summary and `show`); a status longer than its column wraps between words.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from orchestrate.observe.tables import Column, cell_width

__all__ = ["LiveLayout", "break_name"]

_PIECES = re.compile(r"[^_\-\s]*[_\-\s]*")

# Widths reserved before any cell is seen: they hold the usual figures, so that the first
# frames do not widen a column digit by digit (tokens up to 999,999; costs like $0.000021;
# ``retrying in 30s (429)`` behind a spinner).
_RESERVED = {"status": 24, "tries": 5, "tokens": 7, "cost": 9, "time": 7}
_NAME_CAP = 32  # a name column wider than this is not worth dropping another column for
_TEXT_MIN = 12  # the reason column is kept only with this much room
_NAME_MIN = 8  # a name column narrows down to its widest word, and not below this
_STATUS_MIN = 14
_TEXT_CAP = 60


def break_name(name: str, width: int) -> str:
    """`name` in lines of at most `width` cells, broken after ``_``, ``-`` or a space.

    A piece longer than the whole width is folded: nothing is lost.
    """
    if width <= 0 or cell_width(name) <= width:
        return name
    lines: list[str] = []
    line = ""
    for piece in (p for p in _PIECES.findall(name) if p):
        if line and cell_width(line + piece) > width:
            lines.append(line.rstrip())
            line = ""
        while cell_width(piece) > width:  # one word wider than the column: folded, not cut
            room = width - cell_width(line)
            if room <= 0:
                lines.append(line)
                line, room = "", width
            line += piece[:room]
            piece = piece[room:]
            lines.append(line)
            line = ""
        line += piece
    if line:
        lines.append(line.rstrip())
    return "\n".join(lines)


@dataclass
class LiveLayout:
    """Reserved widths of the live table's columns, and the table drawn from them.

    Args:
        columns: The table's columns; `Column.drop` ranks the droppable ones.
    """

    columns: Sequence[Column]
    reserved: list[int] = field(default_factory=list)
    pieces: list[int] = field(default_factory=list)  # a name column's widest word (``statements_``)

    def __post_init__(self) -> None:
        if not self.reserved:
            self.reserved = [max(cell_width(c.header), _RESERVED.get(c.header, 0)) for c in self.columns]
        if not self.pieces:
            self.pieces = [cell_width(c.header) for c in self.columns]

    def see(self, rows: Sequence[Sequence[Any]]) -> None:
        """Grow the reservations to hold `rows` (names up to a cap: longer ones break)."""
        for i, column in enumerate(self.columns):
            if column.kind == "text":
                continue
            widest = max((cell_width(row[i]) for row in rows), default=0)
            if column.kind == "name" and column.header != "status":
                for row in rows:
                    if isinstance(row[i], str):
                        piece = max((cell_width(p) for p in _PIECES.findall(row[i])), default=0)
                        self.pieces[i] = max(self.pieces[i], min(piece, _NAME_CAP))
                widest = min(widest, _NAME_CAP)
            elif column.header == "status":
                continue  # its reservation holds the usual statuses; a longer one wraps
            if widest > self.reserved[i]:
                self.reserved[i] = widest

    def widths(self, width: int) -> dict[int, int]:
        """The columns kept at `width` and their widths, from the reservations alone."""
        keep = list(range(len(self.columns)))
        floor = {i: (_TEXT_MIN if c.kind == "text" else self.reserved[i]) for i, c in enumerate(self.columns)}

        def need(kept: list[int]) -> int:
            return sum(floor[i] for i in kept) + 3 * len(kept) + 1

        for i in sorted((i for i, c in enumerate(self.columns) if c.drop), key=lambda i: -self.columns[i].drop):
            if need(keep) <= width:
                break
            keep.remove(i)
        sizes = {i: floor[i] for i in keep}
        over = need(keep) - width
        names = [i for i in keep if self.columns[i].kind == "name" and self.columns[i].header != "status"]
        # Still too wide: the names give way (down to their widest word), then the status (which wraps).
        # A terminal narrower still: names fold inside a word, and the token count goes (the cost
        # stays): no number is ever cut.
        shrinkable = [(i, max(_NAME_MIN, self.pieces[i])) for i in names]
        shrinkable += [(i, _STATUS_MIN) for i in keep if self.columns[i].header == "status"]
        shrinkable += [(i, _NAME_MIN) for i in names]
        for i, least in shrinkable:
            if over <= 0:
                break
            give = min(over, sizes[i] - least)
            if give > 0:
                sizes[i] -= give
                over -= give
        for i in [i for i in keep if self.columns[i].header == "tokens"]:
            if over > 0:
                del sizes[i]
                over -= floor[i] + 3
        for i in [i for i in sizes if self.columns[i].header == "status"]:
            if over > 0:  # the last resort: a status of a word a line
                give = min(over, sizes[i] - 10)
                sizes[i] -= max(0, give)
                over -= max(0, give)
        texts = [i for i in keep if self.columns[i].kind == "text"]
        if texts:
            left = width - (sum(sizes.values()) + 3 * len(keep) + 1)
            for i in texts:
                sizes[i] = min(_TEXT_CAP, floor[i] + max(0, left // len(texts)))
        return sizes

    def table(self, rows: Sequence[Sequence[Any]], *, width: int, title: Any = None) -> Any:
        """A rich Table of `rows` in the layout for `width` columns."""
        from rich import box
        from rich.table import Table
        from rich.text import Text

        from orchestrate.printable import printable

        # Measured as shown: a control character takes four cells once escaped (``\x1b``).
        rows = [[printable(v) if isinstance(v, str) else v for v in row] for row in rows]
        self.see(rows)
        sizes = self.widths(width)
        table = Table(title=title, title_justify="left", expand=False, box=box.HEAVY_HEAD)
        for i, size in sizes.items():
            column = self.columns[i]
            justify: Any = column.justify
            if column.kind == "text":
                table.add_column(column.header, justify=justify, width=size, no_wrap=True, overflow="ellipsis")
            elif column.kind == "number":
                table.add_column(column.header, justify=justify, width=size, no_wrap=True)
            else:
                table.add_column(column.header, justify=justify, width=size, overflow="fold")
        for row in rows:
            cells = []
            for i, size in sizes.items():
                value = row[i]
                if isinstance(value, str):
                    value = Text(break_name(value, size) if self.columns[i].kind == "name" else value)
                cells.append(value)
            table.add_row(*cells)
        return table

    def lines_per_row(self, names: Sequence[str], width: int) -> int:
        """The most lines a row's agent name takes at `width` (for fitting rows to the screen)."""
        sizes = self.widths(width)
        size = sizes.get(0)
        if size is None or not names:
            return 1
        from orchestrate.printable import printable

        return max(break_name(printable(name), size).count("\n") + 1 for name in names)
