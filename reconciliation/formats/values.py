"""One cell's value: amounts, statement times (East Africa Time), spreadsheet and JSON
numbers as exact decimal text, and COPY escaping."""

from __future__ import annotations

import datetime as dt
import re
import zoneinfo
from decimal import Decimal, InvalidOperation
from typing import Any

from .limits import MAX_DECIMAL_EXPONENT

EAT = zoneinfo.ZoneInfo("Africa/Nairobi")
UTC = dt.UTC

# numeric(14,2): twelve digits before the decimal point.
MAX_INTEGER_DIGITS = 12


def decimal_out_of_range(value: Any) -> bool:
    """A number whose exponent is out of any sane range (``1E+100000000``, ``1E-99999``), or
    one the decimal module could not even hold: written out in digits it would take
    gigabytes."""
    if isinstance(value, _HugeNumber):
        return True
    if not isinstance(value, Decimal) or not value.is_finite():
        return False
    exponent = value.as_tuple().exponent
    assert isinstance(exponent, int)
    return abs(value.adjusted()) > MAX_DECIMAL_EXPONENT or abs(exponent) > MAX_DECIMAL_EXPONENT


def decimal_text(value: Decimal) -> str:
    """A Decimal as plain digits, unless its exponent is out of range: then as Python writes
    it (``1E+100000000``), which no amount or time reads."""
    if not value.is_finite() or decimal_out_of_range(value):
        return str(value)
    return format(value, "f")


class _HugeNumber(str):
    """A JSON number the decimal module cannot hold (``1E+99999999999999999999``): kept as
    its text, never read as an amount."""


def json_number(text: str) -> Decimal | _HugeNumber:
    try:
        return Decimal(text)
    except InvalidOperation:
        return _HugeNumber(text)


# --- Values ------------------------------------------------------------------------------------

RECEIPT = re.compile(r"[A-Z0-9]{6,20}")
TOTAL_ROW = re.compile(r"(?:grand\s+)?totals?(?:\s*:.*|\s+.*)?", re.IGNORECASE)
_DMY = re.compile(r"(\d{1,2})-(\d{1,2})-(\d{4})[ T](\d{1,2}):(\d{2})(?::(\d{2}))?", re.ASCII)
_ISO = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[ T](\d{2}):(\d{2})(?::(\d{2}))?(\.\d{1,6})?(Z|[+-]\d{2}:?\d{2})?",
    re.ASCII,
)
_SLASH = re.compile(
    r"(\d{1,2})/(\d{1,2})/(\d{4})[ T](\d{1,2}):(\d{2})(?::(\d{2}))?(?: ?([AaPp][Mm]))?",
    re.ASCII,
)
_SERIAL = re.compile(r"\d{5}(?:\.\d+)?", re.ASCII)
_AMOUNT = re.compile(r"[+-]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?", re.ASCII)
_CURRENCY = re.compile(r"^(?:KES|KSH|KSHS)\.?\s*|\s*(?:KES|KSH|KSHS)$", re.IGNORECASE)
EXCEL_EPOCH = dt.datetime(1899, 12, 30)


class ValueProblem(ValueError):
    """One cell cannot be read; the message says why (it becomes the reject reason)."""


def parse_amount(text: str) -> Decimal | None:
    """``"1,131,340.00"``, ``"-60.00"``, ``"KES 111"``, ``"(60.00)"`` → Decimal; ``""`` and
    ``"-"`` → None. Anything else raises: a malformed amount is never 0."""
    value = text.strip()
    if value in ("", "-"):
        return None
    value = _CURRENCY.sub("", value).replace(" ", "").replace("\u00a0", "")
    negative = False
    if value.startswith("(") and value.endswith(")"):
        negative, value = True, value[1:-1]
    if not _AMOUNT.fullmatch(value):
        raise ValueProblem(f"{text!r} is not an amount")
    plain = value.replace(",", "")
    # Checked on the text, before any arithmetic: Decimal's context (28 digits) cannot even
    # round a number of 27 digits to cents.
    whole, _, fraction = plain.lstrip("+-").partition(".")
    if len(whole.lstrip("0")) > MAX_INTEGER_DIGITS:
        raise ValueProblem(f"{text!r} is too large")
    if fraction.rstrip("0")[2:]:
        raise ValueProblem(f"{text!r} has fractions of a cent")
    number = Decimal(plain)
    if negative:
        number = -number
    cents = number.quantize(Decimal("0.01"))
    if cents != number:
        raise ValueProblem(f"{text!r} has fractions of a cent")
    if abs(cents) >= Decimal(10) ** MAX_INTEGER_DIGITS:
        raise ValueProblem(f"{text!r} is too large")
    return cents


