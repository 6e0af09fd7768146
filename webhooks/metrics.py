"""Webhooks' scrape-time gauges on `/metrics` (core.metrics): deliveries due and waiting, and
how late the most overdue one is, read through the index of pending deliveries."""

from __future__ import annotations

from collections.abc import Iterable

from django.utils import timezone
from prometheus_client.core import GaugeMetricFamily

from core.metrics import waiting_gauges

from .models import Delivery, DeliveryState


def webhook_gauges() -> Iterable[GaugeMetricFamily]:
    return waiting_gauges(
        queryset=Delivery.objects.filter(
            state=DeliveryState.PENDING, next_attempt_at__lte=timezone.now()
        ),
        since="next_attempt_at",
        count=(
            "mpesa_webhook_deliveries_due",
            "Webhook deliveries due now and not sent yet (counted up to 10,001).",
        ),
        age=(
            "mpesa_webhook_oldest_due_seconds",
            "How long the most overdue webhook delivery has been due (0: none).",
        ),
    )
