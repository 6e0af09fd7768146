"""Webhooks' scrape-time gauges on `/metrics` (core.metrics): deliveries due and waiting, and
how late the most overdue one is, read through the index of pending deliveries."""

from __future__ import annotations

from collections.abc import Iterable

from django.utils import timezone
from prometheus_client.core import GaugeMetricFamily

from core.metrics import bounded_count

from .models import Delivery, DeliveryState


def webhook_gauges() -> Iterable[GaugeMetricFamily]:
    now = timezone.now()
    due = Delivery.objects.filter(state=DeliveryState.PENDING, next_attempt_at__lte=now)
    backlog = GaugeMetricFamily(
        "mpesa_webhook_deliveries_due",
        "Webhook deliveries due now and not sent yet (counted up to 10,001).",
    )
    backlog.add_metric([], bounded_count(due))
    yield backlog
    oldest = due.order_by("next_attempt_at").values_list("next_attempt_at", flat=True).first()
    late = GaugeMetricFamily(
        "mpesa_webhook_oldest_due_seconds",
        "How long the most overdue webhook delivery has been due (0: none).",
    )
    late.add_metric([], (now - oldest).total_seconds() if oldest else 0.0)
    yield late
