"""A statement read into its metadata, layout and rows, and the header search shared by the
formats."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from .limits import HEADER_SEARCH_ROWS, MAX_ROW_CELLS, StatementFormatError
from .rows import HEADER_ALIASES, Layout, header_key
from .values import ValueProblem, eat_to_utc, parse_amount, parse_statement_time

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


def no_header() -> StatementFormatError:
    return StatementFormatError(
        f"no header row with 'Receipt No.' and 'Completion Time' in the first "
        f"{HEADER_SEARCH_ROWS} rows: is this an M-Pesa statement?"
    )


def looks_like_header(cells: list[str]) -> bool:
    names = {HEADER_ALIASES.get(header_key(c)) for c in cells[:MAX_ROW_CELLS] if c}
    return "receipt" in names and "completed" in names


def from_grid(file_format: str, rows: Iterator[tuple[int, list[str]]]) -> ParsedStatement:
    preamble: list[list[str]] = []
    for number, cells in rows:
        if looks_like_header(cells):
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
    raise no_header()
