"""The event types an endpoint may subscribe to."""

from __future__ import annotations

from collections.abc import Sequence

from payments.events import TYPES as PAYMENT_TYPES
from reconciliation.events import TYPES as RECONCILIATION_TYPES

WEBHOOK_TYPES = ("webhook.test", "webhook.endpoint_disabled")
EVENT_TYPES: tuple[str, ...] = (*PAYMENT_TYPES, *RECONCILIATION_TYPES, *WEBHOOK_TYPES)


def check_event_types(types: Sequence[str]) -> str:
    """'' when every type is known; otherwise a message naming the unknown ones."""
    unknown = sorted(set(types) - set(EVENT_TYPES))
    if not unknown:
        return ""
    return f"unknown event type(s) {unknown}; the types are {list(EVENT_TYPES)}"