def parse_statement_time(text: str) -> dt.datetime:
    """A statement time as naive East Africa Time. Day-first ``DD-MM-YYYY HH:MM[:SS]`` (the
    portal's form), ISO ``YYYY-MM-DD HH:MM[:SS]`` (a zone suffix is converted to EAT),
    an Excel serial, or ``D/M/YYYY`` when it cannot be read month-first; a date that could be
    read both ways (a file re-saved by US-locale Excel) is refused."""
    value = text.strip()
    zone: str | None = None
    if m := _DMY.fullmatch(value):
        day, month, year, hour, minute, second = m.groups()
    elif m := _ISO.fullmatch(value):
        year, month, day, hour, minute, second, fraction, zone = m.groups()
        if fraction and fraction.strip(".0"):
            raise ValueProblem(f"{text!r} has fractions of a second")
    elif m := _SLASH.fullmatch(value):
        first, second_part, year, hour, minute, second, meridiem = m.groups()
        if int(first) <= 12:
            raise ValueProblem(
                f"{text!r} is ambiguous (day and month could be swapped; was the file "
                "re-saved by Excel?)"
            )
        day, month = first, second_part
        if meridiem:
            hour_number = int(hour)
            if not 1 <= hour_number <= 12:
                raise ValueProblem(f"{text!r} is not a valid time")
            hour = str(hour_number % 12 + (12 if meridiem.lower() == "pm" else 0))
    elif _SERIAL.fullmatch(value):
        serial = Decimal(value)
        if serial == serial.to_integral_value():
            # A whole day number is a date without its time, not midnight.
            raise ValueProblem(f"{text!r} is a date without a time")
        moment = EXCEL_EPOCH + dt.timedelta(seconds=int((serial * 86400).quantize(Decimal(1))))
        if not 1900 <= moment.year <= 2099:
            raise ValueProblem(f"{text!r} is not a plausible statement date")
        return moment
    else:
        raise ValueProblem(f"{text!r} is not a date and time (expected DD-MM-YYYY HH:MM:SS)")
    try:
        moment = dt.datetime(
            int(year), int(month), int(day), int(hour), int(minute), int(second or 0)
        )
    except ValueError:
        raise ValueProblem(f"{text!r} is not a valid date and time") from None
    # Checked before and after the zone: year 1 or 9999 cannot even be moved to East Africa.
    if not 1900 <= moment.year <= 2099:
        raise ValueProblem(f"{text!r} is not a plausible statement date")
    if zone:
        offset = dt.timedelta(0)
        if zone != "Z":
            sign = -1 if zone[0] == "-" else 1
            digits = zone[1:].replace(":", "")
            offset = sign * dt.timedelta(hours=int(digits[:2]), minutes=int(digits[2:]))
            if offset.total_seconds() > 14 * 3600 or offset.total_seconds() < -12 * 3600:
                raise ValueProblem(f"{text!r} has no real time zone offset")
        utc = moment.replace(tzinfo=dt.timezone(offset)).astimezone(UTC)
        moment = utc.astimezone(EAT).replace(tzinfo=None)
    # Checked on the East Africa time that is stored (read again from it, it must pass).
    if not 1900 <= moment.year <= 2099:
        raise ValueProblem(f"{text!r} is not a plausible statement date")
    return moment


def eat_to_utc(moment: dt.datetime) -> dt.datetime:
    return moment.replace(tzinfo=EAT).astimezone(UTC)


def cell_text(value: Any) -> str:
    """A spreadsheet cell as text: numbers exactly (a float cell's shortest repr, with binary
    noise below a millionth of a cent removed), dates as ISO text, empty as ``""``."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            return repr(value)
        number = Decimal(repr(value))
        cents = number.quantize(Decimal("0.01"))
        if abs(number - cents) < Decimal("0.000001"):
            number = cents.normalize() if cents == cents.to_integral_value() else cents
        text = format(number, "f")
        return text
    if isinstance(value, Decimal):
        return decimal_text(value)
    if isinstance(value, dt.datetime):
        # To the nearest second: a spreadsheet keeps times as fractions of a day, and
        # 21:45:13 may come back as 21:45:12.9999.
        if value.microsecond >= 500_000:
            value += dt.timedelta(seconds=1)
        return value.strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(value, dt.date):
        return value.strftime("%Y-%m-%d 00:00:00")
    return str(value)


# --- COPY text --------------------------------------------------------------------------------

_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def copy_escape(text: str) -> str:
    """Text as a PostgreSQL COPY (text format) field."""
    return text.replace("\x00", "").translate(_COPY_ESCAPES)
