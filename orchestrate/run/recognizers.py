"""Pattern recognisers for personal data in free text: each a regular expression and a check.

A candidate counts only when its check passes, which keeps numbers that merely
look alike (an order number, a date) out: IBANs by their ISO 7064 mod-97
checksum, card numbers by Luhn, the Dutch BSN by its 11-test, the Spanish DNI
by its check letter, US SSNs by the ranges never issued. Emails and phone
numbers have no checksum; phones need a leading ``+`` or ``00`` and 8 to 15
digits, or a grouped national format, so that amounts and ids are not taken
for them.

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

__all__ = ["KINDS", "combined", "find"]


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
    """An international number: 8 to 15 digits after the ``+`` or ``00`` (E.164 allows 15)."""
    digits = _digits(text)
    if text.startswith("00"):
        digits = digits[2:]
    return 8 <= len(digits) <= 15


def _always(_: str) -> bool:
    return True


_Check = Callable[[str], bool]

# kind -> [(pattern, check)]; "national_id" covers the formats listed under it.
KINDS: dict[str, list[tuple[re.Pattern[str], _Check]]] = {
    "email": [(re.compile(r"\b[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}\b"), _always)],
    "iban": [(re.compile(r"\b[A-Z]{2}\d{2}(?:[ -]?[A-Z0-9]{4}){2,7}(?:[ -]?[A-Z0-9]{1,3})?\b"), iban_ok)],
    "credit_card": [(re.compile(r"\b(?:\d[ -]?){12,18}\d\b"), luhn_ok)],
    "phone": [
        (re.compile(r"(?<![\w+])(?:\+|00)[1-9]\d{0,2}(?:[ .-]?\(?\d{1,4}\)?){2,5}(?!\w)"), phone_ok),
        (re.compile(r"(?<!\w)\(?\d{3}\)?[ .-]\d{3}[ .-]\d{4}(?!\w)"), _always),
    ],
    "national_id": [
        (re.compile(r"\b\d{3}-\d{2}-\d{4}\b"), ssn_ok),  # US SSN
        (re.compile(r"\b[A-CEGHJ-PR-TW-Z][A-CEGHJ-NPR-TW-Z] ?\d{2} ?\d{2} ?\d{2} ?[A-D]\b"), _always),  # UK NINO
        (re.compile(r"\b(?:\d{8}|[XYZ]\d{7})[A-Z]\b"), dni_ok),  # Spanish DNI / NIE
        (re.compile(r"\b\d{9}\b"), bsn_ok),  # Dutch BSN
    ],
}


_PRIORITY = ("email", "iban", "credit_card", "national_id", "phone")  # the loosest last


def combined(kinds: tuple[str, ...] | frozenset[str]) -> tuple[re.Pattern[str], dict[str, tuple[str, _Check]]]:
    """One pattern for all `kinds` (a single pass over a text), and what each named group is."""
    return _combined(frozenset(kinds))


@lru_cache(maxsize=32)
def _combined(kinds: frozenset[str]) -> tuple[re.Pattern[str], dict[str, tuple[str, _Check]]]:
    """One pattern for all `kinds` (a single pass over a text), and what each named group is."""
    parts, groups = [], {}
    for kind in _PRIORITY:
        if kind in kinds:
            for n, (pattern, check) in enumerate(KINDS[kind]):
                name = f"{kind}_{n}"
                parts.append(f"(?P<{name}>{pattern.pattern})")
                groups[name] = (kind, check)
    return re.compile("|".join(parts)), groups


def find(text: str, kinds: tuple[str, ...]) -> Iterator[tuple[int, int, str]]:
    """(start, end, kind) of each recognised value in `text`, left to right, without overlaps.

    Where two kinds could match at one place, the first in `_PRIORITY` is tried; a
    candidate whose check fails (an order number that fails Luhn) is skipped whole.
    """
    pattern, groups = _combined(frozenset(kinds))
    for match in pattern.finditer(text):
        kind, check = groups[match.lastgroup or ""]
        if check(match.group()):
            yield match.start(), match.end(), kind
