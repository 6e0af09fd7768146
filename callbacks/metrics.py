"""The inbox's scrape-time gauges on `/metrics` (core.metrics): callbacks waiting to be
processed and how long the oldest has waited, each read by a bounded, indexed query."""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client.core import GaugeMetricFamily

from core.metrics import waiting_gauges

from .models import CallbackState, InboundCallback


def callback_gauges() -> Iterable[GaugeMetricFamily]:
    return waiting_gauges(
        queryset=InboundCallback.objects.filter(state=CallbackState.RECEIVED),
        since="received_at",
        count=(
            "mpesa_inbox_backlog",
            "Callbacks and C2B confirmations stored and not processed yet (counted up to 10,001).",
        ),
        age=(
            "mpesa_inbox_oldest_waiting_seconds",
            "How long the oldest unprocessed callback has waited (0: none).",
        ),
    )
