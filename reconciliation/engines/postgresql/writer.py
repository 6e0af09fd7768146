"""Rows into COPY text for a statement's line table, row by row: the rows in the portal's own
form written straight, the others canonicalised or rejected by
:class:`~reconciliation.formats.rows.RowReader`."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from operator import itemgetter
from typing import Any

from ...formats.limits import ParseLimits, reject_record
from ...formats.rows import AMOUNT_FIELDS, PROBLEM, SHAPE, TEXT_FIELDS, FastKey, Layout, RowReader
from ...formats.values import copy_escape

COPY_BATCH = 20_000
# The fields of a line in the order COPY receives them (after the id and the row number).
LINE_FIELDS = (
    "receipt",
    "completed",
    "paid_in",
    "withdrawn",
    "balance",
    "status",
    "reason_type",
    "details",
    "other_party",
    "linked",
    "account",
)
LINE_COPY_COLUMNS = (
    "id, line_no, receipt_number, completed_at, paid_in, withdrawn, balance, "
    "transaction_status, reason_type, details, other_party, linked_transaction_id, "
    "account_reference"
)


class LineWriter:
    """Turns rows into COPY lines for :data:`LINE_COPY_COLUMNS`; remembers rejects, skipped
    rows and the row numbers of paid-in rows whose receipt repeats."""

    def __init__(self, layout: Layout, *, base: int, plain_text: bool) -> None:
        self.layout = layout
        self.reader = RowReader(layout)
        self.base = base
        self.plain_text = plain_text
        self.width = layout.width
        columns = layout.columns
        self.receipt = columns["receipt"]
        # Fields the file lacks read from two pad cells appended to the row: "" and NULL.
        self.pad = any(name not in columns for name in LINE_FIELDS)
        text_pad, null_pad = self.width, self.width + 1
        self.paid = columns.get("paid_in", null_pad)
        self.withdrawn = columns.get("withdrawn", null_pad)
        self.balance = columns.get("balance", null_pad)
        self.account = columns.get("account", text_pad)
        self.text = [columns[name] for name in TEXT_FIELDS if name in columns]
        order = [
            columns.get(name, null_pad if name in AMOUNT_FIELDS else text_pad)
            for name in LINE_FIELDS
        ]
        self.fields = itemgetter(*order)
        self.fast_key = FastKey(layout)
        self.key = itemgetter(*self.fast_key.indexes)
        self.rejects: list[tuple[int, str, list[str]]] = []
        self.reject_max_chars = ParseLimits.from_settings().reject_max_chars
        self.skipped: Counter[str] = Counter()
        self.first_seen: dict[str, int] = {}
        self.repeats: list[int] = []

    def write(
        self, copy: Any, rows: Iterable[tuple[int, list[str]]], *, check_every_row: bool
    ) -> int:
        # A format whose reader marks problem rows has every row checked (Pull JSON: small).
        fast = not check_every_row and PROBLEM not in self.layout.columns
        width, base, pad, plain = self.width, self.base, self.pad, self.plain_text
        paid_at, withdrawn_at, balance_at, account_at = (
            self.paid,
            self.withdrawn,
            self.balance,
            self.account,
        )
        key, fields = self.key, self.fields
        fast_key = self.fast_key
        shape_ok, date_ok = fast_key.shape_ok, fast_key.date_ok
        shapes, dates = fast_key.shapes, fast_key.dates
        receipt_at, time_at = self.receipt, self.layout.columns["completed"]
        first_seen = self.first_seen.setdefault
        repeats = self.repeats
        buffer: list[str] = []
        append = buffer.append
        sent = 0
        for number, cells in rows:
            if fast and len(cells) == width:
                if pad:
                    cells.append("")
                    cells.append("\\N")
                paid = cells[paid_at]
                withdrawn = cells[withdrawn_at]
                paid_set = paid != "" and paid != "\\N"
                # Exactly one of Paid In / Withdrawn filled in (the NULL pad counts as empty).
                if paid_set != (withdrawn != "" and withdrawn != "\\N"):
                    shape = "\t".join(key(cells)).encode().translate(SHAPE)
                    moment = cells[time_at]
                    fits = (
                        (shapes.get(shape) or shape_ok(shape))
                        and cells[receipt_at] != "TOTALS"
                        and (dates.get(moment[:10]) or date_ok(moment[:10]))
                        # The shape says these are digits: compare them as text.
                        and moment[11:13] < "24"
                        and moment[14] < "6"
                        and (len(moment) == 16 or moment[17] < "6")
                        and (
                            plain
                            or not any("\\" in c or "\t" in c or "\x00" in c for c in cells[:width])
                        )
                    )
                else:
                    fits = False
                if fits:
                    balance = cells[balance_at]
                    account = cells[account_at]
                    if paid_set:
                        if "," in paid:
                            cells[paid_at] = paid.replace(",", "")
                        cells[withdrawn_at] = "\\N"
                    else:
                        if "," in withdrawn:
                            cells[withdrawn_at] = withdrawn.replace(",", "")
                        cells[paid_at] = "\\N"
                    if balance == "":
                        cells[balance_at] = "\\N"
                    elif "," in balance:
                        cells[balance_at] = balance.replace(",", "")
                    if account[:1] == " " or account[-1:] == " ":
                        cells[account_at] = account.strip(" ")
                    line = "\t".join(fields(cells))
                    if "\n" not in line and "\r" not in line:
                        if paid_set:
                            first = first_seen(cells[receipt_at], number)
                            if first != number:
                                repeats.append(first)
                                repeats.append(number)
                        append(f"{base + number}\t{number}\t{line}\n")
                        if len(buffer) >= COPY_BATCH:
                            copy.write("".join(buffer))
                            sent += len(buffer)
                            buffer.clear()
                        continue
                    # A line break inside a cell (rare): undo, and read the row the slow way.
                    cells[paid_at], cells[withdrawn_at] = paid, withdrawn
                    cells[balance_at], cells[account_at] = balance, account
                if pad:
                    del cells[width:]
            checked = self.slow(number, cells)
            if checked is not None:
                append(checked)
        if buffer:
            copy.write("".join(buffer))
            sent += len(buffer)
        return sent

    def slow(self, number: int, cells: list[str]) -> str | None:
        outcome = self.reader.read(cells)
        if outcome.kind == "skip":
            self.skipped[outcome.reason] += 1
            return None
        if outcome.kind == "reject":
            reason, kept = reject_record(outcome.reason, cells, self.reject_max_chars)
            self.rejects.append((number, reason, kept))
            return None
        out = outcome.cells
        for index in self.text:
            out[index] = copy_escape(out[index])
        out.append("")
        out.append("\\N")
        for index in (self.paid, self.withdrawn, self.balance):
            if out[index] == "":
                out[index] = "\\N"
        out[self.account] = out[self.account].strip(" ")
        if out[self.paid] != "\\N":
            first = self.first_seen.setdefault(out[self.receipt], number)
            if first != number:
                self.repeats.append(first)
                self.repeats.append(number)
        return f"{self.base + number}\t{number}\t" + "\t".join(self.fields(out)) + "\n"
