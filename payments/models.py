"""Payment and its append-only audit trail, PaymentEvent.

``status`` is written only by :func:`payments.services.payment_transition`. Database
constraints back the invariants: positive amount, one CheckoutRequestID per payment, one
receipt number per payment (a receipt credits one payment only).
"""

from __future__ import annotations

import hashlib
import uuid
from typing import Any

from django.core.validators import RegexValidator
from django.db import models
from django.db.models import Q

# PostgreSQL's operator class for indexes that answer both ``=`` and ``LIKE 'prefix%'``.
PATTERN_OPS = "varchar_pattern_ops"


class PaymentStatus(models.TextChoices):
    INITIATED = "INITIATED", "Initiated"
    PENDING = "PENDING", "Pending"
    SUCCESS = "SUCCESS", "Success"
    FAILED = "FAILED", "Failed"


class Channel(models.TextChoices):
    STK = "stk", "STK Push"
    PAYBILL = "paybill", "Paybill (C2B)"
    TILL = "till", "Till (C2B)"


class AccountKind(models.TextChoices):
    PAYBILL = "paybill", "Paybill"
    TILL = "till", "Till (Buy Goods)"


class ResponseType(models.TextChoices):
    """What M-Pesa does with a payment when the validation URL does not answer in time."""

    COMPLETED = "Completed", "Completed: take the payment"
    CANCELLED = "Cancelled", "Cancelled: refuse the payment"


