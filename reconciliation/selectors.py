"""Reconciliation reads: runs, breaks, lines and the accountant's CSV report.

Lines and matches are partitioned by statement on PostgreSQL: every query on them filters on
the statement (both tables), so that only that statement's partitions are read.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

from django.db.models import Case, Count, F, OuterRef, QuerySet, Subquery, Sum, When
from django.db.models.functions import Coalesce

from core.exports import safe_text
from core.models import ApiClient
from payments.models import Payment

from .formats.values import EAT
from .models import (
    Break,
    BreakEvent,
    BreakStatus,
    Direction,
    LineMatch,
    ReconciliationRun,
    ResultClass,
    StatementLine,
    StatementReject,
)
from .report import summary_in_order


def run_list(*, client: ApiClient | None) -> QuerySet[ReconciliationRun]:
    """Runs of one API client only (``None``: the runs imported without a client), each with
    ``open_breaks``: its breaks still open now (the summary's count is the one at import)."""
    still_open = (
        Break.objects.filter(run=OuterRef("pk"), status=BreakStatus.OPEN)
        .order_by()
        .values("run")
        .annotate(count=Count("id"))
        .values("count")
    )
    return (
        ReconciliationRun.objects.filter(client=client)
        .select_related("statement")
        .annotate(open_breaks=Coalesce(Subquery(still_open), 0))
    )


def break_list(
    *, run: ReconciliationRun, kind: str | None = None, status: str | None = None
) -> QuerySet[Break]:
    query = (
        Break.objects.filter(run=run)
        .select_related("line", "payment")
        .prefetch_related("approvals")
    )
    if kind:
        query = query.filter(kind=kind)
    if status:
        query = query.filter(status=status)
    return query.order_by("id")


def break_scope(*, client: ApiClient | None) -> QuerySet[Break]:
    return (
        Break.objects.filter(run__client=client)
        .select_related("line", "payment", "run")
        .prefetch_related("approvals")
    )


def break_events(*, brk: Break) -> QuerySet[BreakEvent]:
    return BreakEvent.objects.filter(break_record=brk).order_by("created_at", "id")


def run_lines(*, run: ReconciliationRun, result: str | None = None) -> QuerySet[StatementLine]:
    """The statement's lines in file order, each with its match."""
    sid = run.statement_id
    query = StatementLine.objects.filter(statement_id=sid, match__statement_id=sid)
    if result:
        query = query.filter(match__result=result)
    return query.select_related("match").order_by("id")


def run_rejects(*, run: ReconciliationRun) -> QuerySet[StatementReject]:
    return StatementReject.objects.filter(statement_id=run.statement_id).order_by("row_number")


# --- The accountant's report ---------------------------------------------------------------------

REPORT_COLUMNS = [
    "section",
    "class",
    "count",
    "row",
    "receipt_number",
    "completed_at_eat",
    "paid_in",
    "withdrawn",
    "statement_amount",
    "our_amount",
    "difference",
    "payment_id",
    "payment_status",
    "account_reference",
    "other_party",
    "details",
    "break_id",
    "break_status",
    "resolution",
    "resolved_by",
    "resolution_reason",
    "reason",
]


# Columns holding text from the statement or from people (a payer types A/C No.): a cell a
# spreadsheet would read as a formula (=, +, -, @, or a tab or carriage return first) is
# written with a leading apostrophe, so that it is shown as text, never run.
TEXT_COLUMNS = (
    "receipt_number",
    "account_reference",
    "other_party",
    "details",
    "resolved_by",
    "resolution_reason",
    "reason",
)


def _as_text(row: dict[str, Any]) -> dict[str, Any]:
    for column in TEXT_COLUMNS:
        value = row.get(column)
        if isinstance(value, str):
            row[column] = safe_text(value)
    return row


def _money(value: Decimal | str | None) -> str:
    if value is None or value == "":
        return ""
    return format(Decimal(value).quantize(Decimal("0.01")), "f")


def class_statement_amounts(*, run: ReconciliationRun) -> dict[str, Decimal]:
    """Each class's statement amount with the statement's signs (money withdrawn negative),
    in one aggregate over the statement's lines; the summary's totals are unsigned sums."""
    totals = (
        LineMatch.objects.filter(statement_id=run.statement_id)
        .order_by()
        .values("result")
        .annotate(
            total=Sum(Case(When(direction=Direction.OUT, then=-F("amount")), default=F("amount")))
        )
        .values_list("result", "total")
    )
    return {result: total for result, total in totals if total is not None}


def _signed(amount: Decimal | None, direction: str) -> Decimal | None:
    """An amount with the sign the statement shows it with: money withdrawn is negative."""
    if amount is None:
        return None
    return -amount if direction == Direction.OUT else amount


def run_report_csv(*, run: ReconciliationRun, chunk_rows: int = 5000) -> Iterator[str]:
    """The run as CSV, in one table with a ``section`` column: ``summary`` (count and amounts
    per class), ``bridge`` (statement total − our total = explained differences + residual),
    ``line`` (every statement line, with its class, the payment's status and the break),
    ``payment`` (our payments that are breaks on their own: missing from the statement,
    ambiguous) and ``reject`` (the rows that could not be read, with the reason and the row as
    read). Statement amounts carry the statement's sign: a charge withdrawn is negative."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=REPORT_COLUMNS, extrasaction="ignore")

    def flush() -> str:
        text = buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
        return text

    writer.writeheader()
    summary = summary_in_order(run.summary or {})
    explained = summary.get("bridge", {}).get("explained", {})
    signed = class_statement_amounts(run=run)
    for name, totals in summary.get("classes", {}).items():
        statement_amount = totals.get("statement_amount", "")
        if name in signed:
            statement_amount = _money(signed[name])
        writer.writerow(
            {
                "section": "summary",
                "class": name,
                "count": totals.get("count", 0),
                "statement_amount": statement_amount,
                "our_amount": totals.get("our_amount", ""),
                "difference": explained.get(name, ""),
            }
        )
    for name, value in summary.get("bridge", {}).items():
        if name != "explained":
            writer.writerow({"section": "bridge", "class": name, "statement_amount": value})
    yield flush()

    breaks: dict[int, Break] = {}
    payment_breaks: list[Break] = []
    for brk in Break.objects.filter(run=run).select_related("payment", "resolved_payment"):
        if brk.line_id is not None:
            breaks[brk.line_id] = brk
        else:
            payment_breaks.append(brk)
    rows = (
        StatementLine.objects.filter(
            statement_id=run.statement_id, match__statement_id=run.statement_id
        )
        .order_by("id")
        .values_list(
            "id",
            "line_no",
            "receipt_number",
            "completed_at",
            "paid_in",
            "withdrawn",
            "account_reference",
            "other_party",
            "details",
            "match__result",
            "match__direction",
            "match__amount",
            "match__payment_id",
            "match__payment__status",
        )
        .iterator(chunk_size=chunk_rows)
    )
    for count, (
        line_id,
        line_no,
        receipt,
        completed_at,
        paid_in,
        withdrawn,
        account,
        other_party,
        details,
        result,
        direction,
        amount,
        payment_id,
        payment_status,
    ) in enumerate(rows, 1):
        row: dict[str, Any] = {
            "section": "line",
            "class": result,
            "row": line_no,
            "receipt_number": receipt,
            "completed_at_eat": completed_at.astimezone(EAT).strftime("%d-%m-%Y %H:%M:%S"),
            "paid_in": _money(paid_in),
            "withdrawn": _money(withdrawn),
            "statement_amount": _money(_signed(amount, direction)),
            "payment_id": payment_id or "",
            "payment_status": payment_status or "",
            "account_reference": account,
            "other_party": other_party,
            "details": details,
        }
        if result == ResultClass.MATCHED:
            row["our_amount"] = _money(amount)
            row["difference"] = "0.00"
        line_break = breaks.get(line_id)
        if line_break is not None:
            _break_columns(row, line_break)
        writer.writerow(_as_text(row))
        if count % chunk_rows == 0:
            yield flush()
    for brk in payment_breaks:
        payment = brk.payment
        row = {
            "section": "payment",
            "class": brk.kind,
            "payment_id": brk.payment_id or "",
            "account_reference": payment.account_reference if payment else "",
            "completed_at_eat": (
                (payment.transaction_date or payment.created_at)
                .astimezone(EAT)
                .strftime("%d-%m-%Y %H:%M:%S")
                if payment
                else ""
            ),
        }
        _break_columns(row, brk)
        writer.writerow(_as_text(row))
    yield flush()

    rejects = StatementReject.objects.filter(statement_id=run.statement_id).order_by(
        "row_number", "id"
    )
    for count, reject in enumerate(rejects.iterator(chunk_size=chunk_rows), 1):
        raw = reject.raw if isinstance(reject.raw, list) else [reject.raw]
        writer.writerow(
            _as_text(
                {
                    "section": "reject",
                    "row": reject.row_number,
                    "reason": reject.reason,
                    "details": " | ".join("" if cell is None else str(cell) for cell in raw),
                }
            )
        )
        if count % chunk_rows == 0:
            yield flush()
    yield flush()


def _break_columns(row: dict[str, Any], brk: Break) -> None:
    # The payment the break names, or the one a person matched the line to.
    payment: Payment | None = brk.payment or brk.resolved_payment
    our_amount = brk.our_amount
    if our_amount is None and payment is not None:
        our_amount = payment.amount
    row["our_amount"] = _money(our_amount)
    row["difference"] = _money(brk.bridge_amount)
    row["payment_status"] = payment.status if payment else ""
    row["payment_id"] = row.get("payment_id") or (payment.pk if payment else "")
    if brk.kind == ResultClass.AMBIGUOUS and brk.candidates:
        row["details"] = (row.get("details") or "") + (
            " | candidates: " + ", ".join(str(c) for c in brk.candidates)
        )
    row["break_id"] = brk.pk
    row["break_status"] = brk.status
    row["resolution"] = brk.resolution
    row["resolved_by"] = brk.resolved_by
    row["resolution_reason"] = brk.resolution_reason
