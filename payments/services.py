"""Payment writes: the STK Push flow and the one transition function.

Every status change goes through :func:`payment_transition`, which checks the allowed
transitions, changes the row with a conditional update under a row lock, and writes the audit
event, all in one transaction. Slow I/O (the Daraja call) happens outside any transaction.
"""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from core.db import in_transaction
from core.logging import ctx
from core.models import ApiClient, hash_secret
from daraja.client import PAYBILL, TILL, get_client
from daraja.errors import (
    DarajaError,
    DarajaProtocolError,
    DarajaServerError,
    DarajaTransportError,
)

from .models import EventKind, EventSource, Payment, PaymentEvent, PaymentStatus

logger = logging.getLogger(__name__)

S = PaymentStatus
ALLOWED_TRANSITIONS: dict[str, frozenset[str]] = {
    S.INITIATED: frozenset({S.PENDING, S.FAILED}),
    S.PENDING: frozenset({S.SUCCESS, S.FAILED}),
    S.SUCCESS: frozenset(),
    # Money M-Pesa took never ends FAILED in our books: a verified success (late callback,
    # STK Query, statement line) moves a FAILED payment to SUCCESS; callers check the evidence.
    S.FAILED: frozenset({S.SUCCESS}),
}

# Fields the transition function may set alongside the status.
_TRANSITION_FIELDS = frozenset(
    {
        "merchant_request_id",
        "checkout_request_id",
        "mpesa_receipt_number",
        "result_code",
        "result_desc",
        "transaction_date",
        "paid_amount",
        "payer_phone",
    }
)


class InvalidTransition(Exception):
    def __init__(self, from_status: str, to_status: str) -> None:
        super().__init__(f"a payment cannot go from {from_status} to {to_status}")
        self.from_status = from_status
        self.to_status = to_status


@dataclass(frozen=True)
class TransitionResult:
    payment: Payment
    changed: bool
    event: PaymentEvent | None


def payment_transition(
    *,
    payment: Payment,
    to_status: str,
    source: str,
    actor: str = "",
    reason: str = "",
    evidence: dict[str, Any] | None = None,
    callback: Any = None,
    fields: dict[str, Any] | None = None,
) -> TransitionResult:
    """Move ``payment`` to ``to_status`` with its audit event, atomically.

    Re-reads the row under a lock; a transition to the status it already has is a no-op
    (``changed=False``) so that retries and duplicates change nothing.
    """
    fields = dict(fields or {})
    unknown = set(fields) - _TRANSITION_FIELDS
    if unknown:
        raise ValueError(f"payment_transition cannot set {sorted(unknown)}")
    with transaction.atomic():
        locked = Payment.objects.select_for_update().get(pk=payment.pk)
        from_status = locked.status
        if from_status == to_status:
            return TransitionResult(payment=locked, changed=False, event=None)
        if to_status not in ALLOWED_TRANSITIONS[from_status]:
            raise InvalidTransition(from_status, to_status)
        now = timezone.now()
        updates: dict[str, Any] = {"status": to_status, "updated_at": now, **fields}
        if to_status in (S.SUCCESS, S.FAILED):
            updates["completed_at"] = now
        # Conditional update: acts only if nobody changed the status since we read it.
        changed = Payment.objects.filter(pk=locked.pk, status=from_status).update(**updates)
        if changed != 1:
            raise InvalidTransition(from_status, to_status)
        for name, value in updates.items():
            setattr(locked, name, value)
        event = PaymentEvent.objects.create(
            payment=locked,
            kind=EventKind.TRANSITION,
            from_status=from_status,
            to_status=to_status,
            source=source,
            actor=actor,
            reason=reason[:500],
            evidence=evidence or {},
            callback=callback,
        )
    logger.info(
        "payment status changed",
        extra=ctx(
            payment_id=locked.pk, from_status=from_status, to_status=to_status, source=source
        ),
    )
    return TransitionResult(payment=locked, changed=True, event=event)


