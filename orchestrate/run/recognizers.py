"""Pattern recognisers for personal data in free text: each a regular expression and a check.

A candidate counts only when its check passes, which keeps numbers that merely
look alike (an order number, a date) out: IBANs by their ISO 7064 mod-97
checksum, card numbers by Luhn, the Dutch BSN by its 11-test, the Spanish DNI
by its check letter, US SSNs by the ranges never issued. Emails and phone
numbers have no checksum; phones need a leading ``+`` (or ``00`` and a space
or dash somewhere) and 8 to 15 digits after the country code, or a national
number written with its area code apart (``(030) 123 4567``, ``030/1234567``,
``(415) 555-0100``), so that amounts, dates and ids are not taken for them.

A text is read in one pass over a pattern joining every kind asked for. Where a
candidate fails its check (a 13-digit run that fails Luhn), the kinds after it
are tried at the same place before the search moves on one character (so
``0049 30 1234567``, not a card, is still found as a phone), and an IBAN is
always recognised, and left alone when ``iban`` was not asked for, so that its
digit groups are never taken for a phone or a national id.

Why our own and not Presidio's analyzer: its pattern recognisers are what
would be used (no NER model by default, which would need spaCy and a
separately downloaded model), and these are a few dozen lines with no
dependency, checked per row in microseconds; Presidio's engine costs
milliseconds a text and pulls in spaCy even with NER off.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from functools import lru_cache

__all__ = ["KINDS", "PHONE_HINT", "Recogniser", "combined", "find"]


def _digits(text: str) -> str:
    return "".join(ch for ch in text if ch.isdigit())


def iban_ok(text: str) -> bool:
    """ISO 13616: the country code and check digits moved to the end, letters as numbers, mod 97 == 1."""
    compact = re.sub(r"[\s-]", "", text).upper()
    if not 15 <= len(compact) <= 34 or not compact[:2].isalpha() or not compact[2:4].isdigit():
        return False
    moved = compact[4:] + compact[:4]
    number = "".join(str(int(ch, 36)) for ch in moved)
    return int(number) % 97 == 1


def luhn_ok(text: str) -> bool:
    digits = _digits(text)
    if not 13 <= len(digits) <= 19:
        return False
    total = 0
    for i, ch in enumerate(reversed(digits)):
        n = int(ch)
        if i % 2:
            n = n * 2 - 9 if n > 4 else n * 2
        total += n
    return total % 10 == 0


def ssn_ok(text: str) -> bool:
    """A US SSN in a range that is issued: not area 000, 666 or 9xx, group 00 or serial 0000."""
    area, group, serial = text[:3], text[4:6], text[7:]
    return area not in ("000", "666") and area[0] != "9" and group != "00" and serial != "0000"


def bsn_ok(text: str) -> bool:
    """The Dutch BSN's 11-test."""
    digits = _digits(text)
    if len(digits) != 9:
        return False
    total = sum(int(d) * w for d, w in zip(digits[:8], range(9, 1, -1))) - int(digits[8])
    return total % 11 == 0 and digits != "000000000"


_DNI_LETTERS = "TRWAGMYFPDXBNJZSQVHLCKE"


def dni_ok(text: str) -> bool:
    """The Spanish DNI's check letter (NIE: X, Y, Z standing for 0, 1, 2)."""
    body, letter = text[:-1].upper(), text[-1].upper()
    body = body.replace("X", "0", 1).replace("Y", "1", 1).replace("Z", "2", 1) if body[:1] in "XYZ" else body
    return body.isdigit() and _DNI_LETTERS[int(body) % 23] == letter


def phone_ok(text: str) -> bool:
    """An international number: 8 to 15 digits after the ``+`` or ``00`` (E.164 allows 15); one
    written with ``00`` has a space, dot, dash or bracket in it (a bare ``00…`` run is an id)."""
    digits = _digits(text)
    if text.startswith("00"):
        if not any(ch in " .-()" for ch in text):
            return False
        digits = digits[2:]
    return 8 <= len(digits) <= 15


def national_phone_ok(text: str) -> bool:
    """A national number with its trunk ``0`` and area code apart: 7 to 12 digits in all."""
    return 7 <= len(_digits(text)) <= 12


def _always(_: str) -> bool:
    return True


_Check = Callable[[str], bool]

