"""The forms and lookups of the break pages: a reason, a resolution, the payment search (by
receipt, phone or amount near the line's time) and the run filter."""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal, InvalidOperation
from typing import Any

from django import forms
from django.contrib import admin
from django.contrib.admin.options import IncorrectLookupParameters
from django.db.models import QuerySet
from django.http import HttpRequest

from core.phones import InvalidPhoneNumber, normalize_phone
from payments.models import Payment

from ..credit import BreakAction
from ..models import (
    Break,
    ReconciliationRun,
)
from .common import (
    AMOUNT_SEARCH_DAYS,
    SEARCH_LIMIT,
)


class ReasonForm(forms.Form):
    reason = forms.CharField(widget=forms.Textarea(attrs={"rows": 3, "cols": 80}), max_length=2000)


class ResolveForm(forms.Form):
    action = forms.ChoiceField(
        choices=[
            (
                BreakAction.MATCH,
                "Match the line to a payment (a PENDING/FAILED one moves to SUCCESS)",
            ),
            (BreakAction.ACCEPT, "Accept: explained, nothing to change"),
        ],
        widget=forms.RadioSelect,
    )
    payment_id = forms.UUIDField(
        required=False,
        widget=forms.HiddenInput,
        help_text="Chosen from the candidates or the search results.",
    )
    reason = forms.CharField(widget=forms.Textarea(attrs={"rows": 3, "cols": 80}), max_length=2000)


def searchable_amount(term: str) -> Decimal | None:
    """``term`` as an amount a payment can have (positive, within Payment.amount's digits and
    decimals), or None: an exponent such as ``1e999999`` is a number the database refuses to
    compare with (PostgreSQL: "value overflows numeric format"), not a search for nothing."""
    field = Payment._meta.get_field("amount")
    try:
        amount = Decimal(term.replace(",", ""))
    except InvalidOperation:
        return None
    if not amount.is_finite() or amount <= 0:
        return None
    exponent = amount.normalize().as_tuple().exponent  # 900.000 is 900
    if isinstance(exponent, int) and exponent < -field.decimal_places:
        return None  # more decimals than an amount has: no payment has it
    if amount >= Decimal(10) ** (field.max_digits - field.decimal_places):
        return None
    return amount


def payment_search(
    term: str, *, brk: Break, limit: int = SEARCH_LIMIT
) -> tuple[list[Payment], str]:
    """Payments a person may mean by ``term``: a receipt number, a phone number (any Kenyan
    form) or an amount. Each is an indexed lookup: receipts and phones directly, amounts only
    within AMOUNT_SEARCH_DAYS of the statement line's time. Limited to the run's API client
    when it has one (as the API's resolve is). Returns the payments and how they were found."""
    term = term.strip()
    if not term:
        return [], ""
    query = Payment.objects.select_related("client")
    if brk.run.client_id is not None:
        query = query.filter(client_id=brk.run.client_id)
    found: dict[uuid.UUID, Payment] = {}
    how: list[str] = []
    for payment in query.filter(mpesa_receipt_number=term.upper())[:limit]:
        found[payment.pk] = payment
        how.append("receipt")
    try:
        phone = normalize_phone(term)
    except InvalidPhoneNumber:
        phone = ""
    if phone:
        for payment in query.filter(phone_number=phone).order_by("-created_at")[:limit]:
            found.setdefault(payment.pk, payment)
        how.append("phone")
    amount = searchable_amount(term)
    if amount is not None and not phone:
        around = brk.line.completed_at if brk.line else brk.created_at
        window = dt.timedelta(days=AMOUNT_SEARCH_DAYS)
        nearby = query.filter(
            amount=amount, created_at__gte=around - window, created_at__lte=around + window
        ).order_by("-created_at")[:limit]
        for payment in nearby:
            found.setdefault(payment.pk, payment)
        how.append(f"amount within {AMOUNT_SEARCH_DAYS} days of the line")
    return list(found.values())[:limit], ", ".join(dict.fromkeys(how))


class RunFilter(admin.SimpleListFilter):
    """The latest runs, named with their statements in one query (the default filter read
    each run's statement apart, and listed every run ever made). The parameter is the one
    the run page links with; an older run is still filtered by it."""

    title = "run"
    parameter_name = "run__id__exact"
    shown = 30

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        runs = (
            ReconciliationRun.objects.select_related("statement")
            .only("id", "statement__id", "statement__file_name")
            .order_by("-id")
        )
        return [(str(run.pk), str(run)) for run in runs[: self.shown]]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Break]) -> QuerySet[Break]:
        value = self.value()
        if not value:
            return queryset
        if not (value.isascii() and value.isdigit() and len(value) <= 18):
            raise IncorrectLookupParameters(f"run {value!r} is not a run id")
        return queryset.filter(run_id=int(value))
