"""Callback inbox writes: receive (store raw, fast), process (apply to the payment), re-drive.

Processing is idempotent: the callback row and the payment row are locked, the outcome is
decided from what is stored, and a second run of the same callback (a retried task, a
duplicate delivery, a replay) changes nothing.
"""

from __future__ import annotations

import hashlib
import logging
import traceback
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from core.logging import ctx
from core.models import hash_secret
from daraja.parsing import PayloadError, StkCallback, parse_stk_callback
from payments.models import EventKind, EventSource, Payment, PaymentStatus
from payments.services import payment_record_event, payment_transition

from .models import FINAL_STATES, CallbackKind, CallbackState, InboundCallback

logger = logging.getLogger(__name__)

# Headers worth keeping for forensics; cookies and authorization are never stored.
_KEPT_HEADERS = (
    "Content-Type",
    "Content-Length",
    "User-Agent",
    "X-Forwarded-For",
    "X-Real-IP",
    "X-Request-ID",
    "Host",
)


def callback_receive(
    *,
    body: bytes,
    content_type: str,
    headers: dict[str, str],
    source_ip: str | None,
    token: str,
    kind: str = CallbackKind.STK,
) -> InboundCallback:
    """Store the request as received, then (after commit) enqueue its processing by id."""
    kept = {name: headers[name][:500] for name in _KEPT_HEADERS if name in headers}
    with transaction.atomic():
        callback = InboundCallback.objects.create(
            kind=kind,
            body=body,
            content_type=content_type[:200],
            headers=kept,
            source_ip=source_ip,
            token_hash=hash_secret(token) if token else "",
            dedupe_key=hashlib.sha256(body).hexdigest(),
        )
        transaction.on_commit(lambda: callback_enqueue(callback_id=callback.pk))
    return callback


def callback_enqueue(*, callback_id: int, countdown: float | None = None) -> bool:
    """Publish "process callback N". A broker outage is logged, not raised: the row is stored
    and the re-drive sweeper will enqueue it again."""
    from .tasks import process_callback

    try:
        if countdown is None:
            process_callback.apply_async((callback_id,))
        else:
            process_callback.apply_async((callback_id,), countdown=countdown)
        return True
    except Exception as exc:
        logger.warning(
            "could not enqueue callback; the re-drive sweeper will",
            extra=ctx(callback_id=callback_id, error=type(exc).__name__),
        )
        return False


class RetryLater(Exception):
    """The callback cannot be decided yet (its payment is not PENDING yet): try again."""

    def __init__(self, reason: str, countdown: float) -> None:
        super().__init__(reason)
        self.countdown = countdown


@dataclass(frozen=True)
class ProcessOutcome:
    state: str
    detail: str = ""


def callback_process(*, callback_id: int) -> ProcessOutcome:
    """Apply one stored callback to its payment. Raises RetryLater when it is too early."""
    retry: RetryLater | None = None
    with transaction.atomic():
        callback = InboundCallback.objects.select_for_update().get(pk=callback_id)
        if callback.state in FINAL_STATES:
            return ProcessOutcome(callback.state, "already processed")
        callback.attempts += 1
        outcome = _decide(callback)
        if outcome.state == CallbackState.RECEIVED:
            retries = settings.CALLBACK_ORPHAN_RETRIES
            if callback.attempts > retries:
                outcome = ProcessOutcome(
                    CallbackState.ORPHAN,
                    f"{outcome.detail}; gave up after {retries} retries, kept for reconciliation",
                )
            else:
                delay = settings.CALLBACK_ORPHAN_RETRY_DELAY * (2 ** (callback.attempts - 1))
                retry = RetryLater(outcome.detail, delay)
        if retry is not None:
            callback.last_error = retry.args[0]
            callback.next_attempt_at = timezone.now() + timedelta(seconds=retry.countdown)
        else:
            callback.state = outcome.state
            callback.last_error = "" if outcome.state == CallbackState.PROCESSED else outcome.detail
            callback.processed_at = timezone.now()
            callback.next_attempt_at = None
        callback.save(
            update_fields=[
                "state",
                "attempts",
                "last_error",
                "processed_at",
                "next_attempt_at",
                "checkout_request_id",
                "payment",
            ]
        )
    if retry is not None:
        raise retry
    logger.info(
        "callback processed",
        extra=ctx(callback_id=callback_id, state=outcome.state, payment_id=callback.payment_id),
    )
    return outcome


