"""Fan-out: each new event becomes one delivery per enabled endpoint of its merchant that
wants its type. Events are taken with ``dispatched_at IS NULL`` under SKIP LOCKED, so any
number of pumps may run, and one that dies leaves its events for the next."""

from __future__ import annotations

from django.db import transaction
from django.utils import timezone

from core.db import insert_rows
from events.models import Event

from ..models import Delivery, DeliveryState, Endpoint

# A new delivery's columns, for insert_rows (no instances: a fan-out makes thousands).
_DELIVERY_FIELDS = (
    "event",
    "endpoint",
    "state",
    "attempts",
    "next_attempt_at",
    "created_at",
    "last_error",
    "requested_by",
    "reason",
)


def webhooks_fanout(*, limit: int = 500) -> int:
    """Turn up to ``limit`` new events into deliveries; returns how many events."""
    with transaction.atomic():
        events = list(
            Event.objects.filter(dispatched_at__isnull=True)
            .order_by("created_at", "id")
            .select_for_update(skip_locked=True)
            .only("id", "type", "client_id")[:limit]
        )
        if not events:
            return 0
        clients = {event.client_id for event in events if event.client_id is not None}
        endpoints: dict[object, list[Endpoint]] = {}
        for endpoint in Endpoint.objects.filter(client_id__in=clients, enabled=True):
            endpoints.setdefault(endpoint.client_id, []).append(endpoint)
        now = timezone.now()
        insert_rows(
            Delivery,
            fields=_DELIVERY_FIELDS,
            rows=[
                (event.id, endpoint.id, DeliveryState.PENDING, 0, now, now, "", "", "")
                for event in events
                for endpoint in endpoints.get(event.client_id, [])
                if endpoint.wants(event.type)
            ],
        )
        Event.objects.filter(id__in=[event.id for event in events]).update(dispatched_at=now)
    return len(events)
