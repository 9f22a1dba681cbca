"""Cells of the CSV files people open in spreadsheets: text never read as a formula.

A dataset key, an answer or an agent name that begins with ``=``, ``+``, ``-``,
``@``, a tab or a carriage return is a formula to Excel, LibreOffice and Google
Sheets (``=HYPERLINK(...)``, ``@SUM(...)``, DDE). As OWASP recommends for CSV
injection, such a text cell is written with a leading single quote (``'=1+1``),
which the spreadsheet shows as text; numbers are written as they are.
"""

from __future__ import annotations

from typing import Any

__all__ = ["FORMULA_STARTS", "formula_safe"]

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def formula_safe(text: Any) -> Any:
    """`text` with a leading ``'`` when a spreadsheet would read it as a formula; other values as given."""
    if isinstance(text, str) and text.startswith(FORMULA_STARTS):
        return "'" + text
    return text
