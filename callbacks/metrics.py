"""The inbox's scrape-time gauges on `/metrics` (core.metrics): callbacks waiting to be
processed and how long the oldest has waited, each read by a bounded, indexed query."""

from __future__ import annotations

from collections.abc import Iterable

from django.utils import timezone
from prometheus_client.core import GaugeMetricFamily

from core.metrics import bounded_count

from .models import CallbackState, InboundCallback


def callback_gauges() -> Iterable[GaugeMetricFamily]:
    waiting = InboundCallback.objects.filter(state=CallbackState.RECEIVED)
    backlog = GaugeMetricFamily(
        "mpesa_inbox_backlog",
        "Callbacks and C2B confirmations stored and not processed yet (counted up to 10,001).",
    )
    backlog.add_metric([], bounded_count(waiting))
    yield backlog
    oldest = waiting.order_by("received_at").values_list("received_at", flat=True).first()
    age = GaugeMetricFamily(
        "mpesa_inbox_oldest_waiting_seconds",
        "How long the oldest unprocessed callback has waited (0: none).",
    )
    age.add_metric([], (timezone.now() - oldest).total_seconds() if oldest else 0.0)
    yield age
