"""Loading a statement's rows with COPY into its own line table: row by row
(:class:`LineWriter`), by forked processes for a large CSV (:func:`copy_parallel`) or with
Arrow (:mod:`.arrow`), whichever reads the file as Python's csv module would."""

from __future__ import annotations

import csv
import io
import itertools
import multiprocessing
import multiprocessing.connection
import pickle
from collections.abc import Iterable
from typing import Any

import psycopg
from django.conf import settings
from django.db import transaction
from psycopg.copy import QueuedLibpqWriter

from ...formats.parsed import ParsedStatement
from ...formats.rows import Layout
from ..partitions import LINE_TABLE
from .arrow import ArrowUnsuitable, arrow_suitable, copy_arrow
from .state import PostgresRun
from .writer import LINE_COPY_COLUMNS, LineWriter

# Files with at least this many bytes of rows are read by parallel processes when possible.
PARALLEL_MIN_BYTES = 8 * 1024 * 1024
# A payment's M-Pesa completion is at most this long after we created it (STK prompts expire in
# minutes): lets the time-bounded queries use the (status, created_at) index.


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
    workers = settings.RECONCILIATION_PARSE_WORKERS
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


# --- The load step ----------------------------------------------------------------------------


def load_lines(run: PostgresRun, cursor: Any, raw: psycopg.Connection[Any]) -> None:
    sid = run.params["sid"]
    cursor.execute(
        f"CREATE TABLE {run.lines} (LIKE {LINE_TABLE} INCLUDING DEFAULTS INCLUDING "
        f"CONSTRAINTS, CONSTRAINT {run.lines}_statement CHECK (statement_id = {sid}))"
    )
    cursor.execute(f"ALTER TABLE {run.lines} ALTER statement_id SET DEFAULT {sid}")
    copy_sql = f"COPY {run.lines} ({LINE_COPY_COLUMNS}) FROM STDIN"
    # Statement times are East Africa Time: parsed in that zone, they are right instants.
    cursor.execute("SET LOCAL datestyle = 'ISO, DMY'")
    cursor.execute("SET LOCAL timezone = 'Africa/Nairobi'")
    parsed = run.parsed
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
                copy_lines(run, raw, copy_sql, method, workers=workers)
                break
            except (ArrowUnsuitable, SerialRead):
                # A file Arrow cannot read as Python would, or a record spanning lines
                # that the parallel read cannot number: the next way, in a new COPY.
                continue
        else:
            copy_lines(run, raw, copy_sql, "rows", rows=parsed.rows)
    except psycopg.errors.DataError:
        # A date PostgreSQL refuses (a 30th of February): read again in this process,
        # checking each row in Python, so that the bad ones become rejects.
        if run.reparse is None:
            raise
        copy_lines(run, raw, copy_sql, "rows", rows=run.reparse().rows, check_every_row=True)
    cursor.execute("SET LOCAL timezone = 'UTC'")
    cursor.execute(f"ALTER TABLE {run.lines} ALTER statement_id DROP DEFAULT")
    run.execute(cursor, f"CREATE UNIQUE INDEX {run.lines}_id ON {run.lines} (id, statement_id)")


def copy_lines(
    run: PostgresRun,
    raw: psycopg.Connection[Any],
    copy_sql: str,
    method: str,
    *,
    workers: int = 1,
    rows: Iterable[tuple[int, list[str]]] = (),
    check_every_row: bool = False,
) -> None:
    """One COPY of the lines, read by ``method``; a failure rolls it back entirely."""
    parsed = run.parsed
    run.writer = LineWriter(run.layout, base=run.writer.base, plain_text=parsed.plain_text)
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
            copy_arrow(copy, parsed, run.writer)
        elif method == "parallel":
            copy_parallel(copy, parsed, run.writer, workers)
        else:
            run.writer.write(copy, rows, check_every_row=check_every_row)
    run.report.load_method = method
