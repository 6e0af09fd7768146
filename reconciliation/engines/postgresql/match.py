# ruff: noqa: S608 - the SQL text is built from table names derived from integer ids and from
# this module's constants; every value from a file or a request is a bound parameter.
"""The PostgreSQL engine's matching steps: classify every line and match it on the receipt,
rank repeated receipts, the exceptions and the tolerance pass, then index and attach the
statement's tables as partitions."""

from __future__ import annotations

import datetime as dt
from typing import Any

import psycopg
from django.db import IntegrityError, connection, transaction

from ... import matching
from ...models import ResultClass
from ...report import statement_period
from ..partitions import LINE_TABLE, MATCH_TABLE
from .fragments import (
    ACCOUNT_LATERAL,
    EXCEPTIONS,
    MASK_LATERALS,
    PAYMENT_RESULTS,
    PAYMENT_TABLE,
    account_key,
    kind_sql,
    parallel_plans,
    sql_literals,
)
from .state import PostgresRun


def classify_and_match(run: PostgresRun, cursor: Any) -> None:
    """Every line's match, final except for the exceptions: repeated receipts are ranked
    afterwards; lines without a receipt match are provisionally unknown.

    A LEFT hash join of the lines with the payments on the receipt writes the matches;
    a second join of the period's SUCCESS payments with the matches finds the ones no
    line's receipt claimed (the candidates for "missing from the statement") and the total
    of the claimed ones whose time is outside the period, for our side of the bridge. Both
    may run in two processes: PostgreSQL 15 cannot run a FULL join that way."""
    sid = run.params["sid"]
    if run.statement.period_start is None or run.statement.period_end is None:
        cursor.execute(f"SELECT min(completed_at), max(completed_at) FROM {run.lines}")
        run.report.first_line_at, run.report.last_line_at = cursor.fetchone()
    period = statement_period(run.statement, run.report.first_line_at, run.report.last_line_at)
    run.report.period = period
    if period is not None:
        run.params["start"] = period.start
        run.params["end"] = period.end + dt.timedelta(seconds=1)
    cursor.execute(
        f"CREATE TEMP TABLE {run.unclaimed} (id uuid, amount numeric(12, 2)) ON COMMIT DROP"
    )
    # CREATE TABLE AS, not INSERT: its query may run in two processes (a parallel hash
    # join), and its rows are written in bulk. The column types are the parent's.
    with parallel_plans(cursor):
        run.execute(
            cursor,
            f"""
            CREATE TABLE {run.matches} AS
            SELECT k.id::bigint AS line_id,
                   k.direction::varchar(3) AS direction,
                   k.amount::numeric(14, 2) AS amount,
                   (CASE WHEN k.kind <> '{matching.PAYMENT}' THEN k.kind
                         WHEN p.pid IS NULL THEN '{ResultClass.UNKNOWN_PAYMENT}'
                         WHEN p.p_status <> '{matching.SUCCESS}' THEN '{ResultClass.NOT_SUCCESS}'
                         WHEN k.amount = p.p_amount THEN '{ResultClass.MATCHED}'
                         ELSE '{ResultClass.AMOUNT_MISMATCH}' END)::varchar(24) AS result,
                   (CASE WHEN p.pid IS NULL THEN '' ELSE 'receipt' END)::varchar(10)
                       AS match_method,
                   p.pid AS payment_id,
                   %(sid)s::bigint AS statement_id
            FROM (
                SELECT t.*, {kind_sql()} AS kind
                FROM (
                    SELECT l.id, l.receipt_number,
                           CASE WHEN l.paid_in IS NOT NULL THEN 'in' ELSE 'out' END
                               AS direction,
                           abs(coalesce(l.paid_in, l.withdrawn)) AS amount,
                           l.transaction_status AS status, l.reason_type, l.details
                    FROM {run.lines} l
                ) t
            ) k
            LEFT JOIN (
                SELECT p.id AS pid, p.status AS p_status, p.amount AS p_amount,
                       p.mpesa_receipt_number AS p_receipt
                FROM {PAYMENT_TABLE} p
                WHERE p.mpesa_receipt_number IS NOT NULL {run.created_around()}
                      {run.scope}
            ) p
              ON p.p_receipt = CASE WHEN k.kind = '{matching.PAYMENT}'
                                    THEN k.receipt_number END
            """,
            run.params,
        )
        run.report.line_count = cursor.rowcount
        # Our SUCCESS payments of the period that no line's receipt claimed (candidates
        # for "missing from the statement"): an anti join hashing the matches (PostgreSQL
        # 15 runs no parallel join that hashes the outer side).
        run.execute(
            cursor,
            f"""
            SELECT p.id, p.amount FROM {PAYMENT_TABLE} p
            WHERE p.mpesa_receipt_number IS NOT NULL {run.created_around()} {run.scope}
              AND p.status = '{matching.SUCCESS}' AND {run.in_period()}
              AND NOT EXISTS (SELECT 1 FROM {run.matches} m WHERE m.payment_id = p.id)
            """,
            run.params,
        )
        unclaimed = cursor.fetchall()
        # The claimed ones whose time is outside the period, for our side of the bridge.
        run.execute(
            cursor,
            f"""
            SELECT coalesce(sum(p.amount), 0) FROM {PAYMENT_TABLE} p
            JOIN {run.matches} m ON m.payment_id = p.id
            WHERE p.mpesa_receipt_number IS NOT NULL {run.created_around()} {run.scope}
              AND p.status = '{matching.SUCCESS}' AND NOT {run.in_period()}
            """,
            run.params,
        )
        (run.claimed_out,) = cursor.fetchone()
    if unclaimed:
        with (
            connection.connection.cursor() as raw_cursor,
            raw_cursor.copy(f"COPY {run.unclaimed} (id, amount) FROM STDIN") as copy,
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
        f"ALTER TABLE {run.matches} {not_null}, "
        f"ADD CONSTRAINT {run.matches}_statement CHECK (statement_id = {sid})"
    )
    if run.report.period is not None:
        # SUCCESS payments of the period without a receipt (confirmed by STK Query): the
        # anti join left them out; the tolerance pass may still pair them.
        run.execute(
            cursor,
            f"""
            INSERT INTO {run.unclaimed} (id, amount)
            SELECT p.id, p.amount FROM {PAYMENT_TABLE} p
            WHERE p.mpesa_receipt_number IS NULL AND p.status = '{matching.SUCCESS}'
              AND p.created_at >= %(start)s - %(slack)s AND p.created_at < %(end)s
              AND {run.in_period()} {run.scope}
            """,
            run.params,
        )
    run.execute(
        cursor,
        f"CREATE UNIQUE INDEX {run.matches}_line ON {run.matches} (line_id, statement_id)",
    )


