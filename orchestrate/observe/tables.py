"""Tables that never cut a number, a name or a path: low-value columns go first.

Every table the CLI prints (the live table, `plan`, `cost-report`, `show`) is
built here from column specs. When the table is wider than the screen,
columns are dropped in the order their spec says (the least useful first);
if it is still too wide, name columns wrap (fold) rather than lose characters,
and only free-text columns (reasons, descriptions) are shortened with an
ellipsis, their full text being printed elsewhere. Numbers never shrink.
When the output is not a terminal there is no width to fit: the caller passes
`width=None` and gets every column at full width.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["Column", "build_table", "cell_width", "plain_console"]

_NUMBER, _NAME, _TEXT = "number", "name", "text"


@dataclass(frozen=True)
class Column:
    """One column: its header, alignment, kind and when it is dropped.

    `kind` is ``number`` (never shrinks), ``name`` (wraps rather than being cut)
    or ``text`` (may be shortened with an ellipsis). `drop` ranks droppable
    columns: the highest goes first; 0 is never dropped.
    """

    header: str
    justify: str = "left"
    kind: str = _NAME
    drop: int = 0


def cell_width(cell: Any) -> int:
    """The width a cell needs on one line: strings, rich Text, or a spinner with its text."""
    from rich.cells import cell_len

    if cell is None:
        return 0
    if isinstance(cell, str):
        return max((cell_len(line) for line in cell.splitlines()), default=0)
    plain = getattr(cell, "plain", None)
    if isinstance(plain, str):
        return max((cell_len(line) for line in plain.splitlines()), default=0)
    text = getattr(cell, "text", None)  # rich Spinner: the frame, a space, then its text
    if text is not None:
        return 2 + cell_width(text)
    return 10


_TEXT_FLOOR = 16  # a free-text column is kept if this much of it fits; the rest gets an ellipsis


def _natural(columns: Sequence[Column], rows: Sequence[Sequence[Any]], keep: Sequence[int]) -> int:
    widths = [max([cell_width(columns[i].header)] + [cell_width(row[i]) for row in rows]) for i in keep]
    widths = [min(w, _TEXT_FLOOR) if columns[i].kind == _TEXT else w for w, i in zip(widths, keep)]
    return sum(widths) + 3 * len(keep) + 1  # padding of one each side, a border between and around


def build_table(
    columns: Sequence[Column],
    rows: Sequence[Sequence[Any]],
    *,
    width: int | None,
    title: Any = None,
    box: Any = None,
    total_row: bool = False,
) -> Any:
    """A rich Table of `rows` that fits in `width` columns (None: no limit), dropping columns first.

    With `total_row`, the last row is set apart by a rule.
    """
    from rich import box as boxes
    from rich.table import Table

    keep = list(range(len(columns)))
    if width is not None:
        droppable = sorted((i for i, c in enumerate(columns) if c.drop), key=lambda i: -columns[i].drop)
        for i in droppable:
            if _natural(columns, rows, keep) <= width:
                break
            keep.remove(i)
    fits = width is None or _natural(columns, rows, keep) <= width
    table = Table(title=title, title_justify="left", expand=False, box=box if box is not None else boxes.HEAVY_HEAD)
    room = None
    texts = [i for i in keep if columns[i].kind == _TEXT]
    if width is not None and texts:  # what the other columns leave, shared by the free-text ones
        others = [i for i in keep if columns[i].kind != _TEXT]
        used = _natural(columns, rows, others) + 3 * len(texts)
        room = max(_TEXT_FLOOR, (width - used) // len(texts))
    for i in keep:
        column = columns[i]
        need = max([cell_width(column.header)] + [cell_width(row[i]) for row in rows])
        if column.kind == _NUMBER:
            table.add_column(
                column.header,
                justify=column.justify,  # type: ignore[arg-type]
                no_wrap=True,
                min_width=need,
            )
        elif column.kind == _TEXT:
            table.add_column(
                column.header,
                justify=column.justify,  # type: ignore[arg-type]
                no_wrap=True,
                overflow="ellipsis",
                min_width=min(need, _TEXT_FLOOR),
                max_width=room,
            )
        elif fits:
            table.add_column(
                column.header,
                justify=column.justify,  # type: ignore[arg-type]
                no_wrap=True,
                min_width=need,
            )
        else:  # a name that does not fit on one line wraps; no character is lost
            table.add_column(column.header, justify=column.justify, overflow="fold")  # type: ignore[arg-type]
    for n, row in enumerate(rows):
        if total_row and n == len(rows) - 1 and n > 0:
            table.add_section()
        table.add_row(*(_cell(row[i]) for i in keep))
    return table


def _cell(value: Any) -> Any:
    """A str cell as plain text: names, models and provider text are never read as rich markup
    (a model named "[/]" is a name, not a closing tag), and control characters are escaped."""
    if isinstance(value, str):
        from rich.text import Text

        from orchestrate.printable import printable

        return Text(printable(value))
    return value


def plain_console(stream: Any, *, interactive: bool) -> Any:
    """A console for a command's output: the terminal's width in a terminal, unlimited elsewhere.

    Redirected to a file or a pipe, rich would otherwise assume 80 columns and
    cut what is wider; an archived report must hold whole rows. Nothing printed is
    read as rich markup (a dataset key ``[red]`` is a key), and every control
    character in what is printed (a model's OSC 8 link, a CSI sequence, a bidi
    override) is shown escaped (``\\x1b``), whatever renderable carries it.
    """
    from rich.console import Console

    class _Escaping(Console):
        def render(self, renderable: Any, options: Any = None) -> Any:
            from rich.segment import Segment

            from orchestrate.printable import printable

            for segment in super().render(renderable, options):
                if segment.control or segment.text.isprintable():
                    yield segment
                else:
                    yield Segment(printable(segment.text), segment.style)

    if interactive:
        return _Escaping(file=stream, highlight=False, markup=False)
    return _Escaping(file=stream, highlight=False, markup=False, width=100_000, color_system=None, soft_wrap=False)
