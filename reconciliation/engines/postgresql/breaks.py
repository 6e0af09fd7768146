# ruff: noqa: S608 - the SQL text is built from table names derived from integer ids and from
# this module's constants; every value from a file or a request is a bound parameter.
"""The PostgreSQL engine's last steps: the breaks from the small tables, and the summary's
totals from one aggregate over the matches and one over the period's payments."""

from __future__ import annotations

import json
from typing import Any

from ... import matching
from ...models import BREAK_CLASSES, ResultClass
from ...report import ZERO, ClassTotals
from .fragments import (
    BREAK_COLUMNS,
    BREAK_TABLE,
    PAYMENT_RESULTS,
    PAYMENT_TABLE,
    parallel_plans,
    sql_literals,
)
from .state import PostgresRun


def breaks(run: PostgresRun, cursor: Any) -> None:
    run.execute(
        cursor,
        f"""
        INSERT INTO {BREAK_TABLE} ({BREAK_COLUMNS})
        SELECT %(run)s, e.result, e.id,
               CASE WHEN e.result IN ('{ResultClass.AMOUNT_MISMATCH}', '{ResultClass.NOT_SUCCESS}')
                    THEN e.payment_id END,
               e.amount,
               CASE WHEN e.result IN ('{ResultClass.AMOUNT_MISMATCH}', '{ResultClass.NOT_SUCCESS}')
                    THEN p.amount END,
               CASE WHEN e.result = '{ResultClass.AMOUNT_MISMATCH}' THEN e.amount - p.amount
                    ELSE e.amount END,
               coalesce(to_jsonb(e.candidates), '[]'::jsonb),
               (e.result = '{ResultClass.NOT_SUCCESS}' AND e.match_method = 'receipt'
                AND e.amount = p.amount
                AND NOT (p.status = 'FAILED' AND p.failure_final)) IS TRUE,
               'open', '', '', '', now()
        FROM {run.exc} e
        LEFT JOIN {PAYMENT_TABLE} p ON p.id = e.payment_id
        WHERE e.result IN ({sql_literals(sorted(BREAK_CLASSES))})
        """,
        run.params,
    )
    # SUCCESS payments a line named as a candidate but none claimed: ambiguous.
    run.execute(
        cursor,
        f"""
        INSERT INTO {BREAK_TABLE} ({BREAK_COLUMNS})
        SELECT %(run)s, '{ResultClass.AMBIGUOUS}', NULL, p.id, NULL, p.amount, -p.amount,
               to_jsonb(a.lines), false, 'open', '', '', '', now()
        FROM (SELECT c.id, array_agg(c.line_no::text ORDER BY c.line_no) AS lines
              FROM {run.cand} c GROUP BY c.id) a
        JOIN {PAYMENT_TABLE} p ON p.id = a.id
        WHERE p.status = '{matching.SUCCESS}'
          AND NOT EXISTS (SELECT 1 FROM {run.exc} e WHERE e.payment_id = p.id)
        """,
        run.params,
    )


def summary(run: PostgresRun, cursor: Any) -> None:
    report = run.report
    classes: dict[str, ClassTotals] = {}
    # This and the period's total are aggregates over a million rows: a second process
    # scans half of them (partial aggregates, not rows, go to the leader).
    with parallel_plans(cursor):
        run.execute(
            cursor,
            f"SELECT result, direction, count(*), sum(amount) FROM {run.matches} "
            "GROUP BY result, direction",
        )
        by_class = cursor.fetchall()
    payment_classes = {*PAYMENT_RESULTS, ResultClass.DUPLICATE, ResultClass.AMBIGUOUS}
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
        if result == ResultClass.MATCHED:
            totals.our_amount += total  # a match has the same amount on both sides
    # Breaks: bridge amounts per class; our amounts of the claimed and named payments.
    cursor.execute(
        f"""
        SELECT kind, line_id IS NULL, count(*), coalesce(sum(our_amount), 0),
               coalesce(sum(bridge_amount), 0)
        FROM {BREAK_TABLE} WHERE run_id = %(run)s GROUP BY kind, line_id IS NULL
        """,
        run.params,
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
        run.execute(
            cursor,
            f"""
            WITH missing AS (
                INSERT INTO {BREAK_TABLE} ({BREAK_COLUMNS})
                SELECT %(run)s, '{ResultClass.MISSING_FROM_STATEMENT}', NULL, u.id, NULL, u.amount,
                       -u.amount, '[]'::jsonb, false, 'open', '', '', '', now()
                FROM {run.unclaimed} u
                WHERE NOT EXISTS (SELECT 1 FROM {run.exc} e WHERE e.payment_id = u.id)
                  AND NOT EXISTS (SELECT 1 FROM {run.cand} c WHERE c.id = u.id)
                RETURNING our_amount
            )
            SELECT count(*), coalesce(sum(our_amount), 0) FROM missing
            """,
            run.params,
        )
        missing_count, missing_total = cursor.fetchone()
        if missing_count:
            totals = classes.setdefault(ResultClass.MISSING_FROM_STATEMENT, ClassTotals())
            totals.count += missing_count
            totals.our_amount += missing_total
            totals.bridge_amount -= missing_total
    # Our total: SUCCESS payments of the period, read straight from the payments (not
    # through the matching, so that the residual checks it), plus the SUCCESS payments
    # the statement claimed or named whose time is outside the period.
    in_period_total = ZERO
    if report.period is not None:
        with parallel_plans(cursor):
            run.execute(
                cursor,
                f"""
                SELECT coalesce(sum(p.amount), 0) FROM {PAYMENT_TABLE} p
                WHERE p.status = '{matching.SUCCESS}'
                  AND p.created_at >= %(start)s - %(slack)s AND p.created_at < %(end)s
                  AND {run.in_period()} {run.scope}
                """,
                run.params,
            )
            (in_period_total,) = cursor.fetchone()
    run.execute(
        cursor,
        f"""
        SELECT coalesce(sum(p.amount), 0) FROM (
            SELECT payment_id FROM {run.exc}
            WHERE match_method = 'tolerance' AND payment_id IS NOT NULL
            UNION ALL
            SELECT payment_id FROM {BREAK_TABLE}
            WHERE run_id = %(run)s AND line_id IS NULL AND kind = '{ResultClass.AMBIGUOUS}'
        ) x JOIN {PAYMENT_TABLE} p ON p.id = x.payment_id
        WHERE p.status = '{matching.SUCCESS}' AND NOT {run.in_period()}
        """,
        run.params,
    )
    (named_outside,) = cursor.fetchone()
    report.our_total = in_period_total + run.claimed_out + named_outside


def write_rejects(raw: Any, sid: int, rejects: list[tuple[int, str, list[str]]]) -> None:
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
