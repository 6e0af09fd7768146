"""Kenyan mobile numbers: normalise every written form to 2547XXXXXXXX / 2541XXXXXXXX; mask."""

from __future__ import annotations

import re

_SEPARATORS = re.compile(r"[\s\-().]")
_NORMALISED = re.compile(r"^254[17][0-9]{8}$")


class InvalidPhoneNumber(ValueError):
    """Not a Kenyan mobile number; the message says what was expected."""


def normalize_phone(value: object) -> str:
    """Return the 12-digit ``2547…``/``2541…`` form of a Kenyan mobile number.

    Accepts ``0712345678``, ``0112345678``, ``+254712345678``, ``254712345678``,
    ``712345678``, with spaces, dashes, dots or parentheses, as a string or an integer.
    """
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise InvalidPhoneNumber("phone number must be a string")
    text = _SEPARATORS.sub("", str(value))
    if not text:
        raise InvalidPhoneNumber("phone number is required")
    if text.startswith("+"):
        text = text[1:]
        if not text.startswith("254"):
            raise InvalidPhoneNumber("only Kenyan numbers (+254) can pay with M-Pesa")
    if not (text.isascii() and text.isdigit()):
        raise InvalidPhoneNumber("phone number may contain only digits, spaces, dashes and +")
    if len(text) == 10 and text[0] == "0":
        text = "254" + text[1:]
    elif len(text) == 9 and text[0] in "17":
        text = "254" + text
    elif len(text) == 13 and text.startswith("2540"):
        text = "254" + text[4:]
    if not _NORMALISED.match(text):
        raise InvalidPhoneNumber(
            "not a Kenyan mobile number: use 07XXXXXXXX, 01XXXXXXXX or 2547XXXXXXXX"
        )
    return text


def mask_phone(phone: str) -> str:
    """``254712345678`` → ``2547****5678``: enough to tell numbers apart in logs, no more."""
    if len(phone) <= 8:
        return "*" * len(phone)
    return phone[:4] + "*" * (len(phone) - 8) + phone[-4:]
