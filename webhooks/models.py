"""Webhook endpoints (a merchant's URL, the events it wants, its signing secrets), and each
event's delivery to each endpoint with every attempt made."""

from __future__ import annotations

import uuid

from django.db import models
from django.utils import timezone

from core.models import ApiClient
from events.models import Event


class Endpoint(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    client = models.ForeignKey(
        ApiClient, on_delete=models.PROTECT, related_name="webhook_endpoints"
    )
    url = models.URLField(max_length=2000)
    description = models.CharField(max_length=200, blank=True, default="")
    # The event types it receives; empty: every type.
    event_types = models.JSONField(default=list, blank=True)
    enabled = models.BooleanField(default=True)
    # Why it was disabled (by its owner, or by the system after failing for too long).
    disabled_reason = models.CharField(max_length=300, blank=True, default="")
    disabled_at = models.DateTimeField(null=True, blank=True)
    # Since when every attempt has failed (cleared by a delivered one).
    failing_since = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return self.url

    def wants(self, event_type: str) -> bool:
        return not self.event_types or event_type in self.event_types


class EndpointSecret(models.Model):
    """A signing secret, encrypted at rest (``core.crypto``). The newest signs; one replaced
    by a rotation keeps signing beside it until ``expires_at``."""

    endpoint = models.ForeignKey(Endpoint, on_delete=models.CASCADE, related_name="secrets")
    encrypted = models.TextField()
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"secret of {self.endpoint_id} from {self.created_at:%Y-%m-%d %H:%M}"


class DeliveryState(models.TextChoices):
    PENDING = "pending", "Pending: to be sent (again)"
    DELIVERED = "delivered", "Delivered: the endpoint answered 2xx"
    FAILED = "failed", "Failed: retries exhausted, or the endpoint was disabled"


class Delivery(models.Model):
    """One event to one endpoint. A redelivery is a new row, with who asked and why."""

    event = models.ForeignKey(Event, on_delete=models.PROTECT, related_name="+")
    endpoint = models.ForeignKey(Endpoint, on_delete=models.CASCADE, related_name="deliveries")
    state = models.CharField(
        max_length=16, choices=DeliveryState.choices, default=DeliveryState.PENDING
    )
    attempts = models.PositiveIntegerField(default=0)
    # Due at; while an attempt is in flight, the end of its lease (a crashed sender's
    # delivery is due again then).
    next_attempt_at = models.DateTimeField(default=timezone.now)
    last_status_code = models.PositiveIntegerField(null=True, blank=True)
    last_error = models.CharField(max_length=500, blank=True, default="")
    created_at = models.DateTimeField(default=timezone.now)
    delivered_at = models.DateTimeField(null=True, blank=True)
    # A redelivery: who asked for it and why (empty for the first delivery).
    requested_by = models.CharField(max_length=150, blank=True, default="")
    reason = models.CharField(max_length=300, blank=True, default="")

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name_plural = "deliveries"
        indexes = [
            models.Index(
                fields=["next_attempt_at"],
                name="delivery_due",
                condition=models.Q(state="pending"),
            ),
            models.Index(fields=["endpoint", "state", "-created_at"], name="delivery_endpoint"),
            models.Index(fields=["event", "endpoint"], name="delivery_event"),
        ]

    def __str__(self) -> str:
        return f"{self.event_id} → {self.endpoint_id} ({self.state})"


class Attempt(models.Model):
    delivery = models.ForeignKey(Delivery, on_delete=models.CASCADE, related_name="attempt_set")
    started_at = models.DateTimeField()
    status_code = models.PositiveIntegerField(null=True, blank=True)
    error = models.CharField(max_length=500, blank=True, default="")
    latency_ms = models.PositiveIntegerField()
    # The first bytes of the answer (WEBHOOK_RESPONSE_KEEP_BYTES), as text.
    response_body = models.TextField(blank=True, default="")

    class Meta:
        ordering = ["-started_at", "-id"]

    def __str__(self) -> str:
        return f"{self.started_at:%Y-%m-%d %H:%M:%S} {self.status_code or self.error}"
