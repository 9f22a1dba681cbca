"""How amounts of money are written: for people (never `$0.0000` for a real cost) and for files.

`usd` is for screens: four places from a cent up, more below so that a call
costing $0.00002055 reads `$0.000021`, not `$0.0000`. `plain_decimal` is for
CSV and Markdown: every digit kept, never an exponent (`0.00002055`, not
`2.055e-05`), so a spreadsheet reads the number it was given.
"""

from __future__ import annotations

import math

__all__ = ["budget_usd", "plain_decimal", "read_spend", "round10", "usd"]


def read_spend(value: object, where: str) -> float:
    """An amount spent, read back from a file or a store: a finite, non-negative number, or refused.

    A negative cost carried over would loosen every budget it counts against, and a NaN
    switches a budget off; the run refuses to go on rather than trust either.

    Raises:
        UserInputError: Naming `where` and the value.
    """
    from orchestrate.errors import UserInputError

    if value is None:
        return 0.0
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise UserInputError(
            f"{where}: cost {str(value)[:40]!r} is not a finite, non-negative amount; "
            "the run folder was changed or damaged, so nothing is carried over from it"
        )
    return float(value)


def usd(amount: float) -> str:
    """`amount` in dollars with enough places to show that a non-zero cost is not zero."""
    if amount == 0:
        return "$0.00"
    sign = "-" if amount < 0 else ""
    value = abs(amount)
    if value >= 0.01:
        return f"{sign}${value:,.4f}"
    # Two significant digits at least, six places at least, ten at most (costs are rounded to 1e-10).
    places = min(10, max(6, 1 - math.floor(math.log10(value))))
    return f"{sign}${value:.{places}f}"


def budget_usd(amount: float) -> str:
    """A budget as it was set: ``$2.00`` in cents, ``$0.0005`` or ``$1.505`` when cents would round it
    (a budget of $0.0005 shown as ``$0.00`` reads as no money at all)."""
    amount = float(amount)
    if abs(amount * 100 - round(amount * 100)) < 1e-9:
        return f"${amount:,.2f}"
    return f"${plain_decimal(amount)}"


def plain_decimal(amount: float | int) -> str:
    """`amount` as a plain decimal number with no exponent and no trailing zeros."""
    if isinstance(amount, int) and not isinstance(amount, bool):
        return str(amount)
    text = f"{float(amount):.10f}".rstrip("0").rstrip(".")
    return "0" if text in ("", "-0") else text


_WHOLE = 2.0**40  # below it, x * 1e10 is within 2**-14 of the exact product (half an ulp)


def round10(x: float) -> float:
    """`round(x, 10)`, the same float, without its trip through a decimal string where the
    answer is known without it (a cost is rounded so twice a call: ~3,000 instructions each).

    For 0 < x * 1e10 < 2**40 the product is within 2**-14 of the exact one, so when it is more
    than 0.001 from a half, the whole number nearest to it, n, is the one nearest to the exact
    product: the ten decimals round() keeps. n / 1e10 (both exact, one correctly rounded division)
    is then the float nearest to n * 10**-10, which is what round() reads back from its digits.
    Anywhere else (near a half, zero, negative, large, not finite): round() itself.
    """
    y = x * 1e10
    if 0.0 < y < _WHOLE:
        # The whole number is kept as a float (exact below 2**53; dividing an int converts it to
        # the same float): `%` is cheaper than int() and a subtraction mixing int and float.
        fraction = y % 1.0  # exact, y - floor(y), in [0, 1): fmod of a positive y
        if fraction < 0.499:
            return (y - fraction) / 1e10  # floor(y), exact
        if fraction > 0.501:
            return (y - fraction + 1.0) / 1e10  # floor(y) + 1, exact below 2**40
    return round(x, 10)
