"""SQL text shared by the PostgreSQL engine's steps: table and column lists, literals, the
line-kind CASE, and the plan settings for its large joins."""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator
from typing import Any

from ... import matching
from ...models import ResultClass

CREATION_SLACK = matching.CREATION_SLACK
PAYMENT_TABLE = "payments_payment"
BREAK_TABLE = "reconciliation_break"
UPPER = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
LOWER = "abcdefghijklmnopqrstuvwxyz"
BREAK_COLUMNS = (
    "run_id, kind, line_id, payment_id, statement_amount, our_amount, bridge_amount, "
    "candidates, auto_resolvable, status, resolution, resolved_by, resolution_reason, created_at"
)
PAYMENT_RESULTS = (
    ResultClass.MATCHED,
    ResultClass.AMOUNT_MISMATCH,
    ResultClass.NOT_SUCCESS,
    ResultClass.UNKNOWN_PAYMENT,
)
# Results the main insert may give provisionally, or that make a break: the exceptions.
EXCEPTIONS = (
    ResultClass.AMOUNT_MISMATCH,
    ResultClass.NOT_SUCCESS,
    ResultClass.UNKNOWN_PAYMENT,
    ResultClass.DUPLICATE,
)


def sql_literals(values: Iterable[str]) -> str:
    return ", ".join("'" + v.replace("'", "''") + "'" for v in values)


def like_any(column: str, words: Iterable[str]) -> str:
    # Doubled %: these queries are sent with parameters (pyformat).
    return " OR ".join(f"{column} LIKE '%%{w}%%'" for w in words)


# --- SQL -----------------------------------------------------------------------------------------


def kind_sql() -> str:
    """:func:`matching.line_kind` in SQL, over columns status, reason_type, details, direction,
    amount. The first branch is the common case, tested with equalities only."""
    text = (
        f"translate(CASE WHEN reason_type <> '' THEN reason_type ELSE details END, "
        f"'{UPPER}', '{LOWER}')"
    )
    reasons = sql_literals(matching.PAYMENT_REASON_TYPES)
    return f"""CASE
        WHEN status = 'Completed' AND reason_type IN ({reasons})
            AND direction = 'in' AND amount > 0 THEN '{matching.PAYMENT}'
        WHEN status <> '' AND translate(status, '{UPPER}', '{LOWER}') <> 'completed'
            THEN '{ResultClass.NOT_COMPLETED}'
        WHEN reason_type IN ({reasons}) AND direction = 'in' AND amount > 0
            THEN '{matching.PAYMENT}'
        WHEN {like_any(text, matching.CHARGE_WORDS)} THEN '{ResultClass.CHARGE}'
        WHEN {like_any(text, matching.FEE_WORDS)} THEN '{ResultClass.FEE}'
        WHEN {like_any(text, matching.SWEEP_WORDS)} THEN '{ResultClass.SWEEP}'
        WHEN direction = 'in' AND amount > 0 THEN '{matching.PAYMENT}'
        ELSE '{ResultClass.OTHER}' END"""


def account_key(expression: str) -> str:
    return f"translate(replace({expression}, ' ', ''), '{LOWER}', '{UPPER}')"


# The payer's normalised (masked) number, as :func:`matching.payer_mask` and
# :func:`matching.normalise_mask`, over columns of ``e``. OFFSET 0 keeps each step a subquery
# computed once per row: pulled up, every use of a step would repeat its regular expressions.
MASK_LATERALS = """
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
ACCOUNT_LATERAL = """
    CROSS JOIN LATERAL (SELECT CASE
        WHEN e.account_reference <> '' THEN e.account_reference
        WHEN strpos(e.details, 'Acc.') > 0
            THEN btrim(substr(e.details, strpos(e.details, 'Acc.') + 4))
        ELSE '' END AS account) a
"""


@contextlib.contextmanager
def parallel_plans(cursor: Any) -> Iterator[None]:
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
