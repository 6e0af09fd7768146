"""The PostgreSQL engine: set-based, a fixed number of statements whatever the statement's size.

1. **Load.** The rows are COPYed straight into a new table, the statement's future partition
   of ``reconciliation_statementline`` (logged, no index yet). A UTF-8 CSV is read by Arrow's
   multi-threaded reader a block at a time (:mod:`.arrow`): the rows in the portal's own form
   are checked and written as COPY text by Arrow, the others are canonicalised or rejected by
   :class:`~reconciliation.formats.rows.RowReader`. A file Arrow could split differently from
   Python's csv module is read row by row (:class:`.writer.LineWriter`; a large one by two
   forked processes, :mod:`.load`). PostgreSQL parses the times (``DMY``, in the Africa/Nairobi
   zone) and the amounts. The reads note the rows whose receipt repeats.
2. **Classify and match** (:mod:`.match`): one ``CREATE TABLE AS`` classifies every line and
   LEFT-joins the payments on the receipt (a hash join, not a query per line, run by two
   processes) into the statement's future partition of ``reconciliation_linematch``; an anti
   join of the period's SUCCESS payments with it finds the ones no receipt claimed, and a
   small join the claimed total outside the period.
3. **Exceptions** (repeated receipts, lines without a receipt match, exact breaks: a few per
   thousand lines) in small tables: repeats ranked, the tolerance pass against payments that
   have no receipt, the few changed matches updated by id.
4. **Indexes built in one go** (far cheaper than a million index insertions), among them the
   unique one that lets one line of a statement only claim a payment; the tables are attached
   as the statement's partitions. Breaks and the summary (:mod:`.breaks`) come from the small
   tables, one aggregate over the matches and one over the period's payments.

Everything happens in the caller's transaction: a failure leaves nothing behind. Every rule
mirrors :mod:`reconciliation.matching`; the property test holds the two equal.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import psycopg
from django.db import connection

from ...formats.parsed import ParsedStatement
from ...models import ReconciliationRun, Statement
from ...report import EngineReport, Timer
from . import breaks, load, match
from .state import PostgresRun


def run_postgresql(
    *,
    statement: Statement,
    run: ReconciliationRun,
    parsed: ParsedStatement,
    window_seconds: int,
    timer: Timer,
    reparse: Callable[[], ParsedStatement] | None = None,
    read: Any = None,
) -> EngineReport:
    """The PostgreSQL engine's report on ``statement`` (``read`` is for the Python engine,
    which reads the rows ahead; this one reads them into the database)."""
    del read
    return _steps(
        PostgresRun(
            statement=statement,
            run=run,
            parsed=parsed,
            window_seconds=window_seconds,
            timer=timer,
            reparse=reparse,
        )
    )


def _steps(run: PostgresRun) -> EngineReport:
    connection.ensure_connection()
    raw = connection.connection
    assert isinstance(raw, psycopg.Connection)
    with connection.cursor() as cursor:
        # For this transaction only: hash tables and index builds in memory; no JIT (it
        # costs more than it saves on these one-off queries); hash joins rather than merge
        # joins after a misestimate; no parallel plans (shipping wide rows to the leader
        # costs more than scanning them here), except where parallel_plans() allows one.
        cursor.execute("SET LOCAL work_mem = '256MB'")
        cursor.execute("SET LOCAL maintenance_work_mem = '256MB'")
        cursor.execute("SET LOCAL jit = off")
        cursor.execute("SET LOCAL enable_mergejoin = off")
        cursor.execute("SET LOCAL max_parallel_workers_per_gather = 0")
        with run.timer.phase("load"):
            load.load_lines(run, cursor, raw)
        with run.timer.phase("classify_and_exact_match"):
            match.classify_and_match(run, cursor)
        with run.timer.phase("duplicates_and_payment_index"):
            match.duplicates(run, cursor, raw)
            match.payment_index(run, cursor)
        with run.timer.phase("exceptions_and_tolerance"):
            match.exceptions(run, cursor)
            match.tolerance(run, cursor)
            match.apply_exceptions(run, cursor)
            match.attach(run, cursor)
        with run.timer.phase("breaks"):
            breaks.write_rejects(raw, run.params["sid"], run.writer.rejects)
            run.report.reject_count = len(run.writer.rejects)
            run.report.skipped = dict(run.writer.skipped)
            breaks.breaks(run, cursor)
        with run.timer.phase("summary"):
            breaks.summary(run, cursor)
    return run.report