def unclaim(run: PostgresRun, cursor: Any, update: str) -> None:
    """Run ``update`` (an UPDATE of matches returning the payment each changed line
    claimed before) and take those claims off the claimed total outside the period."""
    run.execute(
        cursor,
        f"""
        WITH changed AS ({update})
        SELECT coalesce(sum(p.amount), 0)
        FROM changed c JOIN {PAYMENT_TABLE} p ON p.id = c.payment_id
        WHERE p.status = '{matching.SUCCESS}' AND NOT {run.in_period()}
        """,
        run.params,
    )
    (claimed_out,) = cursor.fetchone()
    run.claimed_out -= claimed_out


def duplicates(run: PostgresRun, cursor: Any, raw: psycopg.Connection[Any]) -> None:
    """Payment lines sharing a receipt: the first claims it (its match stands), the others
    are duplicates and claim nothing. Python noted the rows; only those are looked at."""
    cursor.execute(f"CREATE TEMP TABLE {run.repeats} (line_id bigint) ON COMMIT DROP")
    if not run.writer.repeats:
        return
    base = run.writer.base
    with (
        raw.cursor() as raw_cursor,
        raw_cursor.copy(f"COPY {run.repeats} (line_id) FROM STDIN") as copy,
    ):
        copy.write("".join(f"{base + n}\n" for n in set(run.writer.repeats)))
    cursor.execute(f"ANALYZE {run.repeats}")
    unclaim(
        run,
        cursor,
        f"""
        UPDATE {run.matches} m
        SET result = '{ResultClass.DUPLICATE}', payment_id = NULL, match_method = ''
        FROM (
            SELECT x.line_id, x.payment_id FROM (
                SELECT r.line_id, m2.payment_id, row_number() OVER (
                    PARTITION BY l.receipt_number ORDER BY r.line_id) AS rank
                FROM {run.repeats} r
                -- A lookup by the line index per repeated row (LIMIT keeps the planner,
                -- which has no statistics of the new table, from scanning all matches).
                CROSS JOIN LATERAL (
                    SELECT m2.payment_id FROM {run.matches} m2
                    WHERE m2.line_id = r.line_id AND m2.statement_id = %(sid)s
                      AND m2.result IN ({sql_literals(PAYMENT_RESULTS)})
                    LIMIT 1
                ) m2
                JOIN {run.lines} l ON l.id = r.line_id AND l.statement_id = %(sid)s
            ) x WHERE x.rank > 1
        ) d
        WHERE m.line_id = d.line_id AND m.statement_id = %(sid)s
        RETURNING d.payment_id
        """,
    )


