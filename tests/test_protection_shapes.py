"""The policy remembers the shapes of short texts in which no recogniser matched (a column of ids is
scanned once, not once a row): what it finds must be what a scan without that memory finds."""

from __future__ import annotations

import random

from orchestrate.run.protection import _SHAPES_KEPT, Policy, Protector
from orchestrate.run.recognizers import KINDS, PHONE_HINT

EVERY = ["email", "phone", "iban", "credit_card", "national_id"]
SHAPE = str.maketrans("23456789", "11111111")

# Templates whose digits (#) are drawn at random: each shape is met with digits that pass a
# recogniser's check (an IBAN's mod 97, Luhn, the BSN's 11-test, an SSN's ranges) and digits that fail it.
TEMPLATES = [
    "INV-#######",
    "PO ######/##",
    "ref ####-##-##",
    "###-##-####",
    "#########",
    "########Z",
    "X#######L",
    "#### #### #### ####",
    "################",
    "DE## #### #### #### #### ##",
    "GB##NWBK########## ok",
    "+## ## #######",
    "00## ## #######",
    "(0##) ### ####",
    "0###/#######",
    "(###) ###-####",
    "###.###.####",
    "a.b#@x.io, #####",
    "Vendor ###",
    "AB ## ## ## C",
    "##,###.##",
    "##.##.####",
]


def _texts(count: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    texts = []
    for _ in range(count):
        template = rng.choice(TEMPLATES)
        texts.append("".join(str(rng.randrange(10)) if ch == "#" else ch for ch in template))
    # Digit runs the templates do not make: random characters a recogniser reads.
    for _ in range(count // 4):
        texts.append("".join(rng.choice("0123456789 -./()+@AZXaz") for _ in range(rng.randrange(1, 30))))
    return texts


def test_no_recogniser_tells_the_digits_1_to_9_apart() -> None:
    """What the shapes rest on: every pattern, and the phone hint, matches a text and its shape
    (digits 2-9 written as 1) at the same places; a pattern with a digit literal would break it."""
    patterns = [pattern for kinds in KINDS.values() for pattern, _ in kinds] + [PHONE_HINT]
    for text in _texts(3000, seed=7):
        shape = text.translate(SHAPE)
        for pattern in patterns:
            found = [m.span() for m in pattern.finditer(text)]
            assert found == [m.span() for m in pattern.finditer(shape)], (pattern.pattern, text)


def test_a_protector_that_remembers_shapes_finds_what_a_fresh_one_finds() -> None:
    remembering = Protector(Policy.from_dict({"detect": EVERY}), secret=b"k")
    found_any = 0
    for text in _texts(4000, seed=11):
        fresh = Protector(Policy.from_dict({"detect": EVERY}), secret=b"k")
        expected = fresh.scan_text(text)
        assert remembering.scan_text(text) == expected, text
        found_any += expected != text
    assert found_any > 500  # the texts hold values to find, not only ids


def test_a_value_that_passes_its_check_is_found_after_one_of_its_shape_that_failed() -> None:
    guard = Protector(Policy.from_dict({"detect": EVERY}), secret=b"k")
    assert guard.scan_text("card 4111 1111 1111 1112") == "card 4111 1111 1111 1112"  # fails Luhn
    assert guard.scan_text("card 4111 1111 1111 1111").startswith("card CARD_")
    assert guard.scan_text("iban DE89370400440532013001") == "iban DE89370400440532013001"  # fails mod 97
    assert guard.scan_text("iban DE89370400440532013000").startswith("iban IBAN_")
    assert guard.counts == {"detected_credit_card": 1, "detected_iban": 1, "pseudonymized": 2}


def test_a_column_of_ids_is_scanned_once_and_the_shapes_kept_stay_bounded() -> None:
    guard = Protector(Policy.from_dict({"columns": {"vendor": "pseudonymize"}, "detect": EVERY}), secret=b"k")
    for i in range(2000):
        row = {"invoice_id": f"INV-{i:07d}", "vendor": f"Vendor {i % 97}", "amount": 100 + i * 0.37}
        assert guard.protect_values(row)["invoice_id"] == row["invoice_id"]
    assert len(guard._clean) <= 2**7  # INV- and seven digits, each 0 or not
    for i in range(3 * _SHAPES_KEPT):  # texts of ever new shapes: forgotten, not kept without end
        guard.scan_text("x" * (i % 60) + "-" + "y" * (i // 60))
    assert len(guard._clean) <= _SHAPES_KEPT
    assert guard.scan_text("x" * 65) == "x" * 65 and len(guard._clean) <= _SHAPES_KEPT  # long texts: not kept


def test_texts_with_digits_of_other_scripts_are_scanned_as_before() -> None:
    guard = Protector(Policy.from_dict({"detect": EVERY}), secret=b"k")
    arabic = "رقم ٠١٢٣٤٥٦٧٨٩ mail x.y@z.de"
    scanned = guard.scan_text(arabic)
    assert "x.y@z.de" not in scanned and "EMAIL_" in scanned and "٠١٢٣٤٥٦٧٨٩" in scanned
    assert guard.scan_text("Grüße, +49 30 1234567").startswith("Grüße, PHONE_")
