# ruff: noqa: S608 - the SQL text is built from table names derived from integer ids and from
# this module's constants; every value from a file or a request is a bound parameter.
"""The PostgreSQL engine: set-based, a fixed number of statements whatever the statement's size.

1. **Load.** The rows are COPYed straight into a new table, the statement's future partition
   of ``reconciliation_statementline`` (logged, no index yet). A UTF-8 CSV is read by Arrow's
   multi-threaded reader a block at a time (:func:`copy_arrow`): the rows in the portal's own
   form are checked and written as COPY text by Arrow, the others are canonicalised or
   rejected by :class:`~reconciliation.parsers.RowReader`. A file Arrow could split
   differently from Python's csv module is read row by row (:class:`LineWriter`; a large one
   by two forked processes). PostgreSQL parses the times (``DMY``, in the Africa/Nairobi
   zone) and the amounts. The reads note the rows whose receipt repeats.
2. **Classify and match**: one ``CREATE TABLE AS`` classifies every line and LEFT-joins the
   payments on the receipt (a hash join, not a query per line, run by two processes) into the
   statement's future partition of ``reconciliation_linematch``; an anti join of the period's
   SUCCESS payments with it finds the ones no receipt claimed, and a small join the claimed
   total outside the period.
3. **Exceptions** (repeated receipts, lines without a receipt match, exact breaks: a few per
   thousand lines) in small tables: repeats ranked, the tolerance pass against payments that
   have no receipt, the few changed matches updated by id.
4. **Indexes built in one go** (far cheaper than a million index insertions), among them the
   unique one that lets one line of a statement only claim a payment; the tables are attached
   as the statement's partitions. Breaks and the summary come from the small tables, one
   aggregate over the matches and one over the period's payments.

Everything happens in the caller's transaction: a failure leaves nothing behind. Every rule
mirrors :mod:`reconciliation.matching`; the property test holds the two equal.
"""

from __future__ import annotations

import contextlib
import csv
import datetime as dt
import io
import itertools
import json
import multiprocessing
import multiprocessing.connection
import os
import pickle
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from operator import itemgetter
from typing import Any

import psycopg
from django.conf import settings
from django.db import IntegrityError, connection, transaction
from psycopg.copy import QueuedLibpqWriter

from . import matching
from .engine import ZERO, ClassTotals, EngineReport, Timer, statement_period
from .models import BREAK_CLASSES, LINE_ID_FACTOR, ReconciliationRun, ResultClass, Statement
from .parsers import (
    AMOUNT_FIELDS,
    PROBLEM,
    SHAPE,
    TEXT_FIELDS,
    FastKey,
    Layout,
    ParsedStatement,
    ParseLimits,
    RowReader,
    copy_escape,
    reject_record,
)

R = ResultClass
COPY_BATCH = 20_000
# Files with at least this many bytes of rows are read by parallel processes when possible.
PARALLEL_MIN_BYTES = 8 * 1024 * 1024
# A payment's M-Pesa completion is at most this long after we created it (STK prompts expire in
# minutes): lets the time-bounded queries use the (status, created_at) index.
CREATION_SLACK = matching.CREATION_SLACK
LINE_TABLE = "reconciliation_statementline"
MATCH_TABLE = "reconciliation_linematch"
PAYMENT_TABLE = "payments_payment"
BREAK_TABLE = "reconciliation_break"
_UPPER = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
_LOWER = "abcdefghijklmnopqrstuvwxyz"
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
BREAK_COLUMNS = (
    "run_id, kind, line_id, payment_id, statement_amount, our_amount, bridge_amount, "
    "candidates, auto_resolvable, status, resolution, resolved_by, resolution_reason, created_at"
)
PAYMENT_RESULTS = (R.MATCHED, R.AMOUNT_MISMATCH, R.NOT_SUCCESS, R.UNKNOWN_PAYMENT)
# Results the main insert may give provisionally, or that make a break: the exceptions.
EXCEPTIONS = (R.AMOUNT_MISMATCH, R.NOT_SUCCESS, R.UNKNOWN_PAYMENT, R.DUPLICATE)


def partition_names(statement_id: int) -> tuple[str, str]:
    sid = int(statement_id)
    return f"{LINE_TABLE}_p{sid}", f"{MATCH_TABLE}_p{sid}"


def partitions_create_attached(statement_id: int) -> None:
    """Empty, attached partitions for ``statement_id``, for inserts through the ORM (the
    Python engine on PostgreSQL)."""
    lines, matches = partition_names(statement_id)
    with connection.cursor() as cursor:
        for table, parent in ((lines, LINE_TABLE), (matches, MATCH_TABLE)):
            cursor.execute(
                f"CREATE TABLE {table} PARTITION OF {parent} FOR VALUES IN ({int(statement_id)})"
            )


def _literals(values: Iterable[str]) -> str:
    return ", ".join("'" + v.replace("'", "''") + "'" for v in values)


def _like_any(column: str, words: Iterable[str]) -> str:
    # Doubled %: these queries are sent with parameters (pyformat).
    return " OR ".join(f"{column} LIKE '%%{w}%%'" for w in words)


# --- Loading -----------------------------------------------------------------------------------


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


class _PipeSink:
    """A COPY stand-in for a worker process: batches of COPY text sent to the parent."""

    def __init__(self, conn: Any) -> None:
        self.conn = conn

    def write(self, text: str) -> None:
        self.conn.send_bytes(b"D" + text.encode())


def _parse_chunk(
    conn: Any,
    data: bytes,
    begin: int,
    end: int,
    first_row: int,
    encoding: str,
    layout: Layout,
    base: int,
    plain_text: bool,
) -> None:
    """In a worker process: read rows ``begin:end`` of the file and send their COPY text,
    then what was rejected, skipped and repeated, and whether every record was one line."""
    try:
        stream = io.TextIOWrapper(
            io.BytesIO(data[begin:end]), encoding=encoding, errors="replace", newline=""
        )
        reader = csv.reader(stream)
        writer = LineWriter(layout, base=base, plain_text=plain_text)
        counter = _Counting(enumerate(reader, first_row))
        writer.write(_PipeSink(conn), counter, check_every_row=False)
        # The rows are numbered by the line breaks (\n) before the chunk: every record must
        # be one such line. Not so for a record spanning lines, nor for a lone carriage
        # return, which ends a record for the csv module but is no line break here.
        lines = data.count(b"\n", begin, end) + (0 if data[end - 1 : end] == b"\n" else 1)
        result = {
            "rejects": writer.rejects,
            "skipped": writer.skipped,
            "repeats": writer.repeats,
            "one_line_records": counter.count == reader.line_num == lines,
        }
        conn.send_bytes(b"R" + pickle.dumps(result))
    except BaseException as exc:  # reported to the parent, which raises
        conn.send_bytes(b"E" + repr(exc).encode())
    finally:
        conn.close()