def exceptions(run: PostgresRun, cursor: Any) -> None:
    """The few matches that are not settled yet, or are breaks, with their line."""
    with parallel_plans(cursor):
        run.execute(
            cursor,
            f"""
        CREATE TEMP TABLE {run.exc} ON COMMIT DROP AS
        SELECT m.line_id AS id, l.line_no, l.receipt_number, l.completed_at, m.amount,
               l.other_party,
               l.details, l.account_reference, m.result AS was, m.result,
               m.payment_id AS was_payment, m.payment_id, m.match_method,
               NULL::text[] AS candidates
        FROM {run.matches} m
        JOIN {run.lines} l ON l.id = m.line_id AND l.statement_id = %(sid)s
        WHERE m.result IN ({sql_literals(EXCEPTIONS)})
        """,
            run.params,
        )
    cursor.execute(f"ANALYZE {run.exc}")
    # Unknown lines repeating a receipt that parallel readers saw in different chunks.
    run.execute(
        cursor,
        f"""
        UPDATE {run.exc} e SET result = '{ResultClass.DUPLICATE}'
        FROM (
            SELECT x.id FROM (
                SELECT id, row_number() OVER (PARTITION BY receipt_number ORDER BY id)
                           AS rank
                FROM {run.exc} WHERE result = '{ResultClass.UNKNOWN_PAYMENT}'
            ) x WHERE x.rank > 1
        ) d
        WHERE e.id = d.id
        """,
    )


