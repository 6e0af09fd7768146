"""The Python engine, the reference the PostgreSQL engine is held equal to (SQLite, or any
database for small statements): rows read with :class:`~reconciliation.formats.rows.RowReader`,
matched with :mod:`reconciliation.matching`, written with ``bulk_create``."""

from __future__ import annotations

import datetime as dt
import uuid
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from django.db import connection
from django.db.models import Q

from payments.models import Payment

from .. import matching
from ..formats.limits import ParseLimits, reject_record
from ..formats.parsed import ParsedStatement
from ..formats.rows import AMOUNT_FIELDS, RowReader
from ..formats.values import eat_to_utc, parse_statement_time
from ..matching import LineFacts, MatchResult, PaymentFacts, Period
from ..models import (
    BREAK_CLASSES,
    LINE_ID_FACTOR,
    Break,
    LineMatch,
    ReconciliationRun,
    ResultClass,
    Statement,
    StatementLine,
    StatementReject,
)
from ..report import ZERO, ClassTotals, EngineReport, Timer, statement_period
from .partitions import partitions_create_attached


@dataclass
class ReadLine:
    line_no: int
    receipt: str
    completed_at: dt.datetime
    paid_in: Decimal | None
    withdrawn: Decimal | None
    direction: str
    amount: Decimal
    balance: Decimal | None
    status: str
    reason_type: str
    details: str
    other_party: str
    linked: str
    account: str
    kind: str


def read_lines(
    parsed: ParsedStatement,
) -> tuple[list[ReadLine], list[tuple[int, str, list[str]]], Counter[str]]:
    """Every row through :class:`RowReader`, then typed exactly as the PostgreSQL
    engine's load types them."""
    reader = RowReader(parsed.layout)
    reject_max_chars = ParseLimits.from_settings().reject_max_chars
    columns = parsed.layout.columns
    lines: list[ReadLine] = []
    rejects: list[tuple[int, str, list[str]]] = []
    skipped: Counter[str] = Counter()

    def cell(cells: list[str], name: str) -> str:
        index = columns.get(name)
        return cells[index] if index is not None else ""

    for number, raw in parsed.rows:
        outcome = reader.read(raw)
        if outcome.kind == "skip":
            skipped[outcome.reason] += 1
            continue
        if outcome.kind == "reject":
            rejects.append((number, *reject_record(outcome.reason, raw, reject_max_chars)))
            continue
        cells = outcome.cells
        amounts = {
            name: (Decimal(cell(cells, name)) if cell(cells, name) != "" else None)
            for name in AMOUNT_FIELDS
        }
        direction, amount = matching.direction_and_amount(amounts["paid_in"], amounts["withdrawn"])
        status = cell(cells, "status")
        reason_type = cell(cells, "reason_type")
        details = cell(cells, "details")
        lines.append(
            ReadLine(
                line_no=number,
                receipt=cell(cells, "receipt"),
                completed_at=eat_to_utc(parse_statement_time(cell(cells, "completed"))),
                paid_in=amounts["paid_in"],
                withdrawn=amounts["withdrawn"],
                direction=direction,
                amount=amount,
                balance=amounts["balance"],
                status=status,
                reason_type=reason_type,
                details=details,
                other_party=cell(cells, "other_party"),
                linked=cell(cells, "linked"),
                account=cell(cells, "account").strip(" "),
                kind=matching.line_kind(
                    status=status,
                    reason_type=reason_type,
                    details=details,
                    direction=direction,
                    amount=amount,
                ),
            )
        )
    return lines, rejects, skipped


def payment_facts(*, client_id: Any) -> list[PaymentFacts]:
    scope = Q(client_id=client_id) if client_id is not None else Q()
    rows = Payment.objects.filter(scope).values_list(
        "id",
        "status",
        "amount",
        "phone_number",
        "account_reference",
        "mpesa_receipt_number",
        "transaction_date",
        "created_at",
        "failure_final",
    )
    return [
        PaymentFacts(
            id=pk,
            status=status,
            amount=amount,
            phone=phone,
            account_reference=account,
            receipt=receipt,
            time=transaction_date or created_at,
            failure_final=final,
            created_at=created_at,
        )
        for pk, status, amount, phone, account, receipt, transaction_date, created_at, final in rows
    ]


