"""Payments' scrape-time gauges on `/metrics` (core.metrics): payments flagged for review and
the oldest payment still waiting for its result, each read by a bounded, indexed query."""

from __future__ import annotations

from collections.abc import Iterable

from django.utils import timezone
from prometheus_client.core import GaugeMetricFamily

from core.metrics import bounded_count

from .models import Payment, PaymentStatus


def payment_gauges() -> Iterable[GaugeMetricFamily]:
    review = GaugeMetricFamily(
        "mpesa_payments_needs_review",
        "Payments flagged for a person to look at (counted up to 10,001).",
    )
    review.add_metric([], bounded_count(Payment.objects.filter(needs_review=True)))
    yield review
    oldest = (
        Payment.objects.filter(status=PaymentStatus.PENDING)
        .order_by("created_at")
        .values_list("created_at", flat=True)
        .first()
    )
    waiting = GaugeMetricFamily(
        "mpesa_payments_oldest_pending_seconds",
        "Age of the oldest PENDING payment (0: none); the sweeper queries and expires them, "
        "so a growing value means recovery is behind.",
    )
    waiting.add_metric([], (timezone.now() - oldest).total_seconds() if oldest else 0.0)
    yield waiting
