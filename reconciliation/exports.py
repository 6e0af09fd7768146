"""Reconciliation breaks for accountants: the breaks list (with its filters) as CSV or XLSX,
with the statement line and the payment each is about (core.exports: streamed, formula-safe,
amounts as numbers, East Africa Time)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from django.db.models import QuerySet
from rest_framework.request import Request

from core.auth import HasReconciliationScope, request_client
from core.exports import CHUNK_ROWS, Column, Export, ExportView, export_views

from .models import Break
from .selectors import break_scope

FIELDS = (
    "id",
    "run_id",
    "kind",
    "status",
    "statement_amount",
    "our_amount",
    "line__receipt_number",
    "line__completed_at",
    "line__other_party",
    "line__account_reference",
    "payment_id",
    "payment__mpesa_receipt_number",
    "payment__status",
    "resolution",
    "resolved_by",
    "resolved_at",
    "resolution_reason",
    "created_at",
)
COLUMNS = (
    Column("Break ID", "int"),
    Column("Reconciliation run", "int"),
    Column("Kind"),
    Column("Status"),
    Column("Statement amount (KES)", "amount"),
    Column("Our amount (KES)", "amount"),
    Column("Statement receipt"),
    Column("Statement time (EAT)", "time"),
    Column("Statement other party"),
    Column("Statement account reference"),
    Column("Payment ID"),
    Column("Payment receipt"),
    Column("Payment status"),
    Column("Resolution"),
    Column("Resolved by"),
    Column("Resolved (EAT)", "time"),
    Column("Resolution reason"),
    Column("Found (EAT)", "time"),
)


def break_rows(queryset: QuerySet[Break]) -> Iterator[Sequence[Any]]:
    ordered = queryset.order_by("id").values_list(*FIELDS)
    yield from ordered.iterator(chunk_size=CHUNK_ROWS)


BREAKS = Export(name="reconciliation-breaks", title="Breaks", columns=COLUMNS, rows=break_rows)


class BreakExportView(ExportView):
    """``GET /reconciliation/breaks/export.csv`` and ``.xlsx``: the breaks the list would
    show with the same filters (``kind``, ``status``, ``run``), all of them."""

    permission_classes = [HasReconciliationScope]
    export = BREAKS

    def export_queryset(self, request: Request) -> QuerySet[Break]:
        from .api.breaks import break_filter

        return break_filter(break_scope(client=request_client(request)), request.query_params)


BreakExportCsv, BreakExportXlsx = export_views(
    BreakExportView,
    operation_id="reconciliation_breaks_export",
    what="The reconciliation breaks (with the list's filters)",
)