class MpesaAccount(models.Model):
    """A paybill or till the business receives money on. Its C2B URLs carry a token (only
    its hash is stored) that ties a validation request or a confirmation to it, as an STK
    callback's token ties it to its payment. Validation rules answer Daraja's validation
    requests (``payments.c2b.c2b_validate``)."""

    name = models.CharField(max_length=100)
    shortcode = models.CharField(max_length=16, unique=True)
    kind = models.CharField(max_length=10, choices=AccountKind.choices)
    # Whose money it is: C2B payments on this account belong to this API client (its API
    # key sees them, its webhook endpoints hear of them).
    client = models.ForeignKey(
        "core.ApiClient",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="mpesa_accounts",
    )
    enabled = models.BooleanField(default=True)
    # A till (Buy Goods): the till number customers pay, an STK Push's PartyB; the shortcode
    # is then the store (head office) number the till went live with. Empty: the shortcode.
    till_number = models.CharField(
        max_length=16,
        blank=True,
        default="",
        validators=[RegexValidator(r"^[0-9]{5,8}$", "A till number is 5 to 8 digits.")],
        help_text="A till's number (what customers pay, an STK Push's PartyB) when the "
        "shortcode is its store number. Empty: the shortcode.",
    )
    # API keys limited to accounts: a key listed on any account works only on the accounts it
    # is listed on (its STK Pushes, its payments, their references). A key listed on none
    # works on all of its client's accounts.
    limited_keys = models.ManyToManyField(
        "core.ApiClient",
        blank=True,
        related_name="limited_to_accounts",
        help_text="API keys that may use this account and no account they are not listed on.",
    )
    url_token_hash = models.CharField(max_length=64, unique=True, editable=False)
    response_type = models.CharField(
        max_length=10, choices=ResponseType.choices, default=ResponseType.COMPLETED
    )
    # Validation rules (empty: no rule).
    account_pattern = models.CharField(
        max_length=200,
        blank=True,
        default="",
        help_text="A regular expression the whole account number (BillRefNumber) must match.",
    )
    min_amount = models.DecimalField(max_digits=12, decimal_places=2, null=True, blank=True)
    max_amount = models.DecimalField(max_digits=12, decimal_places=2, null=True, blank=True)
    require_known_reference = models.BooleanField(
        default=False,
        help_text="Accept only account numbers listed among the account's known references.",
    )
    # The account's own Daraja app (encrypted, core.crypto; empty: the MPESA_* settings').
    consumer_key_encrypted = models.TextField(blank=True, default="", editable=False)
    consumer_secret_encrypted = models.TextField(blank=True, default="", editable=False)
    passkey_encrypted = models.TextField(blank=True, default="", editable=False)
    # The last registration of the C2B URLs with Daraja (payments.accounts).
    urls_registered_at = models.DateTimeField(null=True, blank=True)
    urls_registered_version = models.CharField(max_length=2, blank=True, default="")
    # Pull Transactions, the recovery of lost confirmations (payments.pull).
    pull_enabled = models.BooleanField(
        default=False,
        help_text="The Daraja app has Pull Transactions and the shortcode is registered.",
    )
    pulled_until = models.DateTimeField(
        null=True, blank=True, help_text="The end of the last window pulled whole."
    )
    pull_failing_since = models.DateTimeField(null=True, blank=True)
    pull_last_error = models.TextField(blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["shortcode"]
        constraints = [
            models.CheckConstraint(
                condition=Q(kind__in=AccountKind.values), name="mpesa_account_kind_valid"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.kind} {self.shortcode})"

    @property
    def has_credentials(self) -> bool:
        return bool(self.consumer_key_encrypted and self.consumer_secret_encrypted)

    @property
    def party_b(self) -> str:
        """Who an STK Push pays: the till number of a till, else the shortcode."""
        if self.kind == AccountKind.TILL and self.till_number:
            return self.till_number
        return self.shortcode


class KnownReference(models.Model):
    """An account number (invoice, customer number...) the merchant expects payments to, for
    validation: ``key`` is the reference as compared (upper case, no spaces)."""

    account = models.ForeignKey(
        MpesaAccount, on_delete=models.CASCADE, related_name="known_references"
    )
    reference = models.CharField(max_length=100)
    key = models.CharField(max_length=100, editable=False)
    amount = models.DecimalField(
        max_digits=12,
        decimal_places=2,
        null=True,
        blank=True,
        help_text="The amount expected, if only that amount may be paid to it.",
    )
    active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["account", "key"]
        constraints = [
            models.UniqueConstraint(fields=["account", "key"], name="known_reference_unique"),
        ]

    def __str__(self) -> str:
        return self.reference

    def save(self, *args: Any, **kwargs: Any) -> None:
        self.key = self.key_of(self.reference)
        super().save(*args, **kwargs)

    @staticmethod
    def key_of(reference: str) -> str:
        return "".join(reference.split()).upper()


class KnownPhone(models.Model):
    """A payer's number we hold, by its SHA-256: Daraja sends C2B payers' numbers hashed
    (plain SHA-256 of ``2547…``), and a hash is matched to a customer by hashing the numbers
    we know, never reversed. Written when a payment first shows the number."""

    hash = models.CharField(max_length=64, primary_key=True)
    phone = models.CharField(max_length=12)
    first_seen = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return self.hash[:12]

    @staticmethod
    def hash_of(phone: str) -> str:
        return hashlib.sha256(phone.encode()).hexdigest()


class EventSource(models.TextChoices):
    API = "api", "API"
    DARAJA = "daraja", "Daraja (synchronous answer)"
    CALLBACK = "callback", "Callback"
    QUERY = "query", "STK Query"
    C2B = "c2b", "C2B confirmation"
    PULL = "pull", "Pull Transactions"
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
    channel = models.CharField(max_length=10, choices=Channel.choices, default=Channel.STK)
    # The paybill or till the money went to (an STK Push: the account it was pushed from).
    account = models.ForeignKey(
        MpesaAccount,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="payments",
        db_index=False,
    )
    amount = models.DecimalField(max_digits=12, decimal_places=2)
    currency = models.CharField(max_length=3, default="KES", editable=False)
    # STK: the number prompted. C2B: the payer's number when M-Pesa sent it plain, else ""
    # (payer_phone keeps what was sent: masked or a SHA-256).
    phone_number = models.CharField(max_length=12, blank=True)
    account_reference = models.CharField(max_length=12, blank=True)
    # C2B: the account number the customer typed (BillRefNumber), as typed.
    bill_ref_number = models.CharField(max_length=100, blank=True, default="")
    payer_name = models.CharField(max_length=150, blank=True, default="")
    description = models.CharField(max_length=13, blank=True)
    transaction_type = models.CharField(max_length=64)
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
            # The few flagged payments, for the review list and /metrics.
            models.Index(
                fields=["created_at"],
                name="payment_needs_review",
                condition=Q(needs_review=True),
            ),
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
