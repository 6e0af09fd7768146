"""Statement parsers: the M-Pesa org portal (G2) statement as CSV, XLSX or XLS, and Daraja Pull
Transactions responses (JSON), read into rows of text cells with a header map and metadata.

One set of rules (``RowReader``) turns a row's text into canonical values or a reason for
rejecting it; nothing is coerced to 0 or to a default date. Cells are text first: numeric
spreadsheet cells become their exact decimal text, never a float amount. See
``/docs/reconciliation.md`` and the statement format notes (FORMATS.md) for the quirks handled.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import re
import signal
import threading
import time
import zipfile
import zoneinfo
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from decimal import Decimal, InvalidOperation
from typing import Any

from django.conf import settings

from .models import StatementFormat

EAT = zoneinfo.ZoneInfo("Africa/Nairobi")
UTC = dt.UTC

# A statement cell may be longer than the csv module's default limit (131,072 characters):
# it is data like any other, and the Arrow reader, which has no such limit, must read the
# same rows. (Process-wide; the upload size bounds a cell anyway.)
csv.field_size_limit(2**31 - 1)

# How far down the file the header row may be (the G2 preamble is 6 rows).
HEADER_SEARCH_ROWS = 60
MAX_ROW_CELLS = 200
# numeric(14,2): twelve digits before the decimal point.
MAX_INTEGER_DIGITS = 12

# --- Columns -----------------------------------------------------------------------------------

FIELDS = (
    "receipt",
    "completed",
    "details",
    "status",
    "paid_in",
    "withdrawn",
    "balance",
    "reason_type",
    "other_party",
    "linked",
    "account",
)
TEXT_FIELDS = ("details", "status", "reason_type", "other_party", "linked", "account")
AMOUNT_FIELDS = ("paid_in", "withdrawn", "balance")

# Header names (lower case, spaces collapsed, trailing "." and ":" dropped) to fields. G2 names
# first; then the aliases other exports of the same platform use (FORMATS.md §1.3, §1.6, §1.7).
HEADER_ALIASES: dict[str, str] = {
    "receipt no": "receipt",
    "receipt": "receipt",
    "receipt number": "receipt",
    "completion time": "completed",
    "date": "completed",
    "details": "details",
    "transaction status": "status",
    "status": "status",
    "paid in": "paid_in",
    "withdrawn": "withdrawn",
    "withdraw": "withdrawn",
    "balance": "balance",
    "reason type": "reason_type",
    "transaction type": "reason_type",
    "other party info": "other_party",
    "opposite party": "other_party",
    "linked transaction id": "linked",
    "a/c no": "account",
    "transaction party details": "account",
}
FIELD_LABELS = {
    "receipt": "Receipt No.",
    "completed": "Completion Time",
    "details": "Details",
    "status": "Transaction Status",
    "paid_in": "Paid In",
    "withdrawn": "Withdrawn",
    "balance": "Balance",
    "reason_type": "Reason Type",
    "other_party": "Other Party Info",
    "linked": "Linked Transaction ID",
    "account": "A/C No.",
}
G2_HEADER = [
    "Receipt No.",
    "Completion Time",
    "Initiation Time",
    "Details",
    "Transaction Status",
    "Paid In",
    "Withdrawn",
    "Balance",
    "Balance Confirmed",
    "Reason Type",
    "Other Party Info",
    "Linked Transaction ID",
    "A/C No.",
    "Currency",
]


def header_key(cell: str) -> str:
    return " ".join(cell.split()).strip().rstrip(".:").strip().lower()


class StatementFormatError(ValueError):
    """The file as a whole cannot be read (unknown format, no header row, broken file)."""


class StatementLimitError(StatementFormatError):
    """The file is over one of the reading limits (:class:`ParseLimits`): refused, whatever
    it declares about itself."""


# --- Limits ------------------------------------------------------------------------------------

# A number written with an exponent beyond this (1E+100000000) is not expanded into its
# digits: ``format(value, "f")`` would write a hundred million of them.
MAX_DECIMAL_EXPONENT = 64
# Members of a ZIP (XLSX) under this size are not checked for their compression ratio: small
# XML parts compress far better than a sheet.
RATIO_CHECK_MIN_BYTES = 1024 * 1024
# An XLSX's shared strings are read into memory at once: they may use this fraction of
# RECONCILIATION_MAX_DECOMPRESSED_BYTES (a sheet is read as a stream).
SHARED_STRINGS_SHARE = 8
# The rows' progress is reported every this many rows.
PROGRESS_EVERY_ROWS = 1000


@dataclass(frozen=True)
class ParseLimits:
    """What a statement may cost to read; a file over any limit is refused, naming it. The
    defaults are the settings' (README, Security)."""

    max_rows: int = 2_000_000
    max_columns: int = 256
    max_cell_chars: int = 32_767
    max_decompressed_bytes: int = 512 * 1024 * 1024
    max_compression_ratio: int = 100
    time_limit_seconds: float = 600.0
    reject_max_chars: int = 2000

    @classmethod
    def from_settings(cls) -> ParseLimits:
        default = cls()
        names = {
            "max_rows": "RECONCILIATION_MAX_ROWS",
            "max_columns": "RECONCILIATION_MAX_COLUMNS",
            "max_cell_chars": "RECONCILIATION_MAX_CELL_CHARS",
            "max_decompressed_bytes": "RECONCILIATION_MAX_DECOMPRESSED_BYTES",
            "max_compression_ratio": "RECONCILIATION_MAX_COMPRESSION_RATIO",
            "time_limit_seconds": "RECONCILIATION_IMPORT_TIME_LIMIT_SECONDS",
            "reject_max_chars": "RECONCILIATION_REJECT_MAX_CHARS",
        }
        return cls(
            **{
                attribute: getattr(settings, setting, getattr(default, attribute))
                for attribute, setting in names.items()
            }
        )

    def over_time(self) -> StatementLimitError:
        return StatementLimitError(
            f"reading the statement took over {self.time_limit_seconds:g} seconds "
            "(RECONCILIATION_IMPORT_TIME_LIMIT_SECONDS)"
        )


