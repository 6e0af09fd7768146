"""Money is Decimal, quantized to cents in one place; malformed amounts are errors, never 0."""

from __future__ import annotations

import re
from decimal import ROUND_HALF_UP, Decimal

CENT = Decimal("0.01")
# Plain decimal notation in ASCII digits only. Decimal() alone would also read "1_0",
# full-width and Arabic-Indic digits, exponents and "NaN": none of those is an amount.
_PLAIN_NUMBER = re.compile(r"[+-]?[0-9]+(\.[0-9]+)?", re.ASCII)


class InvalidAmount(ValueError):
    """The value is not a usable amount of money; the message says why."""


def to_decimal(value: object) -> Decimal:
    """Read an amount from JSON or text without losing precision or guessing.

    Accepts int, Decimal, and numeric strings (surrounding spaces allowed). Floats are refused:
    JSON is parsed with ``parse_float=Decimal`` so a float here means a caller bypassed that.
    Booleans, None, empty strings, NaN and infinities are refused.
    """
    if isinstance(value, bool) or value is None:
        raise InvalidAmount("amount is missing or not a number")
    if isinstance(value, Decimal):
        number = value
    elif isinstance(value, int):
        number = Decimal(value)
    elif isinstance(value, str):
        text = value.strip()
        if not text:
            raise InvalidAmount("amount is empty")
        if len(text) > 40 or not _PLAIN_NUMBER.fullmatch(text):
            raise InvalidAmount(f"amount {value[:40]!r} is not a number in plain notation")
        number = Decimal(text)
    elif isinstance(value, float):
        raise InvalidAmount("amount must be parsed as Decimal, not float")
    else:
        raise InvalidAmount(f"amount of type {type(value).__name__} is not a number")
    if not number.is_finite():
        raise InvalidAmount(f"amount {value!r} is not a finite number")
    return number


def quantize(amount: Decimal) -> Decimal:
    """The one rounding rule: two places, half-up (used only where cents are expected)."""
    return amount.quantize(CENT, rounding=ROUND_HALF_UP)


# Far above any M-Pesa amount; keeps quantize() and the database's numeric(12,2) safe.
MAX_AMOUNT = Decimal("9999999999")


def whole_shillings(value: object) -> Decimal:
    """An STK Push amount: a whole number of shillings (``10`` and ``10.00`` yes, ``10.5`` no)."""
    number = to_decimal(value)
    # copy_abs, not abs(): abs() rounds to the context and overflows on 1e999999999.
    if number.copy_abs() > MAX_AMOUNT:
        raise InvalidAmount(f"amount is larger than {MAX_AMOUNT:,} (no M-Pesa amount is)")
    if number != number.to_integral_value():
        raise InvalidAmount("amount must be a whole number of shillings (M-Pesa takes no cents)")
    return quantize(number)
