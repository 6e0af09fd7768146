"""Statement columns and rows: the header map (:class:`Layout`), the one set of rules that
turns a row's text into canonical values or a reason to reject it (:class:`RowReader`), and
the shape check of the fast paths (:class:`FastKey`)."""

from __future__ import annotations

import csv
import datetime as dt
import re
from dataclasses import dataclass, field
from decimal import Decimal

from .limits import StatementFormatError
from .values import RECEIPT, TOTAL_ROW, ValueProblem, parse_amount, parse_statement_time

# A statement cell may be longer than the csv module's default limit (131,072 characters):
# it is data like any other, and the Arrow reader, which has no such limit, must read the
# same rows. (Process-wide; the upload size bounds a cell anyway.)
csv.field_size_limit(2**31 - 1)


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
# first; then the aliases other exports of the same platform use (``docs/statements.md``).
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


# The column a Pull Transactions row's problem is carried in (a row read as a reject).
PROBLEM = "problem"


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
        if TOTAL_ROW.fullmatch(first):
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
        elif not RECEIPT.fullmatch(receipt):
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
