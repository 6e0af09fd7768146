"""Read-side queries of the inbox."""

from __future__ import annotations

from django.db.models import QuerySet

from payments.models import Payment

from .models import InboundCallback


def payment_callbacks(*, payment: Payment) -> QuerySet[InboundCallback]:
    """The callbacks stored for the payment, in the order they arrived."""
    return InboundCallback.objects.filter(payment=payment).order_by("received_at", "id")
