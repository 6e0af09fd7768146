"""Payment reads."""

from __future__ import annotations

from django.db.models import QuerySet

from callbacks.models import InboundCallback
from core.models import ApiClient

from .models import Payment, PaymentEvent


def payment_list(*, client: ApiClient) -> QuerySet[Payment]:
    """Payments of one API client only: a client never sees another's payments."""
    return Payment.objects.filter(client=client).order_by("-created_at", "-id")


def payment_events(*, payment: Payment) -> QuerySet[PaymentEvent]:
    return PaymentEvent.objects.filter(payment=payment).order_by("created_at", "id")


def payment_callbacks(*, payment: Payment) -> QuerySet[InboundCallback]:
    """The callbacks stored for the payment, in the order they arrived."""
    return InboundCallback.objects.filter(payment=payment).order_by("received_at", "id")
