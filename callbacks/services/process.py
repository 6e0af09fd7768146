"""Processing stored callbacks one at a time: authenticate the callback against its payment
(the token in its URL, the CheckoutRequestID in its body), hand its result to the payment as
evidence (:func:`payments.outcomes.payment_apply_evidence` decides), and move the callback to
the state the verdict maps to.

Processing is idempotent: the callback row and the payment row are locked, the outcome is
decided from what is stored, and a second run of the same callback (a retried task, a
duplicate delivery, a replay) changes nothing.
"""

from __future__ import annotations

import logging
import traceback
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import InterfaceError, OperationalError, transaction
from django.db.models import F, OuterRef, Subquery, UUIDField
from django.db.models.functions import Coalesce
from django.utils import timezone

from core.logging import ctx
from daraja.c2b import parse_c2b_notification
from daraja.parsing import PayloadError, StkCallback, parse_stk_callback
from payments import outcomes
from payments.c2b import payment_receive
from payments.models import EventKind, EventSource, MpesaAccount, Payment
from payments.outcomes import Evidence, Verdict
from payments.services import payment_record_event

from ..models import FINAL_STATES, CallbackKind, CallbackState, InboundCallback
from .intake import flag_checkout_target
from .states import callback_move, callbacks_move
from .wakeup import verify_enqueue

logger = logging.getLogger(__name__)

TRANSIENT_ERRORS = (OperationalError, InterfaceError)

# What the inbox makes of each verdict on the payment.
VERDICT_STATES = {
    Verdict.APPLIED: CallbackState.PROCESSED,
    Verdict.DUPLICATE: CallbackState.DUPLICATE,
    Verdict.IGNORED: CallbackState.IGNORED,
    Verdict.REVIEW: CallbackState.REVIEW,
    Verdict.UNCONFIRMED: CallbackState.VERIFYING,
    Verdict.TOO_EARLY: CallbackState.RECEIVED,
}


class RetryLater(Exception):
    """The callback cannot be decided yet (its payment is still initiating): try again."""

    def __init__(self, reason: str, countdown: float) -> None:
        super().__init__(reason)
        self.countdown = countdown


@dataclass(frozen=True)
class ProcessOutcome:
    state: str
    detail: str = ""


PaymentLookup = Mapping[str, Payment]


def callback_process(*, callback_id: int) -> ProcessOutcome:
    """Apply one stored callback to its payment. Raises RetryLater when it is too early."""
    with transaction.atomic():
        callback = InboundCallback.objects.select_for_update().get(pk=callback_id)
        if callback.state in FINAL_STATES:
            return ProcessOutcome(callback.state, "already processed")
        outcome, retry = process_locked(callback, locked_payments=None)
    if retry is not None:
        raise retry
    return outcome


def process_locked(
    callback: InboundCallback, *, locked_payments: PaymentLookup | None
) -> tuple[ProcessOutcome, RetryLater | None]:
    """Decide and record one callback whose row the caller has locked."""
    callback.attempts += 1
    outcome = _decide(callback, locked_payments)
    retry: RetryLater | None = None
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
    fields: dict[str, Any] = {
        "attempts": callback.attempts,
        "checkout_request_id": callback.checkout_request_id,
        "payment": callback.payment,
    }
    if retry is not None:
        # Not decided: the state stays; only the attempt and the next try are written.
        callback.last_error = outcome.detail
        callback.next_attempt_at = timezone.now() + timedelta(seconds=retry.countdown)
        callback.save(
            update_fields=[
                "attempts",
                "last_error",
                "next_attempt_at",
                "checkout_request_id",
                "payment",
            ]
        )
        return outcome, retry
    if outcome.state == CallbackState.VERIFYING:
        callback_move(
            callback,
            to_state=CallbackState.VERIFYING,
            last_error=outcome.detail,
            next_attempt_at=None,
            **fields,
        )
        callback_id = callback.pk
        transaction.on_commit(lambda: verify_enqueue(callback_id=callback_id))
        return outcome, None
    callback_move(
        callback,
        to_state=outcome.state,
        last_error="" if outcome.state == CallbackState.PROCESSED else outcome.detail,
        processed_at=timezone.now(),
        next_attempt_at=None,
        **fields,
    )
    logger.info(
        "callback processed",
        extra=ctx(callback_id=callback.pk, state=outcome.state, payment_id=callback.payment_id),
    )
    return outcome, None


def payment_of_token() -> Coalesce:
    """SQL for an UPDATE of callbacks: the callback's payment, else the one whose token its
    path carried. Processing links them; a callback parked because processing failed may not
    have got that far, and its payment's API client must still find it (to replay it)."""
    by_token = (
        Payment.objects.filter(callback_token_hash=OuterRef("token_hash"))
        .exclude(callback_token_hash="")
        .values("pk")[:1]
    )
    return Coalesce(F("payment_id"), Subquery(by_token), output_field=UUIDField())


