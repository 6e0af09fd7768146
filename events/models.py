"""An event: a stable id, a type, when it happened, the API version it is written in, and the
object as the API showed it at that moment."""

from __future__ import annotations

import itertools
import secrets
import time

from django.core.serializers.json import DjangoJSONEncoder
from django.db import models
from django.utils import timezone

from core.models import ApiClient

_sequence = itertools.count()


def new_event_id() -> str:
    """``evt_`` and 26 hex digits: 12 of milliseconds since the epoch, 4 of a counter of this
    process, 10 random; ids made later sort later (within a process, also within the same
    millisecond)."""
    millis = int(time.time() * 1000)
    return f"evt_{millis:012x}{next(_sequence) % 0x10000:04x}{secrets.token_hex(5)}"


class Event(models.Model):
    id = models.CharField(primary_key=True, max_length=40, default=new_event_id, editable=False)
    type = models.CharField(max_length=64, db_index=True)
    # The merchant (API client) whose object it is; none for the system's own objects.
    client = models.ForeignKey(
        ApiClient, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    api_version = models.CharField(max_length=16)
    # The object's own id (a payment's UUID, a break's number), to list an object's events.
    object_id = models.CharField(max_length=64, blank=True, default="", db_index=True)
    # The API's representation; DRF leaves UUIDs, Decimals and times as objects in it.
    data = models.JSONField(encoder=DjangoJSONEncoder)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    # When the subscribers (the webhook fan-out) took it; null: not yet.
    dispatched_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(
                fields=["created_at"],
                name="event_undispatched",
                condition=models.Q(dispatched_at__isnull=True),
            ),
            models.Index(fields=["client", "-created_at", "-id"], name="event_client_recent"),
        ]

    def __str__(self) -> str:
        return f"{self.id} {self.type}"
