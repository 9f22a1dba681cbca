"""JSON lines, fast: a journal's lines written (events.jsonl, results.jsonl, rows.jsonl,
calls.jsonl) and a dataset's or a journal's lines read. The only orjson import.

A batch writes about a dozen lines a row; with the standard library's encoder
that was a sixth of the engine's time per call. orjson writes the same JSON
about fifteen times faster. Where the two could differ, the standard
library's output is kept:

- values JSON has no type for (a datetime, a dataclass, a path) are written
  as ``str(value)``, as ``json.dumps(default=str)`` does;
- NaN and Infinity, which strict readers refuse, become ``null`` (what
  `finite.scrub_non_finite` did before);
- what orjson refuses (an int beyond 64 bits, a string with a lone
  surrogate, a key that is not a string) goes through `json` instead,
  written in ASCII.

Non-ASCII text is written as UTF-8, not as ``\\u`` escapes; a reader sees the
same strings.
"""

from __future__ import annotations

import json
from typing import Any

import orjson

from orchestrate.finite import scrub_non_finite

__all__ = ["MAX_DEPTH", "MAX_JOURNAL_LINE_BYTES", "json_line", "nests_too_deep", "read_line", "read_line_strict"]

_OPTIONS = orjson.OPT_APPEND_NEWLINE | orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS


def json_line(value: Any) -> bytes:
    """`value` as one line of compact JSON, newline included, encoded as UTF-8."""
    try:
        return orjson.dumps(value, default=str, option=_OPTIONS)
    except (orjson.JSONEncodeError, TypeError):
        # ASCII, so that a lone surrogate is written as its escape rather than as invalid UTF-8.
        return (json.dumps(scrub_non_finite(value), default=str, separators=(",", ":")) + "\n").encode("ascii")


# How deep a value read from outside (an answer, a dataset row, a code step's return) may nest.
# orjson writes at most 255 levels and Python's own recursion stops near 1000; no ERP document
# needs more than a few dozen, so deeper data is refused where it is read, with this number.
MAX_DEPTH = 100


# The longest journal line a reader takes (events.jsonl, results.jsonl, rows.jsonl, calls.jsonl).
# A line is one event or one row's result, far below this; reading a line stops here, so a run
# folder's file, however large, never needs more memory than this per line.
MAX_JOURNAL_LINE_BYTES = 64 << 20


def nests_too_deep(value: Any, limit: int = MAX_DEPTH) -> bool:
    """Whether `value` (JSON-like: dicts, lists, tuples) nests more than `limit` levels; no recursion."""
    todo: list[tuple[Any, int]] = [(value, 1)]
    while todo:
        item, depth = todo.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, (list, tuple)):
            children = item
        else:
            continue
        if depth > limit:
            return True
        todo.extend((child, depth + 1) for child in children if isinstance(child, (dict, list, tuple)))
    return False


def read_line(text: str | bytes) -> Any:
    """`json.loads`, the quick way first: what orjson refuses (NaN, Infinity, an int beyond
    64 bits) `json` reads as before, so a line means, and its errors say, what they did."""
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        try:
            return json.loads(text)
        except RecursionError:
            raise ValueError(f"nests deeper than {MAX_DEPTH} levels") from None


def read_line_strict(text: str | bytes) -> Any:
    """A line of one of our journals: strict JSON (NaN and Infinity, never written, refused).

    Raises:
        ValueError: When the line is not strict JSON (a torn line, say).
    """
    return orjson.loads(text)