def tolerance(run: PostgresRun, cursor: Any) -> None:
    """Lines still unknown against payments without a receipt: the candidates, then the
    pairs that are each other's only candidate."""
    # The lines' time span, as values the planner sees (a subquery's bounds would be a
    # guess, and a guessed narrow span makes it read the created_at index for all
    # payments).
    cursor.execute(
        f"SELECT min(completed_at), max(completed_at) FROM {run.exc} "
        f"WHERE result = '{ResultClass.UNKNOWN_PAYMENT}'"
    )
    low, high = cursor.fetchone()
    params = {**run.params, "low": low, "high": high}
    run.execute(
        cursor,
        f"""
        CREATE TEMP TABLE {run.cand} ON COMMIT DROP AS
        WITH leftover AS (
            SELECT e.id, e.line_no, e.completed_at, e.amount, e.other_party, e.details,
                   {account_key("a.account")} AS account_key
            FROM {run.exc} e
            {ACCOUNT_LATERAL}
            WHERE e.result = '{ResultClass.UNKNOWN_PAYMENT}'
        ), pool AS (
            SELECT p.id, p.status, p.amount, p.phone_number AS phone,
                   {account_key("p.account_reference")} AS account_key,
                   coalesce(p.transaction_date, p.created_at) AS time
            FROM {PAYMENT_TABLE} p
            WHERE p.mpesa_receipt_number IS NULL
              AND p.status IN ('INITIATED', 'PENDING', 'SUCCESS', 'FAILED')
              AND p.created_at >= %(low)s::timestamptz - %(window)s - %(slack)s
              AND p.created_at <= %(high)s::timestamptz + %(window)s
              {run.scope}
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
            {MASK_LATERALS}
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
    run.execute(
        cursor,
        f"""
        UPDATE {run.exc} e
        SET result = t.result, payment_id = t.payment_id, candidates = t.candidates,
            match_method = CASE WHEN t.payment_id IS NULL THEN '' ELSE 'tolerance' END
        FROM (
            SELECT c.line_id,
                CASE WHEN max(c.line_degree) = 1 AND max(c.payment_degree) = 1
                     THEN (array_agg(c.id))[1] END AS payment_id,
                CASE WHEN max(c.line_degree) > 1 OR max(c.payment_degree) > 1
                          THEN '{ResultClass.AMBIGUOUS}'
                     WHEN (array_agg(c.status))[1] = '{matching.SUCCESS}'
                          THEN '{ResultClass.MATCHED}'
                     ELSE '{ResultClass.NOT_SUCCESS}' END AS result,
                CASE WHEN max(c.line_degree) > 1 OR max(c.payment_degree) > 1
                     THEN array_agg(c.id::text ORDER BY c.id) END AS candidates
            FROM {run.cand} c GROUP BY c.line_id
        ) t
        WHERE e.id = t.line_id
        """,
    )


def apply_exceptions(run: PostgresRun, cursor: Any) -> None:
    run.execute(
        cursor,
        f"""
        UPDATE {run.matches} m
        SET result = e.result, payment_id = e.payment_id, match_method = e.match_method
        FROM {run.exc} e
        WHERE m.line_id = e.id AND m.statement_id = %(sid)s
          AND (e.result <> e.was OR e.payment_id IS DISTINCT FROM e.was_payment)
        """,
        run.params,
    )


def payment_index(run: PostgresRun, cursor: Any) -> None:
    """The index that makes a payment claimable by one line of the statement only. Built
    in one go; if two lines claim one payment (repeats that parallel readers could not see
    in each other's rows), the first claims it and the others become duplicates."""
    create = (
        f"CREATE UNIQUE INDEX {run.matches}_payment ON {run.matches} "
        "(payment_id, statement_id) WHERE payment_id IS NOT NULL"
    )
    try:
        with transaction.atomic():
            run.execute(cursor, create)
    except IntegrityError:
        unclaim(
            run,
            cursor,
            f"""
            UPDATE {run.matches} m
            SET result = '{ResultClass.DUPLICATE}', payment_id = NULL, match_method = ''
            FROM (
                SELECT x.line_id, x.payment_id FROM (
                    SELECT line_id, payment_id,
                           row_number() OVER (PARTITION BY payment_id ORDER BY line_id)
                               AS rank
                    FROM {run.matches}
                    WHERE payment_id IN (
                        SELECT payment_id FROM {run.matches}
                        WHERE payment_id IS NOT NULL
                        GROUP BY payment_id HAVING count(*) > 1)
                ) x WHERE x.rank > 1
            ) d
            WHERE m.line_id = d.line_id AND m.statement_id = %(sid)s
            RETURNING d.payment_id
            """,
        )
        run.execute(cursor, create)


def attach(run: PostgresRun, cursor: Any) -> None:
    sid = run.params["sid"]
    for table, parent in ((run.lines, LINE_TABLE), (run.matches, MATCH_TABLE)):
        cursor.execute(f"ALTER TABLE {parent} ATTACH PARTITION {table} FOR VALUES IN ({sid})")