def callback_mark_failed(*, callback_id: int, error: BaseException) -> None:
    """Processing kept failing: park it, with the traceback, for an operator to replay."""
    callbacks_move(
        InboundCallback.objects.filter(pk=callback_id),
        from_states=(CallbackState.RECEIVED, CallbackState.VERIFYING),
        to_state=CallbackState.FAILED,
        last_error=_traceback(error),
        processed_at=timezone.now(),
        payment=payment_of_token(),
    )


def callback_record_attempt_error(*, callback_id: int, error: BaseException) -> None:
    InboundCallback.objects.filter(pk=callback_id).update(last_error=_traceback(error))


def _traceback(error: BaseException) -> str:
    return "".join(traceback.format_exception(error))[-8000:]


def _decide(callback: InboundCallback, locked_payments: PaymentLookup | None) -> ProcessOutcome:
    """Runs under the callback row's lock, inside the caller's transaction."""
    if callback.kind == CallbackKind.C2B_CONFIRMATION:
        return _decide_c2b(callback)
    try:
        parsed = parse_stk_callback(bytes(callback.body))
    except PayloadError as exc:
        # Unreadable, but the path's token still says whose it is: link it, so the payment's
        # API client sees it among the payment's callbacks (nothing about the payment changes).
        if callback.token_hash:
            if locked_payments is not None:
                callback.payment = locked_payments.get(callback.token_hash)
            else:
                callback.payment = Payment.objects.filter(
                    callback_token_hash=callback.token_hash
                ).first()
        return ProcessOutcome(CallbackState.INVALID, str(exc))
    callback.checkout_request_id = parsed.checkout_request_id

    if not callback.token_hash:
        flag_checkout_target(parsed, callback, "callback without a token")
        return ProcessOutcome(CallbackState.REJECTED, "callback URL has no token")
    if locked_payments is not None:
        payment = locked_payments.get(callback.token_hash)
    else:
        payment = (
            Payment.objects.select_for_update()
            .filter(callback_token_hash=callback.token_hash)
            .first()
        )
    if payment is None:
        flag_checkout_target(parsed, callback, "callback with an unknown token")
        return ProcessOutcome(CallbackState.REJECTED, "unknown callback token")
    callback.payment = payment

    if (
        payment.checkout_request_id is not None
        and payment.checkout_request_id != parsed.checkout_request_id
    ):
        payment_record_event(
            payment=payment,
            kind=EventKind.FLAGGED,
            source=EventSource.CALLBACK,
            reason="callback token used with another payment's CheckoutRequestID",
            evidence={"callback_id": callback.pk, **parsed.evidence()},
            callback_id=callback.pk,
        )
        return ProcessOutcome(
            CallbackState.REJECTED, "the token belongs to a different CheckoutRequestID"
        )
    # The token proves this callback is for this payment (a payment without a
    # CheckoutRequestID yet adopts the callback's): the payment decides the rest.
    result = outcomes.payment_apply_evidence(
        payment=payment, evidence=stk_evidence(callback, parsed), locked=True
    )
    return ProcessOutcome(VERDICT_STATES[result.verdict], result.detail)


# What the inbox makes of what a C2B confirmation did.
RECEIVED_STATES = {
    Verdict.APPLIED: CallbackState.PROCESSED,
    Verdict.DUPLICATE: CallbackState.DUPLICATE,
    Verdict.REVIEW: CallbackState.REVIEW,
}


def _decide_c2b(callback: InboundCallback) -> ProcessOutcome:
    """A C2B confirmation: its account's token, then the money, recorded once
    (:func:`payments.c2b.payment_receive` decides)."""
    try:
        notification = parse_c2b_notification(bytes(callback.body))
    except PayloadError as exc:
        return ProcessOutcome(CallbackState.INVALID, str(exc))
    account = (
        MpesaAccount.objects.filter(url_token_hash=callback.token_hash).first()
        if callback.token_hash
        else None
    )
    if account is None:
        return ProcessOutcome(CallbackState.REJECTED, "unknown C2B URL token")
    received = payment_receive(account=account, notification=notification, callback_id=callback.pk)
    callback.payment = received.payment
    return ProcessOutcome(RECEIVED_STATES[received.verdict], received.detail)


def stk_evidence(callback: InboundCallback, parsed: StkCallback) -> Evidence:
    """An STK callback's result, as evidence for its payment."""
    record: dict[str, Any] = {"callback_id": callback.pk, **parsed.evidence()}
    if parsed.warnings:
        record["warnings"] = list(parsed.warnings)
    if callback.verified_at is not None:
        record["verified_by_query_at"] = callback.verified_at.isoformat()
    return Evidence(
        source=EventSource.CALLBACK,
        succeeded=parsed.is_success,
        result_code=parsed.result_code,
        result_desc=parsed.result_desc,
        checkout_request_id=parsed.checkout_request_id,
        merchant_request_id=parsed.merchant_request_id,
        receipt_number=parsed.receipt_number,
        amount=parsed.amount,
        transaction_date=parsed.transaction_date,
        phone_number=(parsed.phone_number or "") if parsed.is_success else None,
        verified=callback.verified_at is not None,
        record=record,
        callback_id=callback.pk,
    )