def line_facts(lines: Iterable[ReadLine]) -> list[LineFacts]:
    return [
        LineFacts(
            line_no=line.line_no,
            receipt=line.receipt,
            completed_at=line.completed_at,
            amount=line.amount,
            kind=line.kind,
            other_party=line.other_party,
            details=line.details,
            account=line.account,
        )
        for line in lines
    ]


def run_python(
    *,
    statement: Statement,
    run: ReconciliationRun,
    parsed: ParsedStatement,
    window_seconds: int,
    timer: Timer,
    reparse: Callable[[], ParsedStatement] | None = None,
    read: tuple[Any, ...] | None = None,
) -> EngineReport:
    """``read``: the file's rows already read by :func:`read_lines` (outside the import's
    transaction, so that reading does not hold SQLite's write lock)."""
    if read is None:
        with timer.phase("load"):
            read = read_lines(parsed)
    lines, rejects, skipped = read
    report = EngineReport(line_count=len(lines), reject_count=len(rejects), skipped=dict(skipped))
    if lines:
        report.first_line_at = min(line.completed_at for line in lines)
        report.last_line_at = max(line.completed_at for line in lines)
    period = statement_period(statement, report.first_line_at, report.last_line_at)
    report.period = period
    with timer.phase("match"):
        payments = payment_facts(client_id=statement.client_id)
        by_id = {p.id: p for p in payments}
        result = matching.match(
            line_facts(lines),
            payments,
            window=dt.timedelta(seconds=window_seconds),
            period=period,
        )
    with timer.phase("write"):
        if connection.vendor == "postgresql":
            partitions_create_attached(statement.pk)
        StatementReject.objects.bulk_create(
            [
                StatementReject(statement=statement, row_number=n, reason=reason, raw=raw)
                for n, reason, raw in rejects
            ],
            batch_size=1000,
        )
        base = statement.pk * LINE_ID_FACTOR
        ops = connection.ops
        native_uuid = connection.features.has_native_uuid_field

        def uuid_value(value: uuid.UUID | None) -> Any:
            return value if value is None or native_uuid else value.hex

        # Plain parameterised INSERTs: several times faster than model instances.
        _insert_many(
            StatementLine._meta.db_table,
            (
                "id",
                "statement_id",
                "line_no",
                "receipt_number",
                "completed_at",
                "paid_in",
                "withdrawn",
                "balance",
                "transaction_status",
                "reason_type",
                "details",
                "other_party",
                "linked_transaction_id",
                "account_reference",
            ),
            [
                (
                    base + line.line_no,
                    statement.pk,
                    line.line_no,
                    line.receipt,
                    ops.adapt_datetimefield_value(line.completed_at),
                    ops.adapt_decimalfield_value(line.paid_in, 14, 2),
                    ops.adapt_decimalfield_value(line.withdrawn, 14, 2),
                    ops.adapt_decimalfield_value(line.balance, 14, 2),
                    line.status,
                    line.reason_type,
                    line.details,
                    line.other_party,
                    line.linked,
                    line.account,
                )
                for line in lines
            ],
        )
        _insert_many(
            LineMatch._meta.db_table,
            (
                "line_id",
                "statement_id",
                "direction",
                "amount",
                "result",
                "payment_id",
                "match_method",
            ),
            [
                (
                    base + line.line_no,
                    statement.pk,
                    line.direction,
                    ops.adapt_decimalfield_value(line.amount, 14, 2),
                    result.lines[line.line_no].result,
                    uuid_value(result.lines[line.line_no].payment_id),
                    result.lines[line.line_no].method,
                )
                for line in lines
            ],
        )
        write_breaks(
            run=run,
            lines=lines,
            result=result,
            payments=by_id,
            line_base=base,
        )
    with timer.phase("summary"):
        fill_report(report, lines=lines, result=result, payments=by_id, period=period)
    return report


