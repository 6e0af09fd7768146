"""Payments for accountants: the API's list (with its filters) as CSV or XLSX, oldest first,
and the admin's action on selected payments (core.exports: streamed, formula-safe, amounts as
numbers, East Africa Time)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from django.db.models import QuerySet
from rest_framework.request import Request
from rest_framework.serializers import ValidationError

from core.auth import HasPaymentsScope, request_client, request_key
from core.exports import CHUNK_ROWS, Column, Export, ExportView, export_views

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


PAYMENTS = Export(name="payments", title="Payments", columns=COLUMNS, rows=payment_rows)


class PaymentExportView(ExportView):
    """``GET /payments/export.csv`` and ``/payments/export.xlsx``: the payments the list
    would show with the same filters (``status``, ``channel``, ``created_after``...), all of
    them, oldest first."""

    permission_classes = [HasPaymentsScope]
    export = PAYMENTS

    def export_queryset(self, request: Request) -> QuerySet[Payment]:
        from .api import PaymentFilter

        queryset = payment_list(client=request_client(request), key=request_key(request))
        filterset = PaymentFilter(request.query_params, queryset=queryset, request=request)
        if not filterset.is_valid():
            raise ValidationError(filterset.errors)
        return filterset.qs


PaymentExportCsv, PaymentExportXlsx = export_views(
    PaymentExportView,
    operation_id="payments_export",
    what="The payments (with the list's filters)",
)
