"""API clients (hashed keys) and idempotency keys."""

from __future__ import annotations

import hashlib
import uuid

from django.db import models


def hash_secret(value: str) -> str:
    """SHA-256 hex of a high-entropy secret (API key, callback token). Unsalted on purpose:
    the secrets are random 256-bit strings, and a deterministic hash allows an indexed lookup."""
    return hashlib.sha256(value.encode()).hexdigest()


class Scope(models.TextChoices):
    """What an API key may do. A key that takes payments cannot import statements or resolve
    breaks (which can move payments to SUCCESS) unless it is given ``reconciliation`` too."""

    PAYMENTS = "payments", "Payments (STK Push, read payments and their callbacks)"
    RECONCILIATION = "reconciliation", "Reconciliation (import statements, resolve breaks)"
    WEBHOOKS = "webhooks", "Webhooks (endpoints, events, deliveries and redeliveries)"


def default_scopes() -> list[str]:
    return [Scope.PAYMENTS.value]


class ApiClient(models.Model):
    """A merchant system calling the API. Only the key's hash is stored; the key is shown once.
    ``scopes`` says what the key may do (:class:`Scope`); a new key takes payments only."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    name = models.CharField(max_length=100)
    key_prefix = models.CharField(max_length=16, unique=True, help_text="Identifies the key.")
    key_hash = models.CharField(max_length=64, unique=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    scopes = models.JSONField(
        default=default_scopes,
        help_text="What the key may do: payments, reconciliation, webhooks.",
    )
    acts_for = models.ForeignKey(
        "self",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="extra_keys",
        help_text="A second key of the same merchant: it works on that client's payments and "
        "statements, and is a different person for approvals. Empty: its own.",
    )

    class Meta:
        ordering = ["-created_at"]
        verbose_name = "API client"

    def __str__(self) -> str:
        return f"{self.name} ({self.key_prefix}…)"

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None

    def has_scope(self, scope: str) -> bool:
        return isinstance(self.scopes, list) and scope in self.scopes

    @property
    def owner(self) -> ApiClient:
        """The client whose data this key works on: itself, or the one it acts for."""
        return self.acts_for if self.acts_for is not None else self

    # DRF's IsAuthenticated-style checks look for this attribute on request.user/auth.
    is_authenticated = True


class IdempotencyKey(models.Model):
    """Stripe's semantics: one key per client; same body replays, different body is refused.

    A key in progress is leased (``lease_expires_at``, IDEMPOTENCY_LEASE_SECONDS): a request
    that dies mid-push cannot hold it forever. ``payment_id`` is set in the transaction that
    creates the payment, so a key whose request died says whether a payment (and perhaps a
    push) exists. Keys are purged IDEMPOTENCY_KEY_RETENTION_SECONDS after creation.
    """

    class State(models.TextChoices):
        IN_PROGRESS = "in_progress", "In progress"
        COMPLETED = "completed", "Completed"

    client = models.ForeignKey(ApiClient, on_delete=models.CASCADE, related_name="+")
    key = models.CharField(max_length=255)
    endpoint = models.CharField(max_length=100)
    fingerprint = models.CharField(max_length=64, help_text="SHA-256 of the canonical request.")
    state = models.CharField(max_length=20, choices=State.choices, default=State.IN_PROGRESS)
    response_status = models.PositiveSmallIntegerField(null=True, blank=True)
    response_body = models.JSONField(null=True, blank=True)
    payment_id = models.UUIDField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    completed_at = models.DateTimeField(null=True, blank=True)
    # Until when the request holding an in-progress key may still be working (null on keys
    # from before leases: their lease ends IDEMPOTENCY_LEASE_SECONDS after created_at).
    lease_expires_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [models.Index(fields=["created_at"], name="idempotency_key_created")]
        constraints = [
            models.UniqueConstraint(
                fields=["client", "key"], name="idempotency_key_unique_per_client"
            )
        ]

    def __str__(self) -> str:
        return f"{self.key} ({self.state})"


class Heartbeat(models.Model):
    """The last sign of life of a background process kind (``beat``, ``worker``), for
    ``/health/ready`` (core.health)."""

    name = models.CharField(max_length=32, primary_key=True)
    at = models.DateTimeField()

    def __str__(self) -> str:
        return f"{self.name} at {self.at.isoformat()}"