def _insert_many(table: str, columns: tuple[str, ...], rows: list[tuple[Any, ...]]) -> None:
    if not rows:
        return
    placeholders = ", ".join(["%s"] * len(columns))
    sql = f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({placeholders})"  # noqa: S608
    with connection.cursor() as cursor:
        for start in range(0, len(rows), 5000):
            cursor.executemany(sql, rows[start : start + 5000])


def line_break(
    *,
    run: ReconciliationRun,
    line_id: int,
    kind: str,
    amount: Decimal,
    payment: PaymentFacts | None,
    candidates: tuple[str, ...],
    auto_resolvable: bool,
) -> Break:
    if kind == ResultClass.AMOUNT_MISMATCH:
        assert payment is not None
        bridge, ours = amount - payment.amount, payment.amount
    elif kind == ResultClass.NOT_SUCCESS:
        assert payment is not None
        bridge, ours = amount, payment.amount
    else:
        bridge, ours = amount, None
    return Break(
        run=run,
        kind=kind,
        line_id=line_id,
        payment_id=payment.id if payment is not None else None,
        statement_amount=amount,
        our_amount=ours,
        bridge_amount=bridge,
        candidates=list(candidates),
        auto_resolvable=auto_resolvable,
    )


def write_breaks(
    *,
    run: ReconciliationRun,
    lines: list[ReadLine],
    result: MatchResult,
    payments: dict[uuid.UUID, PaymentFacts],
    line_base: int,
) -> None:
    objects = []
    for line in lines:
        outcome = result.lines[line.line_no]
        if outcome.result not in BREAK_CLASSES:
            continue
        payment = payments[outcome.payment_id] if outcome.payment_id is not None else None
        objects.append(
            line_break(
                run=run,
                line_id=line_base + line.line_no,
                kind=outcome.result,
                amount=line.amount,
                payment=payment,
                candidates=outcome.candidates,
                auto_resolvable=outcome.auto_resolvable,
            )
        )
    for payment_id, broken in result.payments.items():
        payment = payments[payment_id]
        objects.append(
            Break(
                run=run,
                kind=broken.kind,
                payment_id=payment_id,
                our_amount=payment.amount,
                bridge_amount=-payment.amount,
                candidates=list(broken.candidates),
            )
        )
    Break.objects.bulk_create(objects, batch_size=1000)


def fill_report(
    report: EngineReport,
    *,
    lines: list[ReadLine],
    result: MatchResult,
    payments: dict[uuid.UUID, PaymentFacts],
    period: Period | None,
) -> None:
    classes: dict[str, ClassTotals] = {}
    for line in lines:
        if line.direction == "in":
            report.rows_paid_in += line.amount
        else:
            report.rows_withdrawn += line.amount
        outcome = result.lines[line.line_no]
        totals = classes.setdefault(outcome.result, ClassTotals())
        totals.count += 1
        totals.statement_amount += line.amount
        payment = payments.get(outcome.payment_id) if outcome.payment_id else None
        if payment is not None:
            totals.our_amount += payment.amount
        if line.kind == matching.PAYMENT:
            report.statement_total += line.amount
        if outcome.result in BREAK_CLASSES:
            if outcome.result == ResultClass.AMOUNT_MISMATCH:
                assert payment is not None
                totals.bridge_amount += line.amount - payment.amount
            else:
                totals.bridge_amount += line.amount
    for payment_id, broken in result.payments.items():
        payment = payments[payment_id]
        totals = classes.setdefault(broken.kind, ClassTotals())
        totals.count += 1
        totals.our_amount += payment.amount
        totals.bridge_amount -= payment.amount
    report.classes = classes
    # Our total, from the payments themselves: SUCCESS in the period, plus SUCCESS payments
    # the statement matched or named as candidates outside it.
    involved = {r.payment_id for r in result.lines.values() if r.payment_id is not None}
    involved |= set(result.payments)
    report.our_total = sum(
        (
            p.amount
            for p in payments.values()
            if p.status == matching.SUCCESS
            and ((period is not None and period.contains(p.time)) or p.id in involved)
        ),
        ZERO,
    )
