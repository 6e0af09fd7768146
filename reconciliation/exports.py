"""Reconciliation breaks for accountants: the breaks list (with its filters) as CSV or XLSX,
with the statement line and the payment each is about (core.exports: streamed, formula-safe,
amounts as numbers, East Africa Time)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from django.db.models import QuerySet
from django.http import HttpResponseBase
from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework.request import Request
from rest_framework.views import APIView

from core.api import ApiError, errors
from core.auth import HasReconciliationScope, request_client
from core.exports import (
    CHUNK_ROWS,
    EAT,
    Column,
    TooManyRows,
    csv_response,
    xlsx_check_size,
    xlsx_response,
)

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


def breaks_export(queryset: QuerySet[Break], file_format: str) -> HttpResponseBase:
    stamp = timezone.now().astimezone(EAT).strftime("%Y%m%d-%H%M%S")
    filename = f"reconciliation-breaks-{stamp}.{file_format}"
    if file_format == "xlsx":
        xlsx_check_size(queryset)
        return xlsx_response(COLUMNS, break_rows(queryset), filename, "Breaks")
    return csv_response(COLUMNS, break_rows(queryset), filename)


class BreakExportView(APIView):
    """``GET /reconciliation/breaks/export.csv`` and ``.xlsx``: the breaks the list would
    show with the same filters (``kind``, ``status``, ``run``), all of them."""

    permission_classes = [HasReconciliationScope]
    file_format = "csv"

    def get(self, request: Request) -> HttpResponseBase:
        from .api.breaks import break_filter

        query = break_filter(break_scope(client=request_client(request)), request.query_params)
        try:
            return breaks_export(query, self.file_format)
        except TooManyRows as exc:
            raise ApiError(code="too_many_rows", message=str(exc), http_status=400) from None


_XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
_ERRORS = errors(
    e400="A filter's value is not valid, or an XLSX export over EXPORT_XLSX_MAX_ROWS rows "
    "(too_many_rows)"
)


class BreakExportCsv(BreakExportView):
    file_format = "csv"

    @extend_schema(
        operation_id="reconciliation_breaks_export_csv",
        summary="The reconciliation breaks (with the list's filters) as CSV, streamed",
        responses={(200, "text/csv"): OpenApiResponse(OpenApiTypes.BINARY), **_ERRORS},
    )
    def get(self, request: Request) -> HttpResponseBase:
        return super().get(request)


class BreakExportXlsx(BreakExportView):
    file_format = "xlsx"

    @extend_schema(
        operation_id="reconciliation_breaks_export_xlsx",
        summary="The reconciliation breaks (with the list's filters) as XLSX",
        responses={(200, _XLSX): OpenApiResponse(OpenApiTypes.BINARY), **_ERRORS},
    )
    def get(self, request: Request) -> HttpResponseBase:
        return super().get(request)