# kind -> [(pattern, check)]; "national_id" covers the formats listed under it.
KINDS: dict[str, list[tuple[re.Pattern[str], _Check]]] = {
    "email": [(re.compile(r"\b[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}\b"), _always)],
    "iban": [(re.compile(r"\b[A-Z]{2}\d{2}(?:[ -]?[A-Z0-9]{4}){2,7}(?:[ -]?[A-Z0-9]{1,3})?\b"), iban_ok)],
    "credit_card": [(re.compile(r"\b(?:\d[ -]?){12,18}\d\b"), luhn_ok)],
    "phone": [
        # +49 30 1234567, 0049 30 1234567, +49 (0)30 1234567, +1 415-555-0100, +44 20 7946 0958
        (re.compile(r"(?<![\w+/.-])(?:\+|00)[1-9]\d{0,2}(?:[ .-]?\(?\d{1,4}\)?){2,5}(?![\w/])"), phone_ok),
        # (030) 123 4567, 030/1234567, 0171 / 1234 567
        (
            re.compile(r"(?<![\w+/.-])(?:\(0\d{1,4}\) ?|0\d{1,4} ?/ ?)\d{2,4}(?:[ -]?\d{2,4}){0,3}(?![\w/])"),
            national_phone_ok,
        ),
        # (415) 555-0100, 415-555-0100, 415.555.0100
        (re.compile(r"(?<![\w+/.-])\(?\d{3}\)?[ .-]\d{3}[ .-]\d{4}(?![\w/-])"), _always),
    ],
    "national_id": [
        (re.compile(r"\b\d{3}-\d{2}-\d{4}\b"), ssn_ok),  # US SSN
        (re.compile(r"\b[A-CEGHJ-PR-TW-Z][A-CEGHJ-NPR-TW-Z] ?\d{2} ?\d{2} ?\d{2} ?[A-D]\b"), _always),  # UK NINO
        (re.compile(r"\b(?:\d{8}|[XYZ]\d{7})[A-Z]\b"), dni_ok),  # Spanish DNI / NIE
        (re.compile(r"\b\d{9}\b"), bsn_ok),  # Dutch BSN
    ],
}


_PRIORITY = ("email", "iban", "credit_card", "national_id", "phone")  # the loosest last
_GUARDED = frozenset({"credit_card", "national_id", "phone"})  # kinds whose digits an IBAN may hold

_Alternative = tuple[re.Pattern[str], "str | None", _Check]


class Recogniser:
    """The recognisers of some kinds joined into one pattern (see the module's docstring)."""

    __slots__ = ("_after", "_groups", "pattern")

    def __init__(self, kinds: frozenset[str], *, guard: bool = True) -> None:
        alternatives: list[tuple[str, _Alternative]] = []
        for kind in _PRIORITY:
            wanted = kind in kinds
            if wanted or (guard and kind == "iban" and kinds & _GUARDED):
                for n, (pattern, check) in enumerate(KINDS[kind]):
                    alternatives.append((f"{kind}_{n}", (pattern, kind if wanted else None, check)))
        self.pattern = re.compile("|".join(f"(?P<{name}>{alt[0].pattern})" for name, alt in alternatives))
        self._groups = {name: alt[1:] for name, alt in alternatives}
        self._after = {name: [alt for _, alt in alternatives[i + 1 :]] for i, (name, _) in enumerate(alternatives)}

    def spans(self, text: str, first: re.Match[str] | None = None) -> Iterator[tuple[int, int, str | None]]:
        """(start, end, kind) of each value found, left to right; kind None: an IBAN not asked for.

        Args:
            first: The pattern's first match in `text`, when the caller searched already.
        """
        search = self.pattern.search
        groups = self._groups
        match = first if first is not None else search(text)
        while match is not None:
            name = match.lastgroup or ""
            kind, check = groups[name]
            if check(match.group()):
                yield match.start(), match.end(), kind
                at = match.end()
                match = search(text, at)
                continue
            start = match.start()
            for pattern, later, later_check in self._after[name]:  # the kinds after it, at the same place
                other = pattern.match(text, start)
                if other is not None and later_check(other.group()):
                    yield start, other.end(), later
                    at = other.end()
                    break
            else:
                at = start + 1
            match = search(text, at)


def combined(kinds: tuple[str, ...] | frozenset[str], *, guard: bool = True) -> Recogniser:
    """One recogniser for all `kinds` (a single pass over a text).

    Args:
        guard: Recognise IBANs to leave them alone; needless in a text of fewer than 10 digits.
    """
    return _combined(frozenset(kinds), guard)


@lru_cache(maxsize=64)
def _combined(kinds: frozenset[str], guard: bool = True) -> Recogniser:
    return Recogniser(kinds, guard=guard)


# What every phone the recognisers find has somewhere (a + or ( before a digit, 00 and a country
# code then a separator, a slash between digits, 3 and 3 digits apart): a text without it is not
# searched for phones, the joined pattern costing several times this one.
PHONE_HINT = re.compile(r"\+\d|\(\d|00[1-9]\d{0,2}[ .(-]|\d ?/ ?\d|\d{3}\)?[ .-]\d{3}")


def find(text: str, kinds: tuple[str, ...]) -> Iterator[tuple[int, int, str]]:
    """(start, end, kind) of each recognised value in `text`, left to right, without overlaps.

    Where two kinds could match at one place, the first in `_PRIORITY` whose check
    passes is taken; a place where none passes is skipped one character.
    """
    for start, end, kind in _combined(frozenset(kinds)).spans(text):
        if kind is not None:
            yield start, end, kind
