"""InboundCallback: every request that reached a callback URL, exactly as received.

A row is written before anything else happens, even for an empty, non-JSON or wrongly shaped
body, so nothing Daraja sent can be lost: a callback whose token belongs to a payment is
always stored whole. A callback refused at intake (no such token, a source outside the
allowlist, an oversized body) keeps the SHA-256 of its body and a prefix
(CALLBACK_REFUSED_BODY_PREFIX_BYTES, enough for a whole genuine Daraja callback), and only a
bounded number of them per source address is stored (CALLBACK_REFUSED_RATE_LIMIT; the rest
are counted on the last one stored). Processing state lives on the row.
"""

from __future__ import annotations

from django.db import models


class CallbackKind(models.TextChoices):
    STK = "stk", "STK Push result"
    C2B_VALIDATION = "c2b_validation", "C2B validation request"
    C2B_CONFIRMATION = "c2b_confirmation", "C2B confirmation"


class CallbackState(models.TextChoices):
    RECEIVED = "received", "Received, not processed yet"
    VERIFYING = "verifying", "Success being confirmed with STK Query before crediting"
    PROCESSED = "processed", "Processed: changed the payment"
    DUPLICATE = "duplicate", "Duplicate: the payment already had this outcome"
    IGNORED = "ignored", "Ignored: arrived after a final outcome"
    REVIEW = "review", "Kept for review (amount or receipt problem)"
    ORPHAN = "orphan", "Orphan: no payment matches"
    INVALID = "invalid", "Invalid payload"
    REJECTED = "rejected", "Rejected: failed authentication"
    FAILED = "failed", "Processing failed after retries"


FINAL_STATES = frozenset(
    {
        CallbackState.PROCESSED,
        CallbackState.DUPLICATE,
        CallbackState.IGNORED,
        CallbackState.REVIEW,
        CallbackState.ORPHAN,
        CallbackState.INVALID,
        CallbackState.REJECTED,
        CallbackState.FAILED,
    }
)


class InboundCallback(models.Model):
    kind = models.CharField(max_length=16, choices=CallbackKind.choices, default=CallbackKind.STK)
    received_at = models.DateTimeField(auto_now_add=True, db_index=True)
    body = models.BinaryField()
    body_size = models.PositiveIntegerField(
        null=True,
        blank=True,
        help_text="Bytes received (of an oversized body: those read); empty for older rows.",
    )
    body_complete = models.BooleanField(
        default=True,
        help_text="The body is stored whole; if not, only a prefix is (a refused callback, or "
        "a body purged by the retention policy); dedupe_key is still the whole body's SHA-256.",
    )
    body_purged_at = models.DateTimeField(
        null=True, blank=True, help_text="When the retention policy purged the body."
    )
    refused_unstored = models.PositiveIntegerField(
        default=0,
        help_text="Refused callbacks from the same source after this one, past the per-source "
        "limit: counted here, not stored.",
    )
    content_type = models.CharField(max_length=200, blank=True, default="")
    headers = models.JSONField(default=dict, blank=True)
    source_ip = models.GenericIPAddressField(null=True, blank=True)
    source_flagged = models.BooleanField(
        default=False, help_text="The source address is not on the callback allowlist."
    )
    verified_at = models.DateTimeField(
        null=True, blank=True, help_text="When an STK Query confirmed this success callback."
    )
    token_hash = models.CharField(max_length=64, blank=True, default="")
    payment = models.ForeignKey(
        "payments.Payment",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="callbacks",
        help_text="The payment the path token belongs to (not proof that the body does).",
    )
    dedupe_key = models.CharField(max_length=64, help_text="SHA-256 of the body as received.")
    checkout_request_id = models.CharField(max_length=128, blank=True, default="")
    state = models.CharField(
        max_length=10, choices=CallbackState.choices, default=CallbackState.RECEIVED
    )
    attempts = models.PositiveIntegerField(default=0)
    last_error = models.TextField(blank=True, default="")
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    processed_at = models.DateTimeField(null=True, blank=True)
    # What we answered a C2B validation request (stored with the request, in one INSERT).
    answer = models.JSONField(null=True, blank=True)
    # Kept in the host's journal while the database was down (callbacks.journal): the entry's
    # id (each entry is stored once) and when the request really arrived.
    journal_id = models.UUIDField(null=True, blank=True, editable=False)
    journaled_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-received_at"]
        # Indexes in Meta rather than db_index: PostgreSQL then gets no second, LIKE-only copy
        # of each. Every index costs each stored callback an insert, and each processed one
        # another (its state changes), so only looked-up columns have one.
        indexes = [
            models.Index(fields=["state", "received_at"], name="callback_state_received"),
            # What batch draining claims: small, whatever the size of the inbox.
            models.Index(
                fields=["id"], condition=models.Q(state="received"), name="callback_waiting"
            ),
            models.Index(fields=["dedupe_key"], name="callback_dedupe_key"),
            models.Index(fields=["checkout_request_id"], name="callback_checkout_request_id"),
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["journal_id"],
                condition=models.Q(journal_id__isnull=False),
                name="callback_unique_journal_entry",
            ),
        ]

    def __str__(self) -> str:
        return f"callback {self.pk} ({self.state})"

    @property
    def body_text(self) -> str:
        return bytes(self.body).decode("utf-8", errors="replace")
