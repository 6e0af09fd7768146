"""Payments for accountants: the API's list (with its filters) as CSV or XLSX, oldest first,
and the admin's action on selected payments (core.exports: streamed, formula-safe, amounts as
numbers, East Africa Time)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from django.db.models import QuerySet
from django.http import HttpResponseBase
from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework.request import Request
from rest_framework.serializers import ValidationError
from rest_framework.views import APIView

from core.api import ApiError, errors
from core.auth import HasPaymentsScope, request_client, request_key
from core.exports import (
    CHUNK_ROWS,
    EAT,
    Column,
    TooManyRows,
    csv_response,
    xlsx_check_size,
    xlsx_response,
)

from .models import Payment
from .selectors import payment_list

FIELDS = (
    "created_at",
    "id",
    "mpesa_receipt_number",
    "channel",
    "status",
    "amount",
    "paid_amount",
    "phone_number",
    "payer_phone",
    "payer_name",
    "account_reference",
    "bill_ref_number",
    "account__shortcode",
    "result_code",
    "result_desc",
    "transaction_date",
    "needs_review",
)
COLUMNS = (
    Column("Created (EAT)", "time"),
    Column("Payment ID"),
    Column("M-Pesa receipt"),
    Column("Channel"),
    Column("Status"),
    Column("Amount (KES)", "amount"),
    Column("Amount paid (KES)", "amount"),
    Column("Phone"),
    Column("Payer number as M-Pesa sent it"),
    Column("Payer name"),
    Column("Account reference"),
    Column("Account number typed (C2B)"),
    Column("Paybill or till"),
    Column("Result code"),
    Column("Result"),
    Column("Completed by M-Pesa (EAT)", "time"),
    Column("Needs review", value=lambda row: "yes" if row[16] else "no"),
)


def payment_rows(queryset: QuerySet[Payment]) -> Iterator[Sequence[Any]]:
    """The rows, oldest first, fetched CHUNK_ROWS at a time (a server-side cursor on
    PostgreSQL: memory stays flat however many there are)."""
    ordered = queryset.order_by("created_at", "id").values_list(*FIELDS)
    yield from ordered.iterator(chunk_size=CHUNK_ROWS)


def payments_export(queryset: QuerySet[Payment], file_format: str) -> HttpResponseBase:
    stamp = timezone.now().astimezone(EAT).strftime("%Y%m%d-%H%M%S")
    filename = f"payments-{stamp}.{file_format}"
    if file_format == "xlsx":
        xlsx_check_size(queryset)
        return xlsx_response(COLUMNS, payment_rows(queryset), filename, "Payments")
    return csv_response(COLUMNS, payment_rows(queryset), filename)


class PaymentExportView(APIView):
    """``GET /payments/export.csv`` and ``/payments/export.xlsx``: the payments the list
    would show with the same filters (``status``, ``channel``, ``created_after``...), all of
    them, oldest first."""

    permission_classes = [HasPaymentsScope]
    file_format = "csv"

    def get(self, request: Request) -> HttpResponseBase:
        from .api import PaymentFilter

        queryset = payment_list(client=request_client(request), key=request_key(request))
        filterset = PaymentFilter(request.query_params, queryset=queryset, request=request)
        if not filterset.is_valid():
            raise ValidationError(filterset.errors)
        try:
            return payments_export(filterset.qs, self.file_format)
        except TooManyRows as exc:
            raise ApiError(code="too_many_rows", message=str(exc), http_status=400) from None


_XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
_ERRORS = errors(
    e400="A filter's value is not valid, or an XLSX export over EXPORT_XLSX_MAX_ROWS rows "
    "(too_many_rows)"
)


class PaymentExportCsv(PaymentExportView):
    file_format = "csv"

    @extend_schema(
        operation_id="payments_export_csv",
        summary="The payments (with the list's filters) as CSV, streamed",
        responses={(200, "text/csv"): OpenApiResponse(OpenApiTypes.BINARY), **_ERRORS},
    )
    def get(self, request: Request) -> HttpResponseBase:
        return super().get(request)


class PaymentExportXlsx(PaymentExportView):
    file_format = "xlsx"

    @extend_schema(
        operation_id="payments_export_xlsx",
        summary="The payments (with the list's filters) as XLSX",
        responses={(200, _XLSX): OpenApiResponse(OpenApiTypes.BINARY), **_ERRORS},
    )
    def get(self, request: Request) -> HttpResponseBase:
        return super().get(request)
