"""Payments' lines of `/metrics` (core.ops serves them): payments by status, and those
flagged for review."""

from __future__ import annotations

from django.db.models import Count

from .models import Payment, PaymentStatus


def payment_metrics() -> list[str]:
    payments = dict(Payment.objects.values_list("status").annotate(n=Count("id")))
    review = Payment.objects.filter(needs_review=True).count()
    return [
        "# HELP mpesa_payments Payments by status.",
        "# TYPE mpesa_payments gauge",
        *(f'mpesa_payments{{status="{s}"}} {payments.get(s, 0)}' for s in PaymentStatus.values),
        "# HELP mpesa_payments_needs_review Payments flagged for a person to look at.",
        "# TYPE mpesa_payments_needs_review gauge",
        f"mpesa_payments_needs_review {review}",
    ]