def callback_mark_failed(*, callback_id: int, error: BaseException) -> None:
    """Processing kept failing with errors we could not recover from: park it, with the
    traceback, for an operator to look at and replay."""
    text = "".join(traceback.format_exception(error))[-8000:]
    InboundCallback.objects.filter(pk=callback_id).exclude(state__in=FINAL_STATES).update(
        state=CallbackState.FAILED, last_error=text, processed_at=timezone.now()
    )


def callback_record_attempt_error(*, callback_id: int, error: BaseException) -> None:
    text = "".join(traceback.format_exception(error))[-8000:]
    InboundCallback.objects.filter(pk=callback_id).update(last_error=text)


def _decide(callback: InboundCallback) -> ProcessOutcome:
    """Everything runs under the callback row's lock, inside the caller's transaction."""
    try:
        parsed = parse_stk_callback(bytes(callback.body))
    except PayloadError as exc:
        return ProcessOutcome(CallbackState.INVALID, str(exc))
    callback.checkout_request_id = parsed.checkout_request_id

    if not callback.token_hash:
        return ProcessOutcome(CallbackState.REJECTED, "callback URL has no token")
    payment = Payment.objects.filter(callback_token_hash=callback.token_hash).first()
    if payment is None:
        _flag_checkout_target(parsed, callback, "callback with an unknown token")
        return ProcessOutcome(CallbackState.REJECTED, "unknown callback token")
    callback.payment = payment
    if payment.checkout_request_id is None:
        if payment.status == PaymentStatus.INITIATED:
            return ProcessOutcome(
                CallbackState.RECEIVED, "payment has no CheckoutRequestID yet (still initiating)"
            )
        return ProcessOutcome(
            CallbackState.REJECTED, f"payment is {payment.status} and never reached Daraja"
        )
    if payment.checkout_request_id != parsed.checkout_request_id:
        payment_record_event(
            payment=payment,
            kind=EventKind.FLAGGED,
            source=EventSource.CALLBACK,
            reason="callback token used with another payment's CheckoutRequestID",
            evidence={"callback_id": callback.pk, **parsed.evidence()},
            callback=callback,
        )
        return ProcessOutcome(
            CallbackState.REJECTED, "the token belongs to a different CheckoutRequestID"
        )
    return _apply(payment, parsed, callback)


def _flag_checkout_target(parsed: StkCallback, callback: InboundCallback, reason: str) -> None:
    target = Payment.objects.filter(checkout_request_id=parsed.checkout_request_id).first()
    if target is not None:
        payment_record_event(
            payment=target,
            kind=EventKind.FLAGGED,
            source=EventSource.CALLBACK,
            reason=reason,
            evidence={"callback_id": callback.pk, **parsed.evidence()},
            callback=callback,
        )