def payment_record_event(
    *,
    payment: Payment,
    kind: str,
    source: str,
    reason: str,
    evidence: dict[str, Any] | None = None,
    callback: Any = None,
    actor: str = "",
    flag: bool = False,
) -> PaymentEvent:
    """An event that does not change the status (a flag for review, a note)."""
    with transaction.atomic():
        if flag:
            Payment.objects.filter(pk=payment.pk).update(
                needs_review=True, updated_at=timezone.now()
            )
            payment.needs_review = True
        return PaymentEvent.objects.create(
            payment=payment,
            kind=kind,
            source=source,
            actor=actor,
            reason=reason[:500],
            evidence=evidence or {},
            callback=callback,
        )


def build_callback_url(token: str) -> str:
    return f"{settings.MPESA_CALLBACK_URL.rstrip('/')}/{token}/"


def payment_create(
    *,
    client: ApiClient | None,
    phone_number: str,
    amount: Decimal,
    account_reference: str,
    description: str,
) -> tuple[Payment, str]:
    """Save the payment INITIATED with its first event and commit. Returns it with the
    callback token (only its hash is stored)."""
    token = secrets.token_urlsafe(32)
    transaction_type = TILL if settings.MPESA_TRANSACTION_TYPE == "till" else PAYBILL
    with transaction.atomic():
        payment = Payment.objects.create(
            client=client,
            amount=amount,
            phone_number=phone_number,
            account_reference=account_reference,
            description=description,
            transaction_type=transaction_type,
            callback_token_hash=hash_secret(token),
        )
        PaymentEvent.objects.create(
            payment=payment,
            kind=EventKind.CREATED,
            to_status=S.INITIATED,
            source=EventSource.API,
            actor=client.name if client else "",
            evidence={"amount": str(amount), "account_reference": account_reference},
        )
    return payment, token


def payment_initiate(
    *,
    client: ApiClient | None,
    phone_number: str,
    amount: Decimal,
    account_reference: str,
    description: str,
) -> Payment:
    """The STK flow: commit INITIATED, call Daraja outside any transaction, then record
    PENDING (accepted), FAILED (refused) or leave INITIATED when the outcome is unknown."""
    if in_transaction():
        raise RuntimeError("payment_initiate must not run inside a transaction")
    payment, token = payment_create(
        client=client,
        phone_number=phone_number,
        amount=amount,
        account_reference=account_reference,
        description=description,
    )
    try:
        accepted = get_client().stk_push(
            phone_number=phone_number,
            amount=amount,
            account_reference=account_reference,
            description=description,
            callback_url=build_callback_url(token),
        )
    except (DarajaTransportError, DarajaServerError, DarajaProtocolError) as exc:
        # Daraja may or may not have sent the prompt: do not report a failure we cannot prove.
        payment_record_event(
            payment=payment,
            kind=EventKind.NOTE,
            source=EventSource.DARAJA,
            reason=f"STK Push outcome unknown: {exc}",
            evidence=_error_evidence(exc),
        )
        logger.warning("stk push outcome unknown", extra=ctx(payment_id=payment.pk, error=str(exc)))
        return payment
    except DarajaError as exc:
        return payment_transition(
            payment=payment,
            to_status=S.FAILED,
            source=EventSource.DARAJA,
            reason=f"STK Push refused: {exc}",
            evidence=_error_evidence(exc),
            fields={"result_code": exc.error_code or "error", "result_desc": exc.message[:500]},
        ).payment
    ids = {
        "merchant_request_id": accepted.merchant_request_id,
        "checkout_request_id": accepted.checkout_request_id,
    }
    try:
        return payment_transition(
            payment=payment,
            to_status=S.PENDING,
            source=EventSource.DARAJA,
            reason=accepted.response_description,
            evidence=ids,
            fields=ids,
        ).payment
    except IntegrityError:
        # Daraja handed out a CheckoutRequestID another payment already holds. Never merge two
        # payments: keep this one INITIATED, on record, for a person to look at.
        payment_record_event(
            payment=payment,
            kind=EventKind.FLAGGED,
            source=EventSource.DARAJA,
            reason="Daraja returned a CheckoutRequestID that belongs to another payment",
            evidence=ids,
            flag=True,
        )
        payment.refresh_from_db()
        return payment


def _error_evidence(exc: DarajaError) -> dict[str, Any]:
    return {
        "error_type": type(exc).__name__,
        "error_code": exc.error_code,
        "error_message": exc.message,
        "http_status": exc.http_status,
        "request_id": exc.request_id,
    }
