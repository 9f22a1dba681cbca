"""Text from users and providers made safe to show: in a terminal, in XML, in Markdown.

A provider's error message, a model's answer or a name in a workflow file may
hold ESC, BEL, NUL or bidi overrides: written raw to a terminal they retitle or
clear it, and in JUnit XML they make the file ill-formed. Everything shown
goes through one of these first. Control characters are escaped (``\\x1b``),
not dropped, so what the provider sent stays visible.
"""

from __future__ import annotations

import re

__all__ = ["markdown_cell", "mermaid_label", "printable", "xml_text"]

# C0 and C1 controls (but tab and newline), DEL, and the bidi overrides and isolates.
_UNSAFE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")
# Characters XML 1.0 cannot hold at all, even escaped.
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff\ud800-\udfff]")


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"


def printable(text: object, *, one_line: bool = False) -> str:
    """`text` with control characters escaped; with `one_line`, newlines and tabs become spaces."""
    value = _UNSAFE.sub(_escape, str(text))
    if one_line:
        value = " ".join(value.split())
    return value


def xml_text(text: object) -> str:
    """`text` fit for an XML attribute or element: controls escaped, nothing XML 1.0 refuses."""
    return _NOT_XML.sub(_escape, printable(text))


def markdown_cell(text: object) -> str:
    """`text` as one Markdown table cell: one line, pipes and HTML escaped, controls escaped."""
    value = printable(text, one_line=True)
    return value.replace("\\", "\\\\").replace("|", "\\|").replace("<", "&lt;").replace(">", "&gt;")


def mermaid_label(text: object) -> str:
    """`text` inside a quoted Mermaid label: one line, no quote or bracket that ends it."""
    value = printable(text, one_line=True)
    for raw, entity in (("&", "#amp;"), ('"', "#quot;"), ("<", "#lt;"), (">", "#gt;"), ("[", "#91;"), ("]", "#93;")):
        value = value.replace(raw, entity)
    return value