class Deadline:
    """The time limit, checked as rows are read (and by :func:`time_limit` between them)."""

    def __init__(self, limits: ParseLimits) -> None:
        self.limits = limits
        self.at = time.monotonic() + limits.time_limit_seconds

    def check(self) -> None:
        if time.monotonic() > self.at:
            raise self.limits.over_time()


@contextmanager
def time_limit(limits: ParseLimits) -> Iterator[None]:
    """Interrupts whatever runs longer than the time limit, even one call into a library
    that reads a whole sheet at once (xlrd, openpyxl's shared strings): a SIGALRM timer in
    the main thread (a Celery prefork worker's, the command's). Elsewhere, or when a timer is
    already running, the rows' own checks are the limit."""
    usable = (
        threading.current_thread() is threading.main_thread()
        and hasattr(signal, "setitimer")
        and signal.getitimer(signal.ITIMER_REAL)[0] == 0
    )
    if not usable:
        yield
        return

    def expired(signum: int, frame: Any) -> None:
        raise limits.over_time()

    previous = signal.signal(signal.SIGALRM, expired)
    # Then again every 0.1 s: an exception raised where Python cannot pass it on (in a
    # finaliser run by the garbage collector) is lost, and one timer would be spent.
    signal.setitimer(signal.ITIMER_REAL, max(limits.time_limit_seconds, 0.001), 0.1)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _cut(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    return f"{text[:limit]}… [{len(text) - limit} characters cut]"


def reject_record(reason: str, cells: list[str], limit: int) -> tuple[str, list[str]]:
    """What a reject keeps: its reason, and its first cells up to ``limit`` characters in
    all, what is cut marked as cut (one huge cell must not be stored twice, whole)."""
    kept: list[str] = []
    left = limit
    for index, cell in enumerate(cells):
        if left <= 0 or index >= MAX_ROW_CELLS:
            kept.append(f"… [{len(cells) - index} more cells cut]")
            break
        kept.append(_cut(cell, left))
        left -= len(cell)
    return _cut(reason, limit), kept


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


def _json_number(text: str) -> Decimal | _HugeNumber:
    try:
        return Decimal(text)
    except InvalidOperation:
        return _HugeNumber(text)


class LimitedRows:
    """A file's rows, stopped at the limits: the row number (a spreadsheet's own, which may
    jump), the time, and for spreadsheets and JSON, whose cells can be far larger than the
    bytes that declare them, the number of cells and their length. Counts the rows read and
    reports them every :data:`PROGRESS_EVERY_ROWS` rows."""

    def __init__(
        self,
        rows: Iterator[tuple[int, list[str]]],
        limits: ParseLimits,
        deadline: Deadline,
        *,
        check_cells: bool,
        progress: Callable[[int], None] | None = None,
    ) -> None:
        self.rows = rows
        self.limits = limits
        self.deadline = deadline
        self.check_cells = check_cells
        self.progress = progress
        self.count = 0

    def __iter__(self) -> LimitedRows:
        return self

    def __next__(self) -> tuple[int, list[str]]:
        number, cells = next(self.rows)
        self.count += 1
        limits = self.limits
        if number > limits.max_rows or self.count > limits.max_rows:
            raise StatementLimitError(
                f"the statement has more than {limits.max_rows} rows "
                f"(RECONCILIATION_MAX_ROWS; row {number} reached): split it"
            )
        if self.check_cells:
            check_row_cells(number, cells, limits)
        if self.count % PROGRESS_EVERY_ROWS == 0:
            self.deadline.check()
            if self.progress is not None:
                self.progress(self.count)
        return number, cells


def check_row_cells(number: int, cells: list[Any], limits: ParseLimits) -> None:
    if len(cells) > limits.max_columns:
        raise StatementLimitError(
            f"row {number} has {len(cells)} columns, over the limit of {limits.max_columns} "
            "(RECONCILIATION_MAX_COLUMNS)"
        )
    for column, cell in enumerate(cells, 1):
        if isinstance(cell, str) and len(cell) > limits.max_cell_chars:
            raise_long_cell(number, column, len(cell), limits)


def raise_long_cell(number: int, column: int, length: int, limits: ParseLimits) -> None:
    raise StatementLimitError(
        f"row {number}, column {column} holds {length} characters, over the limit of "
        f"{limits.max_cell_chars} (RECONCILIATION_MAX_CELL_CHARS)"
    )


@dataclass(frozen=True)
class Layout:
    """Where each field is in a row, for a file with ``width`` columns."""

    header: tuple[str, ...]
    columns: dict[str, int]
    # A spreadsheet leaves a row's empty cells past its last value out: its short rows are
    # padded. A CSV row normally has all its cells; one that stops before the last column a
    # line needs (receipt, time, amounts) has lost cells, and which is not known, so it is
    # rejected rather than read with its cells under the wrong names.
    pads_short_rows: bool = True

    @property
    def width(self) -> int:
        return len(self.header)

    @classmethod
    def from_header(cls, cells: list[str], *, pads_short_rows: bool = True) -> Layout:
        columns: dict[str, int] = {}
        seen: dict[str, int] = {}
        for index, cell in enumerate(cells):
            key = header_key(cell)
            name = HEADER_ALIASES.get(key)
            if name is None:
                continue
            if key in seen:
                raise StatementFormatError(
                    f"the header row has two {cell.strip()!r} columns (columns "
                    f"{seen[key] + 1} and {index + 1}): which one holds the values is not known"
                )
            seen[key] = index
            if name not in columns:
                columns[name] = index
        missing = [FIELD_LABELS[name] for name in ("receipt", "completed") if name not in columns]
        if missing:
            raise StatementFormatError(f"the header row has no {' or '.join(missing)} column")
        if "paid_in" not in columns and "withdrawn" not in columns:
            raise StatementFormatError(
                "the header row has neither a Paid In nor a Withdrawn column"
            )
        # Trailing unnamed columns (a spreadsheet's formatting past the table) are not data.
        width = len(cells)
        while width > 0 and not cells[width - 1].strip():
            width -= 1
        width = max(width, max(columns.values()) + 1)
        return cls(header=tuple(cells[:width]), columns=columns, pads_short_rows=pads_short_rows)

    def is_header(self, cells: list[str]) -> bool:
        return [header_key(c) for c in cells[: self.width]] == [header_key(c) for c in self.header]


# --- Values ------------------------------------------------------------------------------------

_RECEIPT = re.compile(r"[A-Z0-9]{6,20}")
_TOTAL = re.compile(r"(?:grand\s+)?totals?(?:\s*:.*|\s+.*)?", re.IGNORECASE)
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


# --- Rows --------------------------------------------------------------------------------------

_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def copy_escape(text: str) -> str:
    """Text as a PostgreSQL COPY (text format) field."""
    return text.replace("\x00", "").translate(_COPY_ESCAPES)


@dataclass
class RowOutcome:
    kind: str  # "ok", "skip", "reject"
    cells: list[str] = field(default_factory=list)  # canonical text, one per column (ok)
    reason: str = ""  # reject reason, or what was skipped ("blank", "header", "total")


class RowReader:
    """Reads one data row: pads or trims it to the header's width, skips blank, repeated
    header and total rows, and canonicalises the receipt, time and amount cells (times as
    ``YYYY-MM-DD HH:MM:SS`` EAT, amounts as plain decimals, empty as ``""``)."""

    def __init__(self, layout: Layout) -> None:
        self.layout = layout
        self.width = layout.width
        self.receipt = layout.columns["receipt"]
        self.completed = layout.columns["completed"]
        self.columns = layout.columns
        self.amounts = [
            (name, layout.columns[name]) for name in AMOUNT_FIELDS if name in layout.columns
        ]
        # The last column a line cannot do without (receipt, time, amounts).
        self.last_needed = max(
            [self.receipt, self.completed, *(index for _, index in self.amounts)]
        )
        # A column the format's own reader fills with the reason a row cannot be a line.
        self.problem = layout.columns.get(PROBLEM)

    def read(self, cells: list[str]) -> RowOutcome:
        """``cells`` lose their NUL characters, in place (PostgreSQL's text cannot hold one:
        dropped alike on every engine, in lines and in the cells kept with a reject)."""
        if any("\x00" in cell for cell in cells):
            cells[:] = [cell.replace("\x00", "") for cell in cells]
        width = self.width
        if len(cells) > width:
            if any(c.strip() for c in cells[width:]):
                return RowOutcome(
                    "reject", reason=f"the row has {len(cells)} cells; the header has {width}"
                )
            cells = cells[:width]
        short = len(cells) < width
        if short:
            given = len(cells)
            cells = [*cells, *([""] * (width - given))]
        if self.problem is not None and cells[self.problem]:
            return RowOutcome("reject", reason=cells[self.problem])
        if not any(c.strip() for c in cells):
            return RowOutcome("skip", reason="blank")
        if self.layout.is_header(cells):
            return RowOutcome("skip", reason="header")
        first = cells[self.receipt].strip()
        if _TOTAL.fullmatch(first):
            return RowOutcome("skip", reason="total")
        if short and not self.layout.pads_short_rows and given <= self.last_needed:
            # A cell the line needs is missing: which one was lost (and whether the others
            # moved left) is not known. Trailing text and unnamed cells may be left out.
            return RowOutcome("reject", reason=f"the row has {given} cells; the header has {width}")
        out = list(cells)
        problems: list[str] = []
        receipt = first.upper()
        if not receipt:
            problems.append("Receipt No. is empty")
        elif not _RECEIPT.fullmatch(receipt):
            problems.append(f"Receipt No. {first!r} is not an M-Pesa receipt number")
        out[self.receipt] = receipt
        completed = cells[self.completed]
        if not completed.strip():
            problems.append("Completion Time is empty")
        else:
            try:
                out[self.completed] = parse_statement_time(completed).strftime("%Y-%m-%d %H:%M:%S")
            except ValueProblem as exc:
                problems.append(f"Completion Time {exc}")
        amounts: dict[str, Decimal | None] = {}
        for name, index in self.amounts:
            try:
                amounts[name] = parse_amount(cells[index])
            except ValueProblem as exc:
                problems.append(f"{FIELD_LABELS[name]} {exc}")
                continue
            out[index] = "" if amounts[name] is None else format(amounts[name], "f")
        if problems:
            return RowOutcome("reject", reason="; ".join(problems))
        # Exactly one of Paid In / Withdrawn carries the line's amount; a 0.00 on the unused
        # side (older exports) is dropped so that the other side says the direction.
        paid_in, withdrawn = amounts.get("paid_in"), amounts.get("withdrawn")
        if paid_in is None and withdrawn is None:
            return RowOutcome("reject", reason="neither Paid In nor Withdrawn has an amount")
        if paid_in and withdrawn:
            return RowOutcome("reject", reason="both Paid In and Withdrawn have an amount")
        if paid_in is not None and withdrawn is not None:
            if withdrawn and not paid_in:
                out[self.columns["paid_in"]] = ""
            else:  # Paid In has the amount, or both are zero (then it is a zero paid-in line)
                out[self.columns["withdrawn"]] = ""
        return RowOutcome("ok", cells=out)


FAST_RECEIPT = r"[A9]{6,20}"
FAST_TIME = r"99-99-9999 99:99(?::99)?"
FAST_AMOUNT = r"(?:-?(?:9{1,3}(?:,999){1,3}|9{1,12})(?:\.9{1,2})?)?"
# A cell's shape: digits as 9, upper-case ASCII letters as A, anything else as itself.
SHAPE = bytes.maketrans(b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ", b"9" * 10 + b"A" * 26)


class FastKey:
    """Decides whether a row's typed cells (receipt, time, amounts) are in the portal's own
    forms and need no canonicalising: an upper-case receipt (not "TOTALS"),
    ``DD-MM-YYYY HH:MM[:SS]`` with a real date and time, amounts with or without thousands
    separators. Any other row goes through :class:`RowReader`.

    A regular expression per row costs more than everything else a row needs; so the cells'
    *shape* (digits as 9, letters as A: a byte translation) is looked up in a cache of shapes
    already judged, and the date in a cache of its own (a month of statement has 30 dates);
    the time of day is compared as text."""

    def __init__(self, layout: Layout) -> None:
        self.indexes = [layout.columns["receipt"], layout.columns["completed"]]
        parts = [FAST_RECEIPT, FAST_TIME]
        for name in AMOUNT_FIELDS:
            if name in layout.columns:
                self.indexes.append(layout.columns[name])
                parts.append(FAST_AMOUNT)
        self.shape_pattern = re.compile("\t".join(parts).encode())
        self.shapes: dict[bytes, bool] = {}
        self.dates: dict[str, bool] = {}

    def shape_ok(self, shape: bytes) -> bool:
        ok = self.shapes.get(shape)
        if ok is None:
            ok = self.shapes[shape] = bool(self.shape_pattern.fullmatch(shape))
        return ok

    def date_ok(self, text: str) -> bool:
        ok = self.dates.get(text)
        if ok is None:
            try:
                day = dt.date(int(text[6:10]), int(text[3:5]), int(text[0:2]))
                ok = 1900 <= day.year <= 2099
            except ValueError:
                ok = False
            self.dates[text] = ok
        return ok


# --- Metadata ----------------------------------------------------------------------------------

_METADATA_AMOUNTS = {
    "opening balance": "opening_balance",
    "closing balance": "closing_balance",
    "available balance": "available_balance",
    "total paid in": "total_paid_in",
    "total withdrawn": "total_withdrawn",
}


@dataclass
class StatementMetadata:
    labels: dict[str, Any] = field(default_factory=dict)
    account_holder: str = ""
    short_code: str = ""
    account_name: str = ""
    period_start: dt.datetime | None = None
    period_end: dt.datetime | None = None
    report_time: dt.datetime | None = None
    opening_balance: Decimal | None = None
    closing_balance: Decimal | None = None
    available_balance: Decimal | None = None
    total_paid_in: Decimal | None = None
    total_withdrawn: Decimal | None = None
    warnings: list[str] = field(default_factory=list)

    def read_preamble(self, rows: list[list[str]]) -> None:
        """Label cells end in ``:``; the value is in the next non-empty cell(s). "Time
        Period:" is followed by ``From <time> To <time>``. NUL characters are dropped, as
        from rows."""
        for row in rows:
            cells = [cell.replace("\x00", "") for cell in row]
            index = 0
            while index < len(cells):
                label = cells[index].strip()
                index += 1
                if not label.endswith(":"):
                    continue
                values: list[str] = []
                while index < len(cells) and not cells[index].strip().endswith(":"):
                    if cells[index].strip():
                        values.append(cells[index].strip())
                    index += 1
                self._take(label[:-1].strip(), values)

    def _take(self, label: str, values: list[str]) -> None:
        key = " ".join(label.split()).lower()
        self.labels[label] = values[0] if len(values) == 1 else values
        first = values[0] if values else ""
        if key == "account holder":
            self.account_holder = first
        elif key == "short code":
            self.short_code = first
        elif key == "account":
            self.account_name = first
        elif key == "time period":
            words = [v.lower() for v in values]
            if "from" in words and words.index("from") + 1 < len(values):
                self.period_start = self._time(label, values[words.index("from") + 1])
            if "to" in words and words.index("to") + 1 < len(values):
                self.period_end = self._time(label, values[words.index("to") + 1])
        elif key == "date of report":
            self.report_time = self._time(label, first)
        elif key in _METADATA_AMOUNTS:
            if not first:
                return
            try:
                setattr(self, _METADATA_AMOUNTS[key], parse_amount(first))
            except ValueProblem as exc:
                self.warnings.append(f"{label}: {exc}; left empty")

    def _time(self, label: str, text: str) -> dt.datetime | None:
        try:
            return eat_to_utc(parse_statement_time(text))
        except ValueProblem as exc:
            self.warnings.append(f"{label}: {exc}; left empty")
            return None


# --- Files -------------------------------------------------------------------------------------


@dataclass
class ParsedStatement:
    file_format: str
    metadata: StatementMetadata
    layout: Layout
    header_row: int
    rows: Iterator[tuple[int, list[str]]]  # (row number in the file, cells as text)
    # No cell can hold a tab, a backslash or NUL (checked on the file's bytes): the fast path
    # then checks rows for line breaks only.
    plain_text: bool = False
    # CSV only: the file's bytes, their encoding and where the data rows start (the byte after
    # the header's line), so that the rows can be read in parallel. None when unknown.
    source: bytes | None = None
    encoding: str = "utf-8"
    data_start: int = 0


def sniff_format(data: bytes) -> str:
    """OLE2 magic → XLS, ``PK`` → XLSX, ``{``/``[`` → Pull Transactions JSON, else CSV."""
    if data.startswith(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"):
        return StatementFormat.G2_XLS
    if data.startswith(b"PK\x03\x04"):
        return StatementFormat.G2_XLSX
    head = data[:64].lstrip(b"\xef\xbb\xbf \t\r\n")
    if head.startswith((b"{", b"[")):
        return StatementFormat.PULL_JSON
    if head.lower().startswith((b"<html", b"<?xml", b"<table", b"<!doctype")):
        raise StatementFormatError(
            "the file is an HTML/XML table (a report saved as .xls?); open it in a "
            "spreadsheet and save it as XLSX or CSV"
        )
    return StatementFormat.G2_CSV


def parse_statement(
    data: bytes,
    *,
    file_name: str = "",
    limits: ParseLimits | None = None,
    progress: Callable[[int], None] | None = None,
) -> ParsedStatement:
    """The file's format, metadata and layout, and its rows as an iterator, read within
    ``limits`` (the settings' by default): a file over one is refused with
    :class:`StatementLimitError`. ``progress`` is told the number of rows read so far."""
    limits = limits or ParseLimits.from_settings()
    deadline = Deadline(limits)
    file_format = sniff_format(data)

    def limited(rows: Iterator[tuple[int, list[str]]], check_cells: bool) -> LimitedRows:
        return LimitedRows(rows, limits, deadline, check_cells=check_cells, progress=progress)

    if file_format == StatementFormat.G2_XLS:
        return _from_grid(file_format, limited(_xls_rows(data, limits), True))
    if file_format == StatementFormat.G2_XLSX:
        return _from_grid(file_format, limited(_xlsx_rows(data, limits), True))
    if file_format == StatementFormat.PULL_JSON:
        parsed = parse_pull_transactions(data)
        parsed.rows = limited(parsed.rows, True)
        return parsed
    # A CSV's cells are its own bytes (bounded by the upload size), read by the fast paths
    # without this iterator: its line count is checked on the bytes.
    lines = data.count(b"\n") + (0 if data.endswith(b"\n") else 1)
    if lines > limits.max_rows:
        raise StatementLimitError(
            f"the statement has {lines} lines, more than {limits.max_rows} rows "
            "(RECONCILIATION_MAX_ROWS): split it"
        )
    parsed = parse_csv(data)
    parsed.rows = limited(parsed.rows, False)
    return parsed


def text_encoding(data: bytes) -> str:
    """UTF-8 with a cp1252 fallback, as the format notes recommend (ASCII checked first: it
    is by far the most common case and the cheapest test)."""
    if data.isascii():
        return "ascii"
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return "cp1252"
    return "utf-8"


def decode_text(data: bytes) -> str:
    data = data.removeprefix(b"\xef\xbb\xbf")
    return data.decode(text_encoding(data), errors="replace")


def parse_csv(data: bytes) -> ParsedStatement:
    stream = io.BytesIO(data)
    if data.startswith(b"\xef\xbb\xbf"):
        stream.seek(3)
    encoding = text_encoding(data[3:] if stream.tell() else data)
    # A streaming decoder, not one big str: csv reads it several times faster.
    text = io.TextIOWrapper(stream, encoding=encoding, errors="replace", newline="")
    reader = csv.reader(text)
    preamble: list[list[str]] = []
    for number, cells in enumerate(reader, 1):
        if _looks_like_header(cells):
            layout = Layout.from_header(cells, pads_short_rows=False)
            metadata = StatementMetadata()
            metadata.read_preamble(preamble)
            return ParsedStatement(
                file_format=StatementFormat.G2_CSV,
                metadata=metadata,
                layout=layout,
                header_row=number,
                rows=enumerate(reader, number + 1),
                plain_text=b"\t" not in data and b"\\" not in data and b"\x00" not in data,
                source=data if reader.line_num == number else None,
                encoding=encoding,
                data_start=_line_end(data, number),
            )
        if number >= HEADER_SEARCH_ROWS:
            break
        preamble.append(cells[:MAX_ROW_CELLS])
    raise _no_header()


def _line_end(data: bytes, lines: int) -> int:
    """The offset just after the ``lines``-th line break (0 when there are fewer)."""
    offset = 0
    for _ in range(lines):
        found = data.find(b"\n", offset)
        if found < 0:
            return 0
        offset = found + 1
    return offset


def _no_header() -> StatementFormatError:
    return StatementFormatError(
        f"no header row with 'Receipt No.' and 'Completion Time' in the first "
        f"{HEADER_SEARCH_ROWS} rows: is this an M-Pesa statement?"
    )


def _looks_like_header(cells: list[str]) -> bool:
    names = {HEADER_ALIASES.get(header_key(c)) for c in cells[:MAX_ROW_CELLS] if c}
    return "receipt" in names and "completed" in names


def _from_grid(file_format: str, rows: Iterator[tuple[int, list[str]]]) -> ParsedStatement:
    preamble: list[list[str]] = []
    for number, cells in rows:
        if _looks_like_header(cells):
            metadata = StatementMetadata()
            metadata.read_preamble(preamble)
            return ParsedStatement(
                file_format=file_format,
                metadata=metadata,
                layout=Layout.from_header(cells),
                header_row=number,
                rows=rows,
            )
        if number >= HEADER_SEARCH_ROWS:
            break
        preamble.append(cells)
    raise _no_header()


def check_zip(data: bytes, limits: ParseLimits) -> None:
    """An XLSX is a ZIP: refused when its members declare more than the decompressed limit,
    when one is compressed more than the ratio limit (a zip bomb: 293 KB of shared strings
    that inflate to gigabytes), or when a member inflates to more than it declared or than the
    limit (each is inflated once, as a stream, and counted, before anything reads it)."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        members = archive.infolist()
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError, EOFError) as exc:
        raise StatementFormatError(f"the XLSX file cannot be opened: {exc}") from None
    limit = limits.max_decompressed_bytes
    declared = sum(member.file_size for member in members)
    if declared > limit:
        raise StatementLimitError(
            f"the XLSX file declares {declared} bytes uncompressed, over the limit of {limit} "
            "(RECONCILIATION_MAX_DECOMPRESSED_BYTES)"
        )
    for member in members:
        ratio = member.file_size / max(member.compress_size, 1)
        if member.file_size > RATIO_CHECK_MIN_BYTES and ratio > limits.max_compression_ratio:
            raise StatementLimitError(
                f"the XLSX part {member.filename[:100]!r} is compressed {ratio:.0f} to 1, over "
                f"the limit of {limits.max_compression_ratio} "
                "(RECONCILIATION_MAX_COMPRESSION_RATIO): a zip bomb?"
            )
        if member.filename.lower().endswith("sharedstrings.xml") and (
            member.file_size > limit // SHARED_STRINGS_SHARE
        ):
            raise StatementLimitError(
                f"the XLSX file's shared strings are {member.file_size} bytes, over "
                f"{limit // SHARED_STRINGS_SHARE} (1/{SHARED_STRINGS_SHARE} of "
                "RECONCILIATION_MAX_DECOMPRESSED_BYTES)"
            )
    total = 0
    try:
        for member in members:
            size = 0
            with archive.open(member) as stream:
                while chunk := stream.read(1 << 20):
                    size += len(chunk)
                    total += len(chunk)
                    if size > member.file_size or total > limit:
                        raise StatementLimitError(
                            f"the XLSX part {member.filename[:100]!r} inflates to more than "
                            f"it declares or than the limit of {limit} bytes "
                            "(RECONCILIATION_MAX_DECOMPRESSED_BYTES)"
                        )
    except StatementLimitError:
        raise
    except Exception as exc:  # zipfile raises many types for a broken member
        raise StatementFormatError(f"the XLSX file is damaged: {exc}") from None


def _xlsx_rows(data: bytes, limits: ParseLimits) -> Iterator[tuple[int, list[str]]]:
    import openpyxl

    check_zip(data, limits)
    try:
        book = openpyxl.load_workbook(io.BytesIO(data), read_only=True, data_only=True)
    except StatementLimitError:
        raise
    except Exception as exc:  # openpyxl raises many types for a broken file
        raise StatementFormatError(f"the XLSX file cannot be opened: {exc}") from None

    def rows() -> Iterator[tuple[int, list[str]]]:
        expected = 1
        try:
            names = book.sheetnames
            sheet = book["transaction"] if "transaction" in names else book[names[0]]
            # The sheet's <dimension> is what the file says of itself (A1:XFD1048576 made
            # openpyxl pad a million rows to 16,384 cells each): only the cells are read.
            sheet.reset_dimensions()
            for row in sheet.iter_rows():
                if not row:
                    # A row the file does not have (openpyxl fills the gaps between the rows
                    # it has): nothing to read, and a million of them cost seconds.
                    expected += 1
                    continue
                number = next((c.row for c in row if getattr(c, "row", None)), expected)
                expected = number + 1
                if len(row) > limits.max_columns:
                    row = _xlsx_narrowed(number, row, limits)
                yield number, [_xlsx_cell_text(c, number, limits) for c in row]
        except StatementLimitError:
            raise
        except Exception as exc:  # a damaged sheet is found only while it is read
            raise StatementFormatError(
                f"the XLSX file is damaged (after row {expected - 1}): {exc}"
            ) from None
        finally:
            book.close()

    return rows()


def _xlsx_narrowed(number: int, row: tuple[Any, ...], limits: ParseLimits) -> tuple[Any, ...]:
    """A row whose cells past the column limit are all empty (formatting), without them; a
    value past the limit is refused."""
    for column, cell in enumerate(row[limits.max_columns :], limits.max_columns + 1):
        if getattr(cell, "value", None) not in (None, ""):
            raise StatementLimitError(
                f"row {number} has a value in column {column}, over the limit of "
                f"{limits.max_columns} columns (RECONCILIATION_MAX_COLUMNS)"
            )
    return row[: limits.max_columns]


_TIME_CODES = re.compile(r"[hs]|am/pm", re.IGNORECASE)


def _without_literals(number_format: str) -> str:
    """A number format without its quoted text, escaped characters and [colour]/[locale]
    parts, which are not codes."""
    return re.sub(r'"[^"]*"|\\.|\[[^]]*\]', "", number_format)


def _xlsx_cell_text(cell: Any, number: int, limits: ParseLimits) -> str:
    """A date cell whose format shows no time and whose value has none is a date alone
    (``YYYY-MM-DD``), not midnight: as a completion time it is then refused. Text over the
    cell limit is refused before anything is made of it."""
    value = cell.value
    if isinstance(value, str) and len(value) > limits.max_cell_chars:
        raise_long_cell(number, getattr(cell, "column", 0) or 0, len(value), limits)
    if (
        isinstance(value, dt.datetime)
        and getattr(cell, "is_date", False)
        and value.time() == dt.time()
        and not _TIME_CODES.search(_without_literals(str(cell.number_format or "")))
    ):
        return value.strftime("%Y-%m-%d")
    return cell_text(value)


def _xls_rows(data: bytes, limits: ParseLimits) -> Iterator[tuple[int, list[str]]]:
    import xlrd

    def open_book(formatting_info: bool) -> Any:
        # xlrd's warnings about a damaged file go to its log, not to our output. Ragged
        # rows: a row is as long as its cells, not padded to the widest (or to a merged
        # range a damaged file declares).
        return xlrd.open_workbook(
            file_contents=data,
            on_demand=True,
            logfile=io.StringIO(),
            formatting_info=formatting_info,
            ragged_rows=True,
        )

    def pick_sheet(book: Any) -> Any:
        # With on_demand, this is where the sheet is parsed.
        names = book.sheet_names()
        return (
            book.sheet_by_name("transaction") if "transaction" in names else book.sheet_by_index(0)
        )

    try:
        # With the cells' number formats, to tell a date alone from a date and time. Reading
        # them runs more of xlrd on the file: if that fails, the file is read without them.
        book = open_book(True)
        sheet = pick_sheet(book)
    except StatementLimitError:
        raise
    except Exception:  # xlrd raises many types for a broken file or sheet
        try:
            book = open_book(False)
        except StatementLimitError:
            raise
        except Exception as exc:
            raise StatementFormatError(f"the XLS file cannot be opened: {exc}") from None
        try:
            sheet = pick_sheet(book)
        except StatementLimitError:
            raise
        except Exception as exc:
            raise StatementFormatError(f"the XLS file is damaged: {exc!r}") from None
    if sheet.nrows > limits.max_rows:
        raise StatementLimitError(
            f"the statement has {sheet.nrows} rows, more than {limits.max_rows} "
            "(RECONCILIATION_MAX_ROWS): split it"
        )

    def date_alone(cell: Any) -> bool:
        """The cell's number format shows no time (known only with formatting info)."""
        try:
            shown = book.format_map[book.xf_list[cell.xf_index].format_key].format_str
        except (AttributeError, IndexError, KeyError, TypeError):
            return False
        return not _TIME_CODES.search(_without_literals(shown))

    def text(cell: Any) -> str:
        if cell.ctype == xlrd.XL_CELL_DATE:
            try:
                moment = xlrd.xldate.xldate_as_datetime(cell.value, book.datemode)
            except (ValueError, OverflowError, xlrd.xldate.XLDateError):
                return cell_text(cell.value)
            # A date alone (midnight, shown without a time) is not midnight: as a completion
            # time it is then refused. A time of day hidden by the format is still a time.
            if moment.time() == dt.time() and date_alone(cell):
                return moment.strftime("%Y-%m-%d")
            return cell_text(moment)
        if cell.ctype == xlrd.XL_CELL_BOOLEAN:
            return "true" if cell.value else "false"
        if cell.ctype == xlrd.XL_CELL_ERROR:
            return "#ERROR"
        return cell_text(cell.value)

    def rows() -> Iterator[tuple[int, list[str]]]:
        for index in range(sheet.nrows):
            if not sheet.row_len(index):
                continue  # no cells (a damaged file's merged range may declare 65,536 rows)
            try:
                row = sheet.row(index)
                if len(row) > limits.max_columns:
                    raise StatementLimitError(
                        f"row {index + 1} has {len(row)} columns, over the limit of "
                        f"{limits.max_columns} (RECONCILIATION_MAX_COLUMNS)"
                    )
                for column, cell in enumerate(row, 1):
                    if isinstance(cell.value, str) and len(cell.value) > limits.max_cell_chars:
                        raise_long_cell(index + 1, column, len(cell.value), limits)
                cells = [text(c) for c in row]
            except StatementLimitError:
                raise
            except Exception as exc:
                raise StatementFormatError(
                    f"the XLS file is damaged (row {index + 1}): {exc!r}"
                ) from None
            yield index + 1, cells

    return rows()


# --- Daraja Pull Transactions --------------------------------------------------------------------

PULL_HEADER = [
    "Receipt No.",
    "Completion Time",
    "Details",
    "Paid In",
    "Reason Type",
    "Other Party Info",
    "A/C No.",
]
# Not a field of a line: the key of the column in which a format's reader says why a row
# cannot be one (rows with such a column are all read by RowReader).
PROBLEM = "problem"


def _pull_layout() -> Layout:
    layout = Layout.from_header(PULL_HEADER)
    return replace(
        layout,
        header=(*layout.header, "(problem)"),
        columns={**layout.columns, PROBLEM: layout.width},
    )


def parse_pull_transactions(data: bytes) -> ParsedStatement:
    """A Pull Transactions query response (``{"Response": [[{...}, ...]]}``; key case as it
    comes), a list of such responses (several pages), or the bare array of arrays. Each
    transaction is one paid-in line; ``trxDate`` without a zone is EAT, with ``Z`` it is UTC.
    ResponseCode 1001 (no records) is an empty statement; an error response, or JSON of any
    other shape, is refused: it holds no transactions to reconcile."""
    try:
        body = json.loads(decode_text(data), parse_float=_json_number, parse_int=_json_number)
    except RecursionError:
        raise StatementFormatError("the JSON is nested too deeply to be a response") from None
    except ValueError as exc:
        raise StatementFormatError(f"the file is not valid JSON: {exc}") from None
    if not _json_depth_ok(body):
        raise StatementFormatError(
            f"the JSON is nested too deeply to be a response (over {MAX_JSON_DEPTH} levels)"
        )
    if isinstance(body, dict) and set(body) == {"status", "response"}:
        # An HTTP exchange as captured (status and body), as in the format notes' samples.
        body = body["response"]
    metadata = StatementMetadata()
    if isinstance(body, list) and body and all(isinstance(item, list) for item in body):
        pages: list[Any] = [{"Response": body}]  # the bare array of arrays
    elif isinstance(body, list) and body and all(isinstance(item, dict) for item in body):
        pages = body
    elif isinstance(body, dict) and body:
        pages = [body]
    else:
        raise StatementFormatError(
            "the JSON is not a Pull Transactions response (an object with ResponseCode and "
            "Response, a list of them, or an array of arrays of transactions)"
        )
    transactions: list[Any] = []
    for number, page in enumerate(pages, 1):
        transactions.extend(_pull_page(page, number, len(pages), metadata))
    return ParsedStatement(
        file_format=StatementFormat.PULL_JSON,
        metadata=metadata,
        layout=_pull_layout(),
        header_row=0,
        rows=_pull_rows(transactions),
    )


def _pull_page(
    page: dict[str, Any], number: int, pages: int, metadata: StatementMetadata
) -> list[Any]:
    """One response's transactions (keys matched whatever their case or spaces)."""
    where = f"response {number} of {pages}: " if pages > 1 else ""
    keys = {str(key).replace(" ", "").lower(): key for key in page}
    if "errorcode" in keys:
        code = _json_text(page[keys["errorcode"]])
        message = _json_text(page.get(keys.get("errormessage", ""), ""))
        raise StatementFormatError(
            f"{where}a Daraja error response, not transactions: {code} {message}".strip()
        )
    if "response" not in keys and "responsecode" not in keys:
        raise StatementFormatError(
            f"{where}not a Pull Transactions response: it has neither ResponseCode nor "
            f"Response (keys: {', '.join(sorted(map(str, page)))[:120]})"
        )
    code = _json_text(page[keys["responsecode"]]) if "responsecode" in keys else "1000"
    if "responserefid" in keys:
        metadata.labels.setdefault("ResponseRefID", []).append(
            _json_text(page[keys["responserefid"]])
        )
    if code not in ("1000", "1001", "0"):
        message = _json_text(page.get(keys.get("responsemessage", ""), ""))
        raise StatementFormatError(
            f"{where}the Pull Transactions response reports an error: {code} {message}".strip()
        )
    if "response" not in keys:
        if code == "1001":  # no records
            return []
        raise StatementFormatError(f"{where}the response has no 'Response' list")
    response = page[keys["response"]]
    if isinstance(response, str):  # "[[]]" sent as a string when there is nothing
        try:
            response = json.loads(response, parse_float=_json_number, parse_int=_json_number)
        except (ValueError, RecursionError):
            raise StatementFormatError(f"{where}'Response' is not a list of transactions") from None
    if not isinstance(response, list):
        raise StatementFormatError(f"{where}'Response' is not a list of transactions")
    transactions: list[Any] = []
    for item in response:
        transactions.extend(item if isinstance(item, list) else [item])
    return transactions


def _pull_rows(transactions: Iterable[Any]) -> Iterator[tuple[int, list[str]]]:
    """The transactions as rows of :data:`PULL_HEADER`, plus the problem column."""
    for number, item in enumerate(transactions, 1):
        if not isinstance(item, dict):
            text = _json_text(item)[:80]
            problem = f"the transaction is not a JSON object: {text}"
            yield number, ["", "", "", "", "", "", "", problem]
            continue
        kind = _json_text(item.get("transactiontype"))
        msisdn = _json_text(item.get("msisdn"))
        sender = _json_text(item.get("sender"))
        party = f"{msisdn} - {sender}" if sender else msisdn
        amount = item.get("amount")
        # A float never reaches here (parse_float=Decimal); a bool is not an amount.
        amount_text = "true" if amount is True else _json_text(amount)
        problem = ""
        try:
            negative = (parse_amount(amount_text) or 0) < 0  # -168, (168.00), KES -168
        except ValueProblem:
            negative = False  # not an amount: the row reader rejects it, saying so
        if decimal_out_of_range(amount):
            problem = (
                f"the amount {_cut(str(amount), 80)} has an exponent out of range (over "
                f"{MAX_DECIMAL_EXPONENT}): not an amount"
            )
        elif negative:
            # Every Pull transaction is money in; what a negative one would be (a reversal?)
            # is not documented, so it is not read as a payment of the opposite sign.
            problem = (
                f"the amount {amount_text.strip()!r} is negative: a Pull transaction is money "
                "paid in, and a negative one has no documented meaning"
            )
        yield (
            number,
            [
                _json_text(item.get("transactionId")),
                _json_text(item.get("trxDate")),
                f"{kind} from {party}".strip() if kind else party,
                amount_text,
                kind,
                party,
                _json_text(item.get("billreference")),
                problem,
            ],
        )


def _json_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, Decimal):
        return decimal_text(value)
    if isinstance(value, (dict, list)):
        text = json.dumps(value, default=str)
    else:
        text = str(value)
    return text.replace("\x00", "")  # as from every other format's cells


# Far deeper than a response (object, Response, page, transaction, value) ever is; checked
# before any value is turned back into text, which recurses.
MAX_JSON_DEPTH = 32


def _json_depth_ok(body: Any) -> bool:
    stack = [(body, 1)]
    while stack:
        value, depth = stack.pop()
        if depth > MAX_JSON_DEPTH:
            return False
        if isinstance(value, dict):
            stack.extend((item, depth + 1) for item in value.values())
        elif isinstance(value, list):
            stack.extend((item, depth + 1) for item in value)
    return True