def _apply(payment: Payment, parsed: StkCallback, callback: InboundCallback) -> ProcessOutcome:
    payment = Payment.objects.select_for_update().get(pk=payment.pk)
    evidence: dict[str, Any] = {"callback_id": callback.pk, **parsed.evidence()}
    if parsed.warnings:
        evidence["warnings"] = list(parsed.warnings)

    if payment.status == PaymentStatus.SUCCESS:
        if parsed.is_success and parsed.receipt_number == payment.mpesa_receipt_number:
            return ProcessOutcome(CallbackState.DUPLICATE, "payment already SUCCESS")
        if not parsed.is_success:
            return ProcessOutcome(
                CallbackState.IGNORED,
                f"failure {parsed.result_code} after SUCCESS; SUCCESS never moves back",
            )
        return _review(payment, callback, evidence, "a second, different success callback")

    if payment.status == PaymentStatus.FAILED:
        if not parsed.is_success:
            return ProcessOutcome(CallbackState.DUPLICATE, "payment already FAILED")
        return _review(payment, callback, evidence, "success callback for a FAILED payment")

    # PENDING: the one state where a callback decides the outcome.
    if not parsed.is_success:
        payment_transition(
            payment=payment,
            to_status=PaymentStatus.FAILED,
            source=EventSource.CALLBACK,
            reason=parsed.result_desc or f"result code {parsed.result_code}",
            evidence=evidence,
            callback=callback,
            fields={"result_code": parsed.result_code, "result_desc": parsed.result_desc},
        )
        return ProcessOutcome(CallbackState.PROCESSED)

    assert parsed.amount is not None and parsed.receipt_number is not None
    if parsed.amount != payment.amount:
        return _review(
            payment,
            callback,
            evidence,
            f"amount mismatch: callback says {parsed.amount}, payment is {payment.amount}",
        )
    holder = (
        Payment.objects.filter(mpesa_receipt_number=parsed.receipt_number)
        .exclude(pk=payment.pk)
        .first()
    )
    if holder is not None:
        return _review(
            payment,
            callback,
            evidence,
            f"receipt {parsed.receipt_number} already credited to another payment",
        )
    payment_transition(
        payment=payment,
        to_status=PaymentStatus.SUCCESS,
        source=EventSource.CALLBACK,
        reason=parsed.result_desc,
        evidence=evidence,
        callback=callback,
        fields={
            "result_code": parsed.result_code,
            "result_desc": parsed.result_desc,
            "mpesa_receipt_number": parsed.receipt_number,
            "transaction_date": parsed.transaction_date,
            "paid_amount": parsed.amount,
            "payer_phone": parsed.phone_number or "",
        },
    )
    return ProcessOutcome(CallbackState.PROCESSED)


def _review(
    payment: Payment, callback: InboundCallback, evidence: dict[str, Any], reason: str
) -> ProcessOutcome:
    payment_record_event(
        payment=payment,
        kind=EventKind.FLAGGED,
        source=EventSource.CALLBACK,
        reason=reason,
        evidence=evidence,
        callback=callback,
        flag=True,
    )
    logger.warning("callback kept for review", extra=ctx(payment_id=payment.pk, reason=reason))
    return ProcessOutcome(CallbackState.REVIEW, reason)


def callbacks_redrive(*, older_than: float | None = None, limit: int = 1000) -> int:
    """Re-enqueue stored callbacks that nobody processed (lost message, dead worker, broker
    outage). Safe to run any time: processing is idempotent."""
    age = settings.CALLBACK_REDRIVE_AFTER if older_than is None else older_than
    now = timezone.now()
    due = (
        InboundCallback.objects.filter(
            state=CallbackState.RECEIVED, received_at__lte=now - timedelta(seconds=age)
        )
        .exclude(next_attempt_at__gt=now)
        .order_by("received_at")
        .values_list("pk", flat=True)[:limit]
    )
    count = 0
    for callback_id in due:
        if callback_enqueue(callback_id=callback_id):
            count += 1
    if count:
        logger.info("re-drove stored callbacks", extra=ctx(count=count))
    return count


def callback_replay(*, callback_id: int) -> InboundCallback:
    """Put a parked (failed/orphan/invalid) callback back in the queue, for an operator."""
    with transaction.atomic():
        callback = InboundCallback.objects.select_for_update().get(pk=callback_id)
        if callback.state in (CallbackState.FAILED, CallbackState.ORPHAN):
            callback.state = CallbackState.RECEIVED
            callback.attempts = 0
            callback.next_attempt_at = None
            callback.save(update_fields=["state", "attempts", "next_attempt_at"])
            transaction.on_commit(lambda: callback_enqueue(callback_id=callback_id))
    return callback
