"""Emit events into the outbox, inside the caller's transaction.

An event exists if and only if the change it describes committed: :func:`event_emit` writes
its row in the transaction the caller is already in (it refuses to run outside one), and the
subscribers are told only after that transaction commits. A subscriber that misses the
notice (the broker was down, the process died) still finds the row: every event stays
``dispatched_at IS NULL`` until a subscriber has taken it.

``events`` sits below ``payments`` and ``reconciliation``, which emit, and knows nothing of
who listens: a feature above registers a listener when it starts (``AppConfig.ready``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from django.conf import settings
from django.db import connection, transaction

from core.logging import ctx

from .models import Event

logger = logging.getLogger(__name__)

# Told, after a commit that wrote events, how many it wrote. Must not raise (it is caught
# and logged), and must be fast: it runs in the request or task that made the change.
Listener = Callable[[int], None]
_listeners: dict[str, Listener] = {}


def register_listener(name: str, listener: Listener) -> None:
    """Add a subscriber's wake-up (registering the same name again replaces it)."""
    _listeners[name] = listener


def unregister_listener(name: str) -> None:
    _listeners.pop(name, None)


@dataclass(frozen=True)
class NewEvent:
    type: str
    data: dict[str, Any]
    client_id: UUID | None = None
    object_id: str = ""


class NotInTransaction(RuntimeError):
    """An event must be written in the transaction of the change it describes."""


def event_emit(
    *, type: str, data: dict[str, Any], client_id: UUID | None = None, object_id: str = ""
) -> Event:
    """Write one event in the current transaction; its subscribers hear of it on commit."""
    return events_emit([NewEvent(type, data, client_id, object_id)])[0]


def events_emit(new: Sequence[NewEvent]) -> list[Event]:
    """Write several events in one INSERT, in the current transaction."""
    if not new:
        return []
    if not connection.in_atomic_block:
        raise NotInTransaction(
            "events are written in the transaction of the change they describe: call "
            "event_emit inside transaction.atomic()"
        )
    version = settings.API_VERSION
    rows = [
        Event(
            type=item.type,
            data=item.data,
            client_id=item.client_id,
            object_id=item.object_id,
            api_version=version,
        )
        for item in new
    ]
    Event.objects.bulk_create(rows)
    count = len(rows)
    transaction.on_commit(lambda: _notify(count))
    return rows


def _notify(count: int) -> None:
    for name, listener in list(_listeners.items()):
        try:
            listener(count)
        except Exception as exc:  # a subscriber's outage never fails the change
            logger.warning(
                "event listener failed; the beat re-drive will pick the events up",
                extra=ctx(listener=name, error=type(exc).__name__),
            )