class _Counting:
    def __init__(self, rows: Iterable[tuple[int, list[str]]]) -> None:
        self.rows = iter(rows)
        self.count = 0

    def __iter__(self) -> _Counting:
        return self

    def __next__(self) -> tuple[int, list[str]]:
        row = next(self.rows)
        self.count += 1
        return row


class SerialRead(Exception):
    """The parallel read cannot be trusted for this file (a record spans lines)."""


def parse_workers() -> int:
    """Processes that read a large CSV in parallel (RECONCILIATION_PARSE_WORKERS; 1 reads in
    this process). Never from a daemonic process (a Celery prefork child) nor without fork."""
    configured = getattr(settings, "RECONCILIATION_PARSE_WORKERS", None)
    workers = int(configured) if configured is not None else min(2, os.cpu_count() or 1)
    if workers < 2 or multiprocessing.current_process().daemon:
        return 1
    if "fork" not in multiprocessing.get_all_start_methods():
        return 1
    return workers


def chunks(data: bytes, start: int, parts: int) -> list[tuple[int, int, int]]:
    """``parts`` byte ranges of the data rows, each ending at a line break outside quotes,
    with the number of line breaks before each (the row offset, if records are lines)."""
    bounds = [start]
    for part in range(1, parts):
        cut = data.find(b"\n", start + (len(data) - start) * part // parts)
        while cut >= 0 and data.count(b'"', bounds[-1], cut) % 2:
            cut = data.find(b"\n", cut + 1)
        if cut < 0 or cut + 1 <= bounds[-1]:
            break
        bounds.append(cut + 1)
    bounds.append(len(data))
    out = []
    rows_before = 0
    for begin, end in itertools.pairwise(bounds):
        if end > begin:
            out.append((begin, end, rows_before))
        rows_before += data.count(b"\n", begin, end)
    return out


def copy_parallel(copy: Any, parsed: ParsedStatement, writer: LineWriter, workers: int) -> None:
    """Read the CSV's rows in ``workers`` forked processes; this process forwards their COPY
    text as it comes (COPY takes rows in any order: ids and row numbers are in the rows)."""
    assert parsed.source is not None
    data = parsed.source
    first_row = parsed.header_row + 1
    context = multiprocessing.get_context("fork")
    connections = []
    processes = []
    for begin, end, rows_before in chunks(data, parsed.data_start, workers):
        receiver, sender = context.Pipe(duplex=False)
        process = context.Process(
            target=_parse_chunk,
            args=(
                sender,
                data,
                begin,
                end,
                first_row + rows_before,
                parsed.encoding,
                parsed.layout,
                writer.base,
                parsed.plain_text,
            ),
            daemon=True,
        )
        process.start()
        sender.close()
        connections.append(receiver)
        processes.append(process)
    results = []
    failure = None
    try:
        waiting: list[Any] = list(connections)
        while waiting:
            for ready in multiprocessing.connection.wait(waiting):
                try:
                    message = ready.recv_bytes()  # type: ignore[union-attr]
                except EOFError:
                    waiting.remove(ready)
                    failure = failure or "a reader process ended without its result"
                    continue
                kind, body = message[:1], memoryview(message)[1:]
                if kind == b"D":
                    copy.write(body)
                elif kind == b"R":
                    results.append(pickle.loads(body))  # noqa: S301 - our own child process
                    waiting.remove(ready)
                else:
                    failure = bytes(body).decode()
                    waiting.remove(ready)
    finally:
        for process in processes:
            process.join(timeout=30)
    if failure is not None:
        raise RuntimeError(f"reading the statement in parallel failed: {failure}")
    if not all(result["one_line_records"] for result in results):
        raise SerialRead
    for result in results:
        writer.rejects.extend(result["rejects"])
        writer.skipped.update(result["skipped"])
        writer.repeats.extend(result["repeats"])
    writer.rejects.sort(key=lambda reject: reject[0])


# --- Loading a CSV with Arrow ---------------------------------------------------------------------

ARROW_BLOCK_BYTES = 4 * 1024 * 1024
# The fast path's rules (FastKey's shapes, LineWriter.write's checks) as RE2 patterns.
ARROW_RECEIPT = r"^[A-Z0-9]{6,20}$"
ARROW_TIME = r"^\d\d-\d\d-\d{4} (?:[01]\d|2[0-3]):[0-5]\d(?::[0-5]\d)?$"
ARROW_AMOUNT = r"^(?:-?(?:\d{1,3}(?:,\d{3}){1,3}|\d{1,12})(?:\.\d{1,2})?)?$"


class ArrowUnsuitable(Exception):
    """This CSV is read by Python's csv module instead: Arrow's reader might not split it
    into the same rows (line breaks inside cells, blank lines, rows of other widths) or
    decode it the same way."""


def arrow_suitable(parsed: ParsedStatement) -> bool:
    """Worth trying: a UTF-8 (or ASCII) CSV without tabs, backslashes or NULs, whose carriage
    returns all end lines."""
    data = parsed.source
    if data is None or parsed.data_start <= 0 or not parsed.plain_text:
        return False
    if parsed.encoding not in ("ascii", "utf-8"):
        return False
    start = parsed.data_start
    return data.count(b"\r", start) == data.count(b"\r\n", start)


def copy_arrow(copy: Any, parsed: ParsedStatement, writer: LineWriter) -> None:
    """Read the CSV's rows with Arrow's multi-threaded reader and send them to COPY.

    Each block of rows is checked by the fast path's rules at once; the rows that pass are
    written as COPY text by Arrow, the others go through ``writer`` row by row (canonicalised,
    rejected or skipped exactly as in the other reads). Raises :class:`ArrowUnsuitable` when
    the file cannot be read this way; whatever was sent must then be rolled back."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.csv as pa_csv

    assert parsed.source is not None
    data, start = parsed.source, parsed.data_start
    layout = writer.layout
    width = layout.width
    end = data.find(b"\n", start)
    first_line = data[start : end if end >= 0 else len(data)].decode(parsed.encoding)
    count = len(next(csv.reader([first_line]), []))
    if count != width:
        # Rows wider than the header (empty cells past the table) are canonicalised, and
        # narrower ones rejected, by the row-by-row read.
        raise ArrowUnsuitable
    names = [f"c{index}" for index in range(count)]
    try:
        reader = pa_csv.open_csv(
            pa.BufferReader(pa.py_buffer(memoryview(data)[start:])),
            read_options=pa_csv.ReadOptions(
                column_names=names, block_size=ARROW_BLOCK_BYTES, encoding="utf8"
            ),
            # Quoted line breaks are followed when Arrow cuts the file into blocks: without
            # this, a line break in a quoted cell just after a block's end started a new row
            # (text shaped like a row after it read as one). Such a record then makes fewer
            # rows than lines, and the file goes to the row-by-row read.
            parse_options=pa_csv.ParseOptions(newlines_in_values=True, ignore_empty_lines=False),
            convert_options=pa_csv.ConvertOptions(
                column_types=dict.fromkeys(names, pa.string()),
                strings_can_be_null=False,
                quoted_strings_can_be_null=False,
            ),
        )
    except pa.ArrowInvalid as exc:
        raise ArrowUnsuitable from exc
    columns = layout.columns
    fast_key = writer.fast_key
    write_options = pa_csv.WriteOptions(include_header=False, quoting_style="none", delimiter="\t")
    number = parsed.header_row + 1
    paid_receipts: list[Any] = []
    paid_numbers: list[Any] = []
    null = pa.scalar("\\N")
    counting = pa.array([], pa.int64())

    def amount_text(values: Any) -> Any:
        plain = pc.replace_substring(values, ",", "")
        return pc.if_else(pc.equal(plain, ""), null, plain)

    def copy_text(batch: Any, numbers: Any, ok: Any) -> tuple[Any, Any, Any] | None:
        """The rows ``ok`` selects, their numbers and their COPY text; None if a cell
        cannot be written unquoted."""
        fast = batch.filter(ok)
        rows = fast.num_rows
        out = []
        for name in LINE_FIELDS:
            if name not in columns:
                pad = "\\N" if name in AMOUNT_FIELDS else ""
                out.append(pa.nulls(rows, pa.string()).fill_null(pad))
            elif name in AMOUNT_FIELDS:
                out.append(amount_text(fast.column(columns[name])))
            elif name == "account":
                out.append(pc.utf8_trim(fast.column(columns[name]), " "))
            else:
                out.append(fast.column(columns[name]))
        fast_numbers = pc.filter(numbers, ok)
        table = pa.RecordBatch.from_arrays(
            [pc.add(fast_numbers, writer.base), fast_numbers, *out],
            names=["id", "line_no", *LINE_FIELDS],
        )
        sink = pa.BufferOutputStream()
        try:
            pa_csv.write_csv(table, sink, write_options=write_options)
        except pa.ArrowInvalid:
            return None
        return fast, fast_numbers, sink.getvalue()

    while True:
        try:
            batch = reader.read_next_batch()
        except StopIteration:
            break
        except pa.ArrowInvalid as exc:
            raise ArrowUnsuitable from exc
        rows = batch.num_rows
        if len(counting) < rows:
            counting = pa.array(range(2 * rows), pa.int64())
        numbers = pc.add(counting.slice(0, rows), number)
        number += rows
        receipt = batch.column(columns["receipt"])
        moment = batch.column(columns["completed"])
        ok = pc.and_(
            pc.match_substring_regex(receipt, ARROW_RECEIPT), pc.not_equal(receipt, "TOTALS")
        )
        ok = pc.and_(ok, pc.match_substring_regex(moment, ARROW_TIME))
        dates = pc.utf8_slice_codeunits(moment, 0, 10)
        valid = [
            day
            for day in pc.unique(pc.filter(dates, ok)).to_pylist()
            if fast_key.dates.get(day) or fast_key.date_ok(day)
        ]
        ok = pc.and_(ok, pc.is_in(dates, value_set=pa.array(valid, pa.string())))
        amounts = {}
        for name in AMOUNT_FIELDS:
            if name in columns:
                amounts[name] = batch.column(columns[name])
                ok = pc.and_(ok, pc.match_substring_regex(amounts[name], ARROW_AMOUNT))
        paid_set = pc.not_equal(amounts["paid_in"], "") if "paid_in" in amounts else False
        withdrawn_set = pc.not_equal(amounts["withdrawn"], "") if "withdrawn" in amounts else False
        # Exactly one of Paid In / Withdrawn filled in.
        ok = pc.and_(ok, pc.xor(paid_set, withdrawn_set))
        written = copy_text(batch, numbers, ok)
        if written is None:
            # A text cell holds a quote, which unquoted CSV cannot carry: those rows go the
            # slow way (checked only then: most blocks have none).
            for name in TEXT_FIELDS:
                if name in columns:
                    quoted = pc.match_substring(batch.column(columns[name]), '"')
                    ok = pc.and_(ok, pc.invert(quoted))
            written = copy_text(batch, numbers, ok)
            if written is None:
                raise ArrowUnsuitable
        fast, fast_numbers, text = written
        if fast.num_rows:
            copy.write(memoryview(text))
            if "paid_in" in amounts:
                paid = pc.filter(paid_set, ok)
                paid_receipts.append(pc.filter(fast.column(columns["receipt"]), paid))
                paid_numbers.append(pc.filter(fast_numbers, paid))
        if fast.num_rows < rows:
            rest = batch.filter(pc.invert(ok))
            cells = [column.to_pylist() for column in rest.columns]
            rest_rows = map(list, zip(*cells, strict=True))
            rest_numbers = pc.filter(numbers, pc.invert(ok)).to_pylist()
            writer.write(copy, zip(rest_numbers, rest_rows, strict=True), check_every_row=False)
    body = len(data) - start
    lines = data.count(b"\n", start) + (0 if data.endswith(b"\n") or not body else 1)
    if number - (parsed.header_row + 1) != lines:
        raise ArrowUnsuitable
    # Paid-in rows whose receipt repeats, across the rows Arrow wrote and the others.
    paid_receipts.append(pa.array(list(writer.first_seen), pa.string()))
    paid_numbers.append(pa.array(list(writer.first_seen.values()), pa.int64()))
    receipts = pa.chunked_array(paid_receipts, pa.string())
    counts = pc.value_counts(receipts)
    repeated = pc.filter(counts.field("values"), pc.greater(counts.field("counts"), 1))
    if len(repeated):
        numbers_all = pa.chunked_array(paid_numbers, pa.int64())
        writer.repeats.extend(
            pc.filter(numbers_all, pc.is_in(receipts, value_set=repeated)).to_pylist()
        )


# --- SQL -----------------------------------------------------------------------------------------


def _kind_sql() -> str:
    """:func:`matching.line_kind` in SQL, over columns status, reason_type, details, direction,
    amount. The first branch is the common case, tested with equalities only."""
    text = (
        f"translate(CASE WHEN reason_type <> '' THEN reason_type ELSE details END, "
        f"'{_UPPER}', '{_LOWER}')"
    )
    reasons = _literals(matching.PAYMENT_REASON_TYPES)
    return f"""CASE
        WHEN status = 'Completed' AND reason_type IN ({reasons})
            AND direction = 'in' AND amount > 0 THEN '{matching.PAYMENT}'
        WHEN status <> '' AND translate(status, '{_UPPER}', '{_LOWER}') <> 'completed'
            THEN '{R.NOT_COMPLETED}'
        WHEN reason_type IN ({reasons}) AND direction = 'in' AND amount > 0
            THEN '{matching.PAYMENT}'
        WHEN {_like_any(text, matching.CHARGE_WORDS)} THEN '{R.CHARGE}'
        WHEN {_like_any(text, matching.FEE_WORDS)} THEN '{R.FEE}'
        WHEN {_like_any(text, matching.SWEEP_WORDS)} THEN '{R.SWEEP}'
        WHEN direction = 'in' AND amount > 0 THEN '{matching.PAYMENT}'
        ELSE '{R.OTHER}' END"""


def _account_key(expression: str) -> str:
    return f"translate(replace({expression}, ' ', ''), '{_LOWER}', '{_UPPER}')"


# The payer's normalised (masked) number, as :func:`matching.payer_mask` and
# :func:`matching.normalise_mask`, over columns of ``e``. OFFSET 0 keeps each step a subquery
# computed once per row: pulled up, every use of a step would repeat its regular expressions.
_MASK_LATERALS = """
    CROSS JOIN LATERAL (SELECT CASE
        WHEN btrim(e.other_party) <> ''
            THEN btrim(split_part(replace(btrim(e.other_party), '–', '-'), ' - ', 1))
        ELSE coalesce(substring(e.details FROM 'from ([^ ]+) [-–] '), '')
        END AS payer OFFSET 0) y
    CROSS JOIN LATERAL (SELECT CASE WHEN left(y.payer, 1) = '+'
        THEN substr(y.payer, 2) ELSE y.payer END AS plain OFFSET 0) z
    CROSS JOIN LATERAL (SELECT CASE
        WHEN left(z.plain, 1) = '0' THEN '254' || substr(z.plain, 2)
        WHEN z.plain ~ '^[17][0-9]{8}$' THEN '254' || z.plain
        ELSE z.plain END AS mask OFFSET 0) m
"""
# The line's account (its own column, else what follows "Acc." in the details), over ``e``.
_ACCOUNT_LATERAL = """
    CROSS JOIN LATERAL (SELECT CASE
        WHEN e.account_reference <> '' THEN e.account_reference
        WHEN strpos(e.details, 'Acc.') > 0
            THEN btrim(substr(e.details, strpos(e.details, 'Acc.') + 4))
        ELSE '' END AS account) a
"""


@contextlib.contextmanager
def _parallel(cursor: Any) -> Iterator[None]:
    """Let the statements inside use one parallel worker (the rest of the transaction uses
    none): for joins and aggregates over a million rows whose results are small or written in
    bulk."""
    cursor.execute("SET LOCAL max_parallel_workers_per_gather = 1")
    cursor.execute("SET LOCAL parallel_setup_cost = 0")
    cursor.execute("SET LOCAL parallel_tuple_cost = 0")
    yield
    cursor.execute("SET LOCAL max_parallel_workers_per_gather = 0")
    cursor.execute("SET LOCAL parallel_setup_cost TO DEFAULT")
    cursor.execute("SET LOCAL parallel_tuple_cost TO DEFAULT")


class _Runner:
    """One statement's run: the steps in order, sharing table names and parameters."""

    def __init__(
        self,
        *,
        statement: Statement,
        run: ReconciliationRun,
        parsed: ParsedStatement,
        window_seconds: int,
        timer: Timer,
        reparse: Callable[[], ParsedStatement] | None,
    ) -> None:
        self.statement = statement
        self.parsed = parsed
        self.layout = parsed.layout
        self.timer = timer
        self.reparse = reparse
        sid = int(statement.pk)
        self.lines, self.matches = partition_names(sid)
        self.exc = f"reconciliation_exc_{sid}"
        self.cand = f"reconciliation_cand_{sid}"
        self.repeats = f"reconciliation_repeats_{sid}"
        self.unclaimed = f"reconciliation_unclaimed_{sid}"
        self.claimed_out = ZERO
        self.scope = "AND p.client_id = %(client)s" if statement.client_id is not None else ""
        self.params: dict[str, Any] = {
            "sid": sid,
            "run": run.pk,
            "window": dt.timedelta(seconds=window_seconds),
            "slack": CREATION_SLACK,
        }
        if statement.client_id is not None:
            self.params["client"] = statement.client_id
        self.writer = LineWriter(
            parsed.layout, base=sid * LINE_ID_FACTOR, plain_text=parsed.plain_text
        )
        self.report = EngineReport()

    def execute(self, cursor: Any, sql: str, params: dict[str, Any] | None = None) -> None:
        cursor.execute(sql, params)

    def run(self) -> EngineReport:
        connection.ensure_connection()
        raw = connection.connection
        assert isinstance(raw, psycopg.Connection)
        with connection.cursor() as cursor:
            # For this transaction only: hash tables and index builds in memory; no JIT (it
            # costs more than it saves on these one-off queries); hash joins rather than merge
            # joins after a misestimate; no parallel plans (shipping wide rows to the leader
            # costs more than scanning them here), except where _parallel() allows one.
            cursor.execute("SET LOCAL work_mem = '256MB'")
            cursor.execute("SET LOCAL maintenance_work_mem = '256MB'")
            cursor.execute("SET LOCAL jit = off")
            cursor.execute("SET LOCAL enable_mergejoin = off")
            cursor.execute("SET LOCAL max_parallel_workers_per_gather = 0")
            with self.timer.phase("load"):
                self.load(cursor, raw)
            with self.timer.phase("classify_and_exact_match"):
                self.classify_and_match(cursor)
            with self.timer.phase("duplicates_and_payment_index"):
                self.duplicates(cursor, raw)
                self.payment_index(cursor)
            with self.timer.phase("exceptions_and_tolerance"):
                self.exceptions(cursor)
                self.tolerance(cursor)
                self.apply_exceptions(cursor)
                self.attach(cursor)
            with self.timer.phase("breaks"):
                _write_rejects(raw, self.params["sid"], self.writer.rejects)
                self.report.reject_count = len(self.writer.rejects)
                self.report.skipped = dict(self.writer.skipped)
                self.breaks(cursor)
            with self.timer.phase("summary"):
                self.summary(cursor)
        return self.report

    # --- steps ---------------------------------------------------------------------------------

    def load(self, cursor: Any, raw: psycopg.Connection[Any]) -> None:
        sid = self.params["sid"]
        cursor.execute(
            f"CREATE TABLE {self.lines} (LIKE {LINE_TABLE} INCLUDING DEFAULTS INCLUDING "
            f"CONSTRAINTS, CONSTRAINT {self.lines}_statement CHECK (statement_id = {sid}))"
        )
        cursor.execute(f"ALTER TABLE {self.lines} ALTER statement_id SET DEFAULT {sid}")
        copy_sql = f"COPY {self.lines} ({LINE_COPY_COLUMNS}) FROM STDIN"
        # Statement times are East Africa Time: parsed in that zone, they are right instants.
        cursor.execute("SET LOCAL datestyle = 'ISO, DMY'")
        cursor.execute("SET LOCAL timezone = 'Africa/Nairobi'")
        parsed = self.parsed
        workers = parse_workers()
        methods = []
        if arrow_suitable(parsed):
            methods.append("arrow")
        if (
            workers > 1
            and parsed.source is not None
            and parsed.data_start > 0
            and len(parsed.source) - parsed.data_start >= PARALLEL_MIN_BYTES
        ):
            methods.append("parallel")
        try:
            for method in methods:
                try:
                    self.copy_lines(raw, copy_sql, method, workers=workers)
                    break
                except (ArrowUnsuitable, SerialRead):
                    # A file Arrow cannot read as Python would, or a record spanning lines
                    # that the parallel read cannot number: the next way, in a new COPY.
                    continue
            else:
                self.copy_lines(raw, copy_sql, "rows", rows=parsed.rows)
        except psycopg.errors.DataError:
            # A date PostgreSQL refuses (a 30th of February): read again in this process,
            # checking each row in Python, so that the bad ones become rejects.
            if self.reparse is None:
                raise
            self.copy_lines(raw, copy_sql, "rows", rows=self.reparse().rows, check_every_row=True)
        cursor.execute("SET LOCAL timezone = 'UTC'")
        cursor.execute(f"ALTER TABLE {self.lines} ALTER statement_id DROP DEFAULT")
        self.execute(
            cursor, f"CREATE UNIQUE INDEX {self.lines}_id ON {self.lines} (id, statement_id)"
        )

    def copy_lines(
        self,
        raw: psycopg.Connection[Any],
        copy_sql: str,
        method: str,
        *,
        workers: int = 1,
        rows: Iterable[tuple[int, list[str]]] = (),
        check_every_row: bool = False,
    ) -> None:
        """One COPY of the lines, read by ``method``; a failure rolls it back entirely."""
        parsed = self.parsed
        self.writer = LineWriter(self.layout, base=self.writer.base, plain_text=parsed.plain_text)
        with (
            transaction.atomic(),
            raw.cursor() as raw_cursor,
            # Arrow's blocks are sent by a thread of psycopg's (its queue is bounded): the next
            # block is read and checked while PostgreSQL parses this one.
            raw_cursor.copy(
                copy_sql, writer=QueuedLibpqWriter(raw_cursor) if method == "arrow" else None
            ) as copy,
        ):
            if method == "arrow":
                copy_arrow(copy, parsed, self.writer)
            elif method == "parallel":
                copy_parallel(copy, parsed, self.writer, workers)
            else:
                self.writer.write(copy, rows, check_every_row=check_every_row)
        self.report.load_method = method

    def created_around(self) -> str:
        """SQL: payment ``p`` was created around the period (:meth:`Period.around`), so that
        the join hashes a month of payments, not their whole history."""
        if self.report.period is None:
            return ""
        return "AND p.created_at >= %(start)s - %(slack)s AND p.created_at < %(end)s + %(slack)s"

    def in_period(self, alias: str = "p") -> str:
        """SQL: payment ``alias``'s time is in the statement period (false without one)."""
        if self.report.period is None:
            return "false"
        time = f"coalesce({alias}.transaction_date, {alias}.created_at)"
        return f"({time} >= %(start)s AND {time} < %(end)s)"

    def classify_and_match(self, cursor: Any) -> None:
        """Every line's match, final except for the exceptions: repeated receipts are ranked
        afterwards; lines without a receipt match are provisionally unknown.

        A LEFT hash join of the lines with the payments on the receipt writes the matches;
        a second join of the period's SUCCESS payments with the matches finds the ones no
        line's receipt claimed (the candidates for "missing from the statement") and the total
        of the claimed ones whose time is outside the period, for our side of the bridge. Both
        may run in two processes: PostgreSQL 15 cannot run a FULL join that way."""
        sid = self.params["sid"]
        if self.statement.period_start is None or self.statement.period_end is None:
            cursor.execute(f"SELECT min(completed_at), max(completed_at) FROM {self.lines}")
            self.report.first_line_at, self.report.last_line_at = cursor.fetchone()
        period = statement_period(
            self.statement, self.report.first_line_at, self.report.last_line_at
        )
        self.report.period = period
        if period is not None:
            self.params["start"] = period.start
            self.params["end"] = period.end + dt.timedelta(seconds=1)
        cursor.execute(
            f"CREATE TEMP TABLE {self.unclaimed} (id uuid, amount numeric(12, 2)) ON COMMIT DROP"
        )
        # CREATE TABLE AS, not INSERT: its query may run in two processes (a parallel hash
        # join), and its rows are written in bulk. The column types are the parent's.
        with _parallel(cursor):
            self.execute(
                cursor,
                f"""
                CREATE TABLE {self.matches} AS
                SELECT k.id::bigint AS line_id,
                       k.direction::varchar(3) AS direction,
                       k.amount::numeric(14, 2) AS amount,
                       (CASE WHEN k.kind <> '{matching.PAYMENT}' THEN k.kind
                             WHEN p.pid IS NULL THEN '{R.UNKNOWN_PAYMENT}'
                             WHEN p.p_status <> '{matching.SUCCESS}' THEN '{R.NOT_SUCCESS}'
                             WHEN k.amount = p.p_amount THEN '{R.MATCHED}'
                             ELSE '{R.AMOUNT_MISMATCH}' END)::varchar(24) AS result,
                       (CASE WHEN p.pid IS NULL THEN '' ELSE 'receipt' END)::varchar(10)
                           AS match_method,
                       p.pid AS payment_id,
                       %(sid)s::bigint AS statement_id
                FROM (
                    SELECT t.*, {_kind_sql()} AS kind
                    FROM (
                        SELECT l.id, l.receipt_number,
                               CASE WHEN l.paid_in IS NOT NULL THEN 'in' ELSE 'out' END
                                   AS direction,
                               abs(coalesce(l.paid_in, l.withdrawn)) AS amount,
                               l.transaction_status AS status, l.reason_type, l.details
                        FROM {self.lines} l
                    ) t
                ) k
                LEFT JOIN (
                    SELECT p.id AS pid, p.status AS p_status, p.amount AS p_amount,
                           p.mpesa_receipt_number AS p_receipt
                    FROM {PAYMENT_TABLE} p
                    WHERE p.mpesa_receipt_number IS NOT NULL {self.created_around()}
                          {self.scope}
                ) p
                  ON p.p_receipt = CASE WHEN k.kind = '{matching.PAYMENT}'
                                        THEN k.receipt_number END
                """,
                self.params,
            )
            self.report.line_count = cursor.rowcount
            # Our SUCCESS payments of the period that no line's receipt claimed (candidates
            # for "missing from the statement"): an anti join hashing the matches (PostgreSQL
            # 15 runs no parallel join that hashes the outer side).
            self.execute(
                cursor,
                f"""
                SELECT p.id, p.amount FROM {PAYMENT_TABLE} p
                WHERE p.mpesa_receipt_number IS NOT NULL {self.created_around()} {self.scope}
                  AND p.status = '{matching.SUCCESS}' AND {self.in_period()}
                  AND NOT EXISTS (SELECT 1 FROM {self.matches} m WHERE m.payment_id = p.id)
                """,
                self.params,
            )
            unclaimed = cursor.fetchall()
            # The claimed ones whose time is outside the period, for our side of the bridge.
            self.execute(
                cursor,
                f"""
                SELECT coalesce(sum(p.amount), 0) FROM {PAYMENT_TABLE} p
                JOIN {self.matches} m ON m.payment_id = p.id
                WHERE p.mpesa_receipt_number IS NOT NULL {self.created_around()} {self.scope}
                  AND p.status = '{matching.SUCCESS}' AND NOT {self.in_period()}
                """,
                self.params,
            )
            (self.claimed_out,) = cursor.fetchone()
        if unclaimed:
            with (
                connection.connection.cursor() as raw_cursor,
                raw_cursor.copy(f"COPY {self.unclaimed} (id, amount) FROM STDIN") as copy,
            ):
                for row in unclaimed:
                    copy.write_row(row)
        # What the parent table and the attachment require.
        not_null = ", ".join(
            f"ALTER {column} SET NOT NULL"
            for column in (
                "line_id",
                "direction",
                "amount",
                "result",
                "match_method",
                "statement_id",
            )
        )
        cursor.execute(
            f"ALTER TABLE {self.matches} {not_null}, "
            f"ADD CONSTRAINT {self.matches}_statement CHECK (statement_id = {sid})"
        )
        if self.report.period is not None:
            # SUCCESS payments of the period without a receipt (confirmed by STK Query): the
            # anti join left them out; the tolerance pass may still pair them.
            self.execute(
                cursor,
                f"""
                INSERT INTO {self.unclaimed} (id, amount)
                SELECT p.id, p.amount FROM {PAYMENT_TABLE} p
                WHERE p.mpesa_receipt_number IS NULL AND p.status = '{matching.SUCCESS}'
                  AND p.created_at >= %(start)s - %(slack)s AND p.created_at < %(end)s
                  AND {self.in_period()} {self.scope}
                """,
                self.params,
            )
        self.execute(
            cursor,
            f"CREATE UNIQUE INDEX {self.matches}_line ON {self.matches} (line_id, statement_id)",
        )

    def unclaim(self, cursor: Any, update: str) -> None:
        """Run ``update`` (an UPDATE of matches returning the payment each changed line
        claimed before) and take those claims off the claimed total outside the period."""
        self.execute(
            cursor,
            f"""
            WITH changed AS ({update})
            SELECT coalesce(sum(p.amount), 0)
            FROM changed c JOIN {PAYMENT_TABLE} p ON p.id = c.payment_id
            WHERE p.status = '{matching.SUCCESS}' AND NOT {self.in_period()}
            """,
            self.params,
        )
        (claimed_out,) = cursor.fetchone()
        self.claimed_out -= claimed_out

    def duplicates(self, cursor: Any, raw: psycopg.Connection[Any]) -> None:
        """Payment lines sharing a receipt: the first claims it (its match stands), the others
        are duplicates and claim nothing. Python noted the rows; only those are looked at."""
        cursor.execute(f"CREATE TEMP TABLE {self.repeats} (line_id bigint) ON COMMIT DROP")
        if not self.writer.repeats:
            return
        base = self.writer.base
        with (
            raw.cursor() as raw_cursor,
            raw_cursor.copy(f"COPY {self.repeats} (line_id) FROM STDIN") as copy,
        ):
            copy.write("".join(f"{base + n}\n" for n in set(self.writer.repeats)))
        cursor.execute(f"ANALYZE {self.repeats}")
        self.unclaim(
            cursor,
            f"""
            UPDATE {self.matches} m
            SET result = '{R.DUPLICATE}', payment_id = NULL, match_method = ''
            FROM (
                SELECT x.line_id, x.payment_id FROM (
                    SELECT r.line_id, m2.payment_id, row_number() OVER (
                        PARTITION BY l.receipt_number ORDER BY r.line_id) AS rank
                    FROM {self.repeats} r
                    -- A lookup by the line index per repeated row (LIMIT keeps the planner,
                    -- which has no statistics of the new table, from scanning all matches).
                    CROSS JOIN LATERAL (
                        SELECT m2.payment_id FROM {self.matches} m2
                        WHERE m2.line_id = r.line_id AND m2.statement_id = %(sid)s
                          AND m2.result IN ({_literals(PAYMENT_RESULTS)})
                        LIMIT 1
                    ) m2
                    JOIN {self.lines} l ON l.id = r.line_id AND l.statement_id = %(sid)s
                ) x WHERE x.rank > 1
            ) d
            WHERE m.line_id = d.line_id AND m.statement_id = %(sid)s
            RETURNING d.payment_id
            """,
        )

    def exceptions(self, cursor: Any) -> None:
        """The few matches that are not settled yet, or are breaks, with their line."""
        with _parallel(cursor):
            self.execute(
                cursor,
                f"""
            CREATE TEMP TABLE {self.exc} ON COMMIT DROP AS
            SELECT m.line_id AS id, l.line_no, l.receipt_number, l.completed_at, m.amount,
                   l.other_party,
                   l.details, l.account_reference, m.result AS was, m.result,
                   m.payment_id AS was_payment, m.payment_id, m.match_method,
                   NULL::text[] AS candidates
            FROM {self.matches} m
            JOIN {self.lines} l ON l.id = m.line_id AND l.statement_id = %(sid)s
            WHERE m.result IN ({_literals(EXCEPTIONS)})
            """,
                self.params,
            )
        cursor.execute(f"ANALYZE {self.exc}")
        # Unknown lines repeating a receipt that parallel readers saw in different chunks.
        self.execute(
            cursor,
            f"""
            UPDATE {self.exc} e SET result = '{R.DUPLICATE}'
            FROM (
                SELECT x.id FROM (
                    SELECT id, row_number() OVER (PARTITION BY receipt_number ORDER BY id)
                               AS rank
                    FROM {self.exc} WHERE result = '{R.UNKNOWN_PAYMENT}'
                ) x WHERE x.rank > 1
            ) d
            WHERE e.id = d.id
            """,
        )

    def tolerance(self, cursor: Any) -> None:
        """Lines still unknown against payments without a receipt: the candidates, then the
        pairs that are each other's only candidate."""
        # The lines' time span, as values the planner sees (a subquery's bounds would be a
        # guess, and a guessed narrow span makes it read the created_at index for all
        # payments).
        cursor.execute(
            f"SELECT min(completed_at), max(completed_at) FROM {self.exc} "
            f"WHERE result = '{R.UNKNOWN_PAYMENT}'"
        )
        low, high = cursor.fetchone()
        params = {**self.params, "low": low, "high": high}
        self.execute(
            cursor,
            f"""
            CREATE TEMP TABLE {self.cand} ON COMMIT DROP AS
            WITH leftover AS (
                SELECT e.id, e.line_no, e.completed_at, e.amount, e.other_party, e.details,
                       {_account_key("a.account")} AS account_key
                FROM {self.exc} e
                {_ACCOUNT_LATERAL}
                WHERE e.result = '{R.UNKNOWN_PAYMENT}'
            ), pool AS (
                SELECT p.id, p.status, p.amount, p.phone_number AS phone,
                       {_account_key("p.account_reference")} AS account_key,
                       coalesce(p.transaction_date, p.created_at) AS time
                FROM {PAYMENT_TABLE} p
                WHERE p.mpesa_receipt_number IS NULL
                  AND p.status IN ('INITIATED', 'PENDING', 'SUCCESS', 'FAILED')
                  AND p.created_at >= %(low)s::timestamptz - %(window)s - %(slack)s
                  AND p.created_at <= %(high)s::timestamptz + %(window)s
                  {self.scope}
            ), near AS MATERIALIZED (
                -- Same amount, account and time: only these pairs need the payer's number
                -- (regular expressions over the details).
                SELECT l.id, l.line_no, l.other_party, l.details,
                       p.id AS pid, p.status, p.phone
                FROM leftover l
                JOIN pool p
                  ON p.amount = l.amount
                 AND p.account_key <> '' AND p.account_key = l.account_key
                 AND l.completed_at BETWEEN p.time - %(window)s AND p.time + %(window)s
            ), payer AS (
                SELECT e.id, e.line_no, e.pid, e.status, e.phone, m.mask,
                    CASE WHEN m.mask ~ '^254[0-9]{{9}}$' THEN 'full'
                         WHEN m.mask ~ '^254[0-9]*\\*+[0-9]+$'
                              AND length(split_part(m.mask, '*', 1))
                                  + length(reverse(split_part(reverse(m.mask), '*', 1))) <= 12
                         THEN 'masked' ELSE '' END AS mask_kind,
                    split_part(m.mask, '*', 1) AS prefix,
                    reverse(split_part(reverse(m.mask), '*', 1)) AS suffix
                FROM near e
                {_MASK_LATERALS}
            )
            SELECT e.id AS line_id, e.line_no, e.pid AS id, e.status,
                   count(*) OVER (PARTITION BY e.id) AS line_degree,
                   count(*) OVER (PARTITION BY e.pid) AS payment_degree
            FROM payer e
            WHERE (e.mask_kind = 'full' AND e.phone = e.mask)
               OR (e.mask_kind = 'masked'
                   AND left(e.phone, length(e.prefix)) = e.prefix
                   AND right(e.phone, length(e.suffix)) = e.suffix)
            """,
            params,
        )
        self.execute(
            cursor,
            f"""
            UPDATE {self.exc} e
            SET result = t.result, payment_id = t.payment_id, candidates = t.candidates,
                match_method = CASE WHEN t.payment_id IS NULL THEN '' ELSE 'tolerance' END
            FROM (
                SELECT c.line_id,
                    CASE WHEN max(c.line_degree) = 1 AND max(c.payment_degree) = 1
                         THEN (array_agg(c.id))[1] END AS payment_id,
                    CASE WHEN max(c.line_degree) > 1 OR max(c.payment_degree) > 1
                              THEN '{R.AMBIGUOUS}'
                         WHEN (array_agg(c.status))[1] = '{matching.SUCCESS}'
                              THEN '{R.MATCHED}'
                         ELSE '{R.NOT_SUCCESS}' END AS result,
                    CASE WHEN max(c.line_degree) > 1 OR max(c.payment_degree) > 1
                         THEN array_agg(c.id::text ORDER BY c.id) END AS candidates
                FROM {self.cand} c GROUP BY c.line_id
            ) t
            WHERE e.id = t.line_id
            """,
        )

    def apply_exceptions(self, cursor: Any) -> None:
        self.execute(
            cursor,
            f"""
            UPDATE {self.matches} m
            SET result = e.result, payment_id = e.payment_id, match_method = e.match_method
            FROM {self.exc} e
            WHERE m.line_id = e.id AND m.statement_id = %(sid)s
              AND (e.result <> e.was OR e.payment_id IS DISTINCT FROM e.was_payment)
            """,
            self.params,
        )

    def payment_index(self, cursor: Any) -> None:
        """The index that makes a payment claimable by one line of the statement only. Built
        in one go; if two lines claim one payment (repeats that parallel readers could not see
        in each other's rows), the first claims it and the others become duplicates."""
        create = (
            f"CREATE UNIQUE INDEX {self.matches}_payment ON {self.matches} "
            "(payment_id, statement_id) WHERE payment_id IS NOT NULL"
        )
        try:
            with transaction.atomic():
                self.execute(cursor, create)
        except IntegrityError:
            self.unclaim(
                cursor,
                f"""
                UPDATE {self.matches} m
                SET result = '{R.DUPLICATE}', payment_id = NULL, match_method = ''
                FROM (
                    SELECT x.line_id, x.payment_id FROM (
                        SELECT line_id, payment_id,
                               row_number() OVER (PARTITION BY payment_id ORDER BY line_id)
                                   AS rank
                        FROM {self.matches}
                        WHERE payment_id IN (
                            SELECT payment_id FROM {self.matches}
                            WHERE payment_id IS NOT NULL
                            GROUP BY payment_id HAVING count(*) > 1)
                    ) x WHERE x.rank > 1
                ) d
                WHERE m.line_id = d.line_id AND m.statement_id = %(sid)s
                RETURNING d.payment_id
                """,
            )
            self.execute(cursor, create)

    def attach(self, cursor: Any) -> None:
        sid = self.params["sid"]
        for table, parent in ((self.lines, LINE_TABLE), (self.matches, MATCH_TABLE)):
            cursor.execute(f"ALTER TABLE {parent} ATTACH PARTITION {table} FOR VALUES IN ({sid})")

    def breaks(self, cursor: Any) -> None:
        self.execute(
            cursor,
            f"""
            INSERT INTO {BREAK_TABLE} ({BREAK_COLUMNS})
            SELECT %(run)s, e.result, e.id,
                   CASE WHEN e.result IN ('{R.AMOUNT_MISMATCH}', '{R.NOT_SUCCESS}')
                        THEN e.payment_id END,
                   e.amount,
                   CASE WHEN e.result IN ('{R.AMOUNT_MISMATCH}', '{R.NOT_SUCCESS}')
                        THEN p.amount END,
                   CASE WHEN e.result = '{R.AMOUNT_MISMATCH}' THEN e.amount - p.amount
                        ELSE e.amount END,
                   coalesce(to_jsonb(e.candidates), '[]'::jsonb),
                   (e.result = '{R.NOT_SUCCESS}' AND e.match_method = 'receipt'
                    AND e.amount = p.amount
                    AND NOT (p.status = 'FAILED' AND p.failure_final)) IS TRUE,
                   'open', '', '', '', now()
            FROM {self.exc} e
            LEFT JOIN {PAYMENT_TABLE} p ON p.id = e.payment_id
            WHERE e.result IN ({_literals(sorted(BREAK_CLASSES))})
            """,
            self.params,
        )
        # SUCCESS payments a line named as a candidate but none claimed: ambiguous.
        self.execute(
            cursor,
            f"""
            INSERT INTO {BREAK_TABLE} ({BREAK_COLUMNS})
            SELECT %(run)s, '{R.AMBIGUOUS}', NULL, p.id, NULL, p.amount, -p.amount,
                   to_jsonb(a.lines), false, 'open', '', '', '', now()
            FROM (SELECT c.id, array_agg(c.line_no::text ORDER BY c.line_no) AS lines
                  FROM {self.cand} c GROUP BY c.id) a
            JOIN {PAYMENT_TABLE} p ON p.id = a.id
            WHERE p.status = '{matching.SUCCESS}'
              AND NOT EXISTS (SELECT 1 FROM {self.exc} e WHERE e.payment_id = p.id)
            """,
            self.params,
        )

    def summary(self, cursor: Any) -> None:
        report = self.report
        classes: dict[str, ClassTotals] = {}
        # This and the period's total are aggregates over a million rows: a second process
        # scans half of them (partial aggregates, not rows, go to the leader).
        with _parallel(cursor):
            self.execute(
                cursor,
                f"SELECT result, direction, count(*), sum(amount) FROM {self.matches} "
                "GROUP BY result, direction",
            )
            by_class = cursor.fetchall()
        payment_classes = {*PAYMENT_RESULTS, R.DUPLICATE, R.AMBIGUOUS}
        for result, direction, count, total in by_class:
            totals = classes.setdefault(result, ClassTotals())
            totals.count += count
            totals.statement_amount += total
            if direction == "in":
                report.rows_paid_in += total
            else:
                report.rows_withdrawn += total
            if result in payment_classes:
                report.statement_total += total
            if result == R.MATCHED:
                totals.our_amount += total  # a match has the same amount on both sides
        # Breaks: bridge amounts per class; our amounts of the claimed and named payments.
        cursor.execute(
            f"""
            SELECT kind, line_id IS NULL, count(*), coalesce(sum(our_amount), 0),
                   coalesce(sum(bridge_amount), 0)
            FROM {BREAK_TABLE} WHERE run_id = %(run)s GROUP BY kind, line_id IS NULL
            """,
            self.params,
        )
        for kind, payment_side, count, ours, bridge in cursor.fetchall():
            totals = classes.setdefault(kind, ClassTotals())
            totals.bridge_amount += bridge
            totals.our_amount += ours
            if payment_side:
                totals.count += count
        report.classes = classes
        # Missing from the statement: SUCCESS payments of the period that no receipt claimed
        # (the anti join found them) and the tolerance pass neither paired nor named.
        if report.period is not None:
            self.execute(
                cursor,
                f"""
                WITH missing AS (
                    INSERT INTO {BREAK_TABLE} ({BREAK_COLUMNS})
                    SELECT %(run)s, '{R.MISSING_FROM_STATEMENT}', NULL, u.id, NULL, u.amount,
                           -u.amount, '[]'::jsonb, false, 'open', '', '', '', now()
                    FROM {self.unclaimed} u
                    WHERE NOT EXISTS (SELECT 1 FROM {self.exc} e WHERE e.payment_id = u.id)
                      AND NOT EXISTS (SELECT 1 FROM {self.cand} c WHERE c.id = u.id)
                    RETURNING our_amount
                )
                SELECT count(*), coalesce(sum(our_amount), 0) FROM missing
                """,
                self.params,
            )
            missing_count, missing_total = cursor.fetchone()
            if missing_count:
                totals = classes.setdefault(R.MISSING_FROM_STATEMENT, ClassTotals())
                totals.count += missing_count
                totals.our_amount += missing_total
                totals.bridge_amount -= missing_total
        # Our total: SUCCESS payments of the period, read straight from the payments (not
        # through the matching, so that the residual checks it), plus the SUCCESS payments
        # the statement claimed or named whose time is outside the period.
        in_period_total = ZERO
        if report.period is not None:
            with _parallel(cursor):
                self.execute(
                    cursor,
                    f"""
                    SELECT coalesce(sum(p.amount), 0) FROM {PAYMENT_TABLE} p
                    WHERE p.status = '{matching.SUCCESS}'
                      AND p.created_at >= %(start)s - %(slack)s AND p.created_at < %(end)s
                      AND {self.in_period()} {self.scope}
                    """,
                    self.params,
                )
                (in_period_total,) = cursor.fetchone()
        self.execute(
            cursor,
            f"""
            SELECT coalesce(sum(p.amount), 0) FROM (
                SELECT payment_id FROM {self.exc}
                WHERE match_method = 'tolerance' AND payment_id IS NOT NULL
                UNION ALL
                SELECT payment_id FROM {BREAK_TABLE}
                WHERE run_id = %(run)s AND line_id IS NULL AND kind = '{R.AMBIGUOUS}'
            ) x JOIN {PAYMENT_TABLE} p ON p.id = x.payment_id
            WHERE p.status = '{matching.SUCCESS}' AND NOT {self.in_period()}
            """,
            self.params,
        )
        (named_outside,) = cursor.fetchone()
        report.our_total = in_period_total + self.claimed_out + named_outside


def run_postgresql(
    *,
    statement: Statement,
    run: ReconciliationRun,
    parsed: ParsedStatement,
    window_seconds: int,
    timer: Timer,
    reparse: Callable[[], ParsedStatement] | None = None,
) -> EngineReport:
    return _Runner(
        statement=statement,
        run=run,
        parsed=parsed,
        window_seconds=window_seconds,
        timer=timer,
        reparse=reparse,
    ).run()


def _write_rejects(raw: Any, sid: int, rejects: list[tuple[int, str, list[str]]]) -> None:
    if not rejects:
        return
    with (
        raw.cursor() as cursor,
        cursor.copy(
            "COPY reconciliation_statementreject (statement_id, row_number, reason, raw) FROM STDIN"
        ) as copy,
    ):
        for number, reason, cells in rejects:
            copy.write_row((sid, number, reason, json.dumps(cells)))
