"""Redelivery on request: one event to one endpoint or all of its merchant's, or everything
that failed in a time range. Each makes new deliveries (the failed ones stay on the record)
naming who asked and why."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

from django.db import transaction

from events.models import Event

from ..models import Delivery, DeliveryState, Endpoint

# Failed deliveries one request may send again.
MAX_REDELIVER = 10_000


class RedeliverRefused(ValueError):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def event_redeliver(
    event: Event, *, endpoint: Endpoint | None, requested_by: str, reason: str
) -> list[Delivery]:
    """Send ``event`` again to ``endpoint``, or to every enabled endpoint of its merchant
    that wants its type."""
    if endpoint is not None:
        if endpoint.client_id != event.client_id:
            raise RedeliverRefused("not_found", "No such endpoint.")
        targets = [endpoint]
    else:
        targets = [
            candidate
            for candidate in Endpoint.objects.filter(client_id=event.client_id, enabled=True)
            if candidate.wants(event.type)
        ]
        if not targets:
            raise RedeliverRefused("no_endpoint", "No enabled endpoint wants this event's type.")
    with transaction.atomic():
        return Delivery.objects.bulk_create(
            Delivery(
                event=event, endpoint=target, requested_by=requested_by[:150], reason=reason[:300]
            )
            for target in targets
        )


def deliveries_redeliver_failed(
    *,
    client_id: UUID,
    since: datetime,
    until: datetime,
    endpoint: Endpoint | None,
    requested_by: str,
    reason: str,
) -> int:
    """Send again every delivery that ended FAILED among those created in [since, until)
    (the merchant's, or one endpoint's); returns how many."""
    if until <= since:
        raise RedeliverRefused("invalid_range", "until must be after since.")
    failed = Delivery.objects.filter(
        endpoint__client_id=client_id,
        state=DeliveryState.FAILED,
        created_at__gte=since,
        created_at__lt=until,
    )
    if endpoint is not None:
        failed = failed.filter(endpoint=endpoint)
    pairs = list(failed.values_list("event_id", "endpoint_id").distinct()[: MAX_REDELIVER + 1])
    if len(pairs) > MAX_REDELIVER:
        raise RedeliverRefused(
            "too_many", f"More than {MAX_REDELIVER:,} failed deliveries: narrow the range."
        )
    with transaction.atomic():
        Delivery.objects.bulk_create(
            Delivery(
                event_id=event_id,
                endpoint_id=endpoint_id,
                requested_by=requested_by[:150],
                reason=reason[:300],
            )
            for event_id, endpoint_id in pairs
        )
    return len(pairs)
