"""Payment and its append-only audit trail, PaymentEvent.

``status`` is written only by :func:`payments.services.payment_transition`. Database
constraints back the invariants: positive amount, one CheckoutRequestID per payment, one
receipt number per payment (a receipt credits one payment only).
"""

from __future__ import annotations

import uuid
from typing import Any

from django.db import models
from django.db.models import Q

# PostgreSQL's operator class for indexes that answer both ``=`` and ``LIKE 'prefix%'``.
PATTERN_OPS = "varchar_pattern_ops"


class PaymentStatus(models.TextChoices):
    INITIATED = "INITIATED", "Initiated"
    PENDING = "PENDING", "Pending"
    SUCCESS = "SUCCESS", "Success"
    FAILED = "FAILED", "Failed"


class EventSource(models.TextChoices):
    API = "api", "API"
    DARAJA = "daraja", "Daraja (synchronous answer)"
    CALLBACK = "callback", "Callback"
    QUERY = "query", "STK Query"
    RECONCILIATION = "reconciliation", "Reconciliation"
    ADMIN = "admin", "Admin"
    SYSTEM = "system", "System"


class EventKind(models.TextChoices):
    CREATED = "created", "Created"
    TRANSITION = "transition", "Status change"
    FLAGGED = "flagged", "Flagged for review"
    NOTE = "note", "Note"


class Payment(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    # No index of its own: the (client, created_at, id) index below leads with it.
    client = models.ForeignKey(
        "core.ApiClient",
        on_delete=models.PROTECT,
        related_name="payments",
        null=True,
        blank=True,
        db_index=False,
    )
    amount = models.DecimalField(max_digits=12, decimal_places=2)
    currency = models.CharField(max_length=3, default="KES", editable=False)
    phone_number = models.CharField(max_length=12)
    account_reference = models.CharField(max_length=12)
    description = models.CharField(max_length=13)
    transaction_type = models.CharField(max_length=32)
    status = models.CharField(
        max_length=10, choices=PaymentStatus.choices, default=PaymentStatus.INITIATED
    )
    merchant_request_id = models.CharField(max_length=128, blank=True, default="")
    # NULL, not "", until known: the unique constraints below admit any number of NULLs.
    checkout_request_id = models.CharField(max_length=128, null=True, blank=True)  # noqa: DJ001
    mpesa_receipt_number = models.CharField(max_length=32, null=True, blank=True)  # noqa: DJ001
    result_code = models.CharField(max_length=32, blank=True, default="")
    result_desc = models.CharField(max_length=500, blank=True, default="")
    transaction_date = models.DateTimeField(null=True, blank=True)
    paid_amount = models.DecimalField(max_digits=12, decimal_places=2, null=True, blank=True)
    payer_phone = models.CharField(max_length=64, blank=True, default="")
    needs_review = models.BooleanField(default=False)
    # FAILED for a reason M-Pesa gave (a result code, a refused push) is final; FAILED because
    # we stopped waiting (expired, initiation outcome unknown) is not: a verified late success
    # still moves such a payment to SUCCESS.
    failure_final = models.BooleanField(default=False)
    # Daraja's answer to the STK Push was lost (timeout, connection reset): it may have sent
    # the prompt. The callback's token can still resolve the payment.
    initiation_unknown = models.BooleanField(default=False)
    query_attempts = models.PositiveIntegerField(default=0)
    next_query_at = models.DateTimeField(null=True, blank=True)
    query_claimed_until = models.DateTimeField(null=True, blank=True)
    last_query_result = models.CharField(max_length=500, blank=True, default="")
    callback_token_hash = models.CharField(max_length=64, editable=False)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    updated_at = models.DateTimeField(auto_now=True)
    completed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        # Unique constraints and indexes in Meta rather than unique=/db_index=: PostgreSQL then
        # gets no second, LIKE-only copy of each (these columns are only ever looked up
        # whole), and every index costs each status change an index insert.
        #
        # Lists at ten million rows read one page through an index in list order (newest
        # first, id breaking ties): a client's list, alone or by status. The admin's search
        # looks up whole values or prefixes: the varchar_pattern_ops indexes serve both
        # ``=`` and ``LIKE 'prefix%'`` in any collation (PostgreSQL only; other databases
        # get plain indexes).
        indexes = [
            models.Index(fields=["status", "created_at"], name="payment_status_created"),
            models.Index(fields=["client", "created_at", "id"], name="payment_client_created"),
            models.Index(
                fields=["client", "status", "created_at", "id"],
                name="payment_client_status_created",
            ),
            models.Index(
                fields=["phone_number"], name="payment_phone_prefix", opclasses=[PATTERN_OPS]
            ),
            models.Index(
                fields=["account_reference"],
                name="payment_account_ref_prefix",
                opclasses=[PATTERN_OPS],
            ),
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["checkout_request_id"],
                name="payment_unique_checkout_request_id",
                opclasses=[PATTERN_OPS],
            ),
            models.UniqueConstraint(
                fields=["mpesa_receipt_number"],
                name="payment_unique_receipt",
                opclasses=[PATTERN_OPS],
            ),
            models.UniqueConstraint(
                fields=["callback_token_hash"], name="payment_unique_callback_token"
            ),
            models.CheckConstraint(condition=Q(amount__gt=0), name="payment_amount_positive"),
            models.CheckConstraint(
                condition=Q(status__in=PaymentStatus.values), name="payment_status_valid"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.id} {self.amount} {self.status}"

    @property
    def is_final(self) -> bool:
        return self.status in (PaymentStatus.SUCCESS, PaymentStatus.FAILED)


class PaymentEventQuerySet(models.QuerySet["PaymentEvent"]):
    def update(self, **kwargs: Any) -> int:
        raise TypeError("payment events are append-only")

    def delete(self) -> tuple[int, dict[str, int]]:
        raise TypeError("payment events are append-only")


class PaymentEvent(models.Model):
    """One row per change (or noteworthy fact) about a payment. Never updated or deleted."""

    payment = models.ForeignKey(Payment, on_delete=models.PROTECT, related_name="events")
    kind = models.CharField(max_length=20, choices=EventKind.choices)
    from_status = models.CharField(max_length=10, choices=PaymentStatus.choices, blank=True)
    to_status = models.CharField(max_length=10, choices=PaymentStatus.choices, blank=True)
    source = models.CharField(max_length=20, choices=EventSource.choices)
    actor = models.CharField(max_length=150, blank=True, default="")
    reason = models.TextField(blank=True, default="")
    evidence = models.JSONField(default=dict, blank=True)
    # The id of the stored callback behind the event (an InboundCallback of the inbox). A plain
    # indexed column, not a foreign key: the inbox sits above payments and points down at it,
    # never the reverse (docs/adr/0009-one-way-layers.md). Callbacks are never deleted.
    callback_id = models.BigIntegerField(null=True, blank=True, db_index=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    objects = PaymentEventQuerySet.as_manager()

    class Meta:
        ordering = ["created_at", "id"]

    def __str__(self) -> str:
        if self.kind == EventKind.TRANSITION:
            return f"{self.from_status} → {self.to_status} ({self.source})"
        return f"{self.kind} ({self.source})"

    def save(self, *args: Any, **kwargs: Any) -> None:
        if self.pk is not None:
            raise TypeError("payment events are append-only")
        super().save(*args, **kwargs)

    def delete(self, *args: Any, **kwargs: Any) -> tuple[int, dict[str, int]]:
        raise TypeError("payment events are append-only")
