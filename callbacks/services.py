"""Callback inbox writes: receive (store raw, fast), process (apply to the payment), drain in
batches, re-drive, replay.

Processing is idempotent: the callback row and the payment row are locked, the outcome is
decided from what is stored, and a second run of the same callback (a retried task, a
duplicate delivery, a replay) changes nothing.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
import traceback
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import IntegrityError, InterfaceError, OperationalError, transaction
from django.db.models import Exists, F, OuterRef, Q, Subquery, UUIDField, Value
from django.db.models.functions import Coalesce, Concat
from django.utils import timezone

from core.db import update_rows
from core.degraded import degraded
from core.logging import ctx
from core.models import hash_secret
from core.net import ip_allowed
from daraja.client import get_client
from daraja.errors import DarajaError
from daraja.parsing import PayloadError, StkCallback, parse_stk_callback
from payments.models import EventKind, EventSource, Payment, PaymentEvent, PaymentStatus
from payments.services import (
    InvalidTransition,
    TransitionRequest,
    payment_attach_receipt,
    payment_record_event,
    payment_transition,
    payment_transition_many,
)

from .models import FINAL_STATES, CallbackKind, CallbackState, InboundCallback

logger = logging.getLogger(__name__)

TRANSIENT_ERRORS = (OperationalError, InterfaceError)

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


# --- Receive --------------------------------------------------------------------------------


def callback_receive(
    *,
    body: bytes,
    content_type: str,
    headers: Mapping[str, str],
    source_ip: str | None,
    token: str,
    kind: str = CallbackKind.STK,
    state: str = CallbackState.RECEIVED,
    error: str = "",
    source_flagged: bool = False,
) -> InboundCallback:
    """Store the request as received, then (after commit) wake up its processing.

    One INSERT, committed on its own (no explicit transaction: BEGIN and COMMIT would double
    the round trips of the hottest path). Called inside a transaction, the wake-up waits for
    its commit as usual; in autocommit, ``on_commit`` runs it as soon as the row is stored."""
    kept = {name: headers[name][:500] for name in _KEPT_HEADERS if name in headers}
    callback = InboundCallback.objects.create(
        kind=kind,
        body=body,
        content_type=content_type[:200],
        headers=kept,
        source_ip=source_ip,
        source_flagged=source_flagged,
        token_hash=hash_secret(token) if token else "",
        dedupe_key=hashlib.sha256(body).hexdigest(),
        body_size=len(body),
        state=state,
        last_error=error,
        processed_at=timezone.now() if state != CallbackState.RECEIVED else None,
    )
    if state == CallbackState.RECEIVED:
        transaction.on_commit(lambda: callback_wake(callback_id=callback.pk))
    return callback


def token_payment(token: str) -> Payment | None:
    """The payment whose callback URL carries ``token``, if any (one indexed lookup)."""
    if not token:
        return None
    return Payment.objects.filter(callback_token_hash=hash_secret(token)).first()


def callback_refuse(
    *,
    body: bytes,
    content_type: str,
    headers: Mapping[str, str],
    source_ip: str | None,
    token: str,
    error: str,
    payment: Payment | None = None,
    source_flagged: bool = False,
    flag_reason: str = "",
    from_daraja: bool = False,
) -> InboundCallback | None:
    """Record a callback refused at intake, as ``rejected``; never processed.

    With ``payment`` (its token is that payment's, e.g. a genuine callback from an address
    the allowlist does not know yet) the row is linked and, unless oversized, stored whole,
    like any callback with a valid token. Otherwise only the body's SHA-256, size and
    CALLBACK_REFUSED_BODY_PREFIX_BYTES of it are stored, for at most
    CALLBACK_REFUSED_RATE_LIMIT per source address; past that, the refusal is counted on the
    last row stored for the source and None is returned. ``flag_reason``: a forged token;
    the payment the body's CheckoutRequestID names gets a flag saying so. ``from_daraja``:
    the source is on MPESA_CALLBACK_ALLOWED_IPS, Daraja's own addresses, which no flood comes
    from; such a callback (a genuine one whose payment we do not have, e.g. after a database
    restore: answered 200, Daraja will not send it again) is stored whole and never limited,
    like one with a payment."""
    from .limits import refused_slot, refused_stored

    whole = payment is not None or from_daraja
    if not whole:
        slot = refused_slot(source_ip)
        if not slot.store:
            if slot.counted_on is not None:
                InboundCallback.objects.filter(pk=slot.counted_on).update(
                    refused_unstored=F("refused_unstored") + 1
                )
            return None
    limit = settings.CALLBACK_MAX_BODY_BYTES
    keep = limit if whole else settings.CALLBACK_REFUSED_BODY_PREFIX_BYTES
    parsed: StkCallback | None = None
    if len(body) <= limit:
        try:
            parsed = parse_stk_callback(body)
        except PayloadError:
            parsed = None
    kept = {name: headers[name][:500] for name in _KEPT_HEADERS if name in headers}
    callback = InboundCallback.objects.create(
        body=body[:keep],
        body_size=len(body),
        body_complete=len(body) <= keep,
        content_type=content_type[:200],
        headers=kept,
        source_ip=source_ip,
        source_flagged=source_flagged,
        token_hash=hash_secret(token) if token else "",
        payment=payment,
        dedupe_key=hashlib.sha256(body).hexdigest(),
        checkout_request_id=parsed.checkout_request_id[:128] if parsed else "",
        state=CallbackState.REJECTED,
        last_error=error,
        processed_at=timezone.now(),
    )
    if not whole:
        refused_stored(source_ip, callback.pk)
    if flag_reason and parsed is not None:
        _flag_checkout_target(parsed, callback, flag_reason)
    return callback


_last_wakeup = 0.0
_trailing_wakeup = 0.0
_wakeup_lock = threading.Lock()


def callback_wake(*, callback_id: int) -> bool:
    """After a callback is stored: in ``task`` mode publish its own task; in ``batch`` mode
    publish a drain wake-up at most every CALLBACK_WAKEUP_INTERVAL seconds per process (the
    drain takes every stored callback, so one wake-up serves many). A callback arriving inside
    the window gets one delayed wake-up at the window's end, so none waits for the beat."""
    if settings.CALLBACK_PROCESSING == "task":
        return callback_enqueue(callback_id=callback_id)
    global _last_wakeup, _trailing_wakeup
    interval = settings.CALLBACK_WAKEUP_INTERVAL
    now = time.monotonic()
    with _wakeup_lock:
        if now - _last_wakeup >= interval:
            _last_wakeup = now
            countdown = None
        elif now >= _trailing_wakeup:
            _trailing_wakeup = _last_wakeup + interval
            countdown = max(_trailing_wakeup - now, 0.01)
        else:
            return True  # a delayed wake-up for this window is already on its way
    return drain_enqueue(countdown=countdown)


def _publish(task: Any, args: tuple[Any, ...], countdown: float | None, what: str) -> bool:
    """Publish, never raise: a broker outage is logged; the row is stored and the re-drive
    sweeper enqueues it later."""
    try:
        if countdown is None:
            task.apply_async(args)
        else:
            task.apply_async(args, countdown=countdown)
        return True
    except Exception as exc:
        degraded("wakeup", exc, f"could not publish ({what}); the beat drain and re-drive retry")
        return False


def callback_enqueue(*, callback_id: int, countdown: float | None = None) -> bool:
    from .tasks import process_callback

    return _publish(process_callback, (callback_id,), countdown, f"callback {callback_id}")


def drain_enqueue(*, countdown: float | None = None) -> bool:
    from .tasks import drain_callbacks

    return _publish(drain_callbacks, (), countdown, "drain")


def verify_enqueue(*, callback_id: int, countdown: float | None = None) -> bool:
    from .tasks import verify_callback

    return _publish(verify_callback, (callback_id,), countdown, f"verify {callback_id}")


# --- Process ----------------------------------------------------------------------------------


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
        outcome, retry = _process_locked(callback, locked_payments=None)
    if retry is not None:
        raise retry
    return outcome


@dataclass(frozen=True)
class DrainResult:
    processed: int
    retry_in: float | None  # the soonest "try again" among callbacks not decidable yet


def callbacks_drain_batch(*, batch_size: int | None = None) -> DrainResult:
    """Claim up to ``batch_size`` stored callbacks with SELECT ... FOR UPDATE SKIP LOCKED and
    process them in one transaction. Several workers can drain at once: each claims rows the
    others have not locked, so no callback is worked on twice.

    The common case (a first result for a PENDING payment, nothing to check further) is
    written for the whole batch at once by :class:`_Batch`; every other callback goes through
    the same decisions as :func:`callback_process`, in its own savepoint, in arrival order."""
    size = batch_size or settings.CALLBACK_BATCH_SIZE
    now = timezone.now()
    retry_in: float | None = None
    with transaction.atomic():
        callbacks = list(
            InboundCallback.objects.select_for_update(skip_locked=True)
            .filter(state=CallbackState.RECEIVED)
            .filter(Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now))
            .order_by("id")
            .only("id", "body", "token_hash", "attempts", "verified_at")[:size]
        )
        if not callbacks:
            return DrainResult(0, None)
        hashes = sorted({callback.token_hash for callback in callbacks if callback.token_hash})
        # Lock the batch's payments once, in primary-key order (no deadlocks between drainers).
        payments = {
            payment.callback_token_hash: payment
            for payment in Payment.objects.select_for_update()
            .filter(callback_token_hash__in=hashes)
            .order_by("pk")
        }
        batch = _Batch(callbacks, payments)
        for callback in callbacks:
            if batch.add(callback):
                continue
            batch.flush()  # what came before this callback is written before it is decided
            retry = _process_in_batch(callback, payments)
            if retry is not None:
                retry_in = retry.countdown if retry_in is None else min(retry_in, retry.countdown)
        batch.flush()
    return DrainResult(len(callbacks), retry_in)


def _process_in_batch(callback: InboundCallback, payments: PaymentLookup) -> RetryLater | None:
    """One callback of a batch, decided on its own, in a savepoint."""
    try:
        with transaction.atomic():
            _, retry = _process_locked(callback, locked_payments=payments)
    except TRANSIENT_ERRORS:
        raise
    except Exception as exc:
        # A bug or an unexpected shape: park this one, keep draining the others.
        _park_in_batch(callback, exc)
        return None
    return retry


class _Batch:
    """The callbacks of a batch that need no decision beyond "first result for a PENDING
    payment": a failure, or a success with the payment's amount, a receipt no payment holds,
    and no verification pending. They are collected, then written together by
    :meth:`flush`: one UPDATE for the payments, one INSERT for their events, one UPDATE for
    the callbacks. Anything else (and anything a flush could not write) is left to the
    one-by-one path, which records reviews, flags and duplicates."""

    def __init__(self, callbacks: list[InboundCallback], payments: PaymentLookup) -> None:
        self.payments = payments
        self.parsed: dict[int, StkCallback] = {}
        for callback in callbacks:
            try:
                self.parsed[callback.pk] = parse_stk_callback(bytes(callback.body))
            except PayloadError:
                pass  # decided (INVALID) by the one-by-one path
        receipts = {p.receipt_number for p in self.parsed.values() if p.receipt_number}
        self.receipts_taken = set(
            Payment.objects.filter(mpesa_receipt_number__in=receipts).values_list(
                "mpesa_receipt_number", flat=True
            )
        )
        self.pending: list[tuple[InboundCallback, TransitionRequest]] = []
        self.touched: set[Any] = set()

    def add(self, callback: InboundCallback) -> bool:
        parsed = self.parsed.get(callback.pk)
        payment = self.payments.get(callback.token_hash) if callback.token_hash else None
        if parsed is None or payment is None:
            return False
        if payment.pk in self.touched:
            self.flush()  # a second callback for this payment: decide it on what is written
            return False
        if (
            payment.status not in (PaymentStatus.INITIATED, PaymentStatus.PENDING)
            or payment.checkout_request_id is None
            or payment.checkout_request_id != parsed.checkout_request_id
        ):
            return False
        evidence = _evidence(callback, parsed)
        if parsed.is_success:
            if (
                parsed.amount != payment.amount
                or parsed.receipt_number in self.receipts_taken
                or (needs_verification(payment) and callback.verified_at is None)
            ):
                return False
            self.receipts_taken.add(parsed.receipt_number)
            to_status, fields, reason = (
                PaymentStatus.SUCCESS,
                _success_fields(parsed),
                parsed.result_desc,
            )
        else:
            to_status, fields, reason = (
                PaymentStatus.FAILED,
                _failure_fields(parsed),
                _failure_reason(parsed),
            )
        request = TransitionRequest(
            payment=payment,
            to_status=to_status,
            source=EventSource.CALLBACK,
            reason=reason,
            evidence=evidence,
            callback=callback,
            fields=fields,
        )
        self.pending.append((callback, request))
        self.touched.add(payment.pk)
        return True

    def flush(self) -> None:
        pending, self.pending = self.pending, []
        self.touched.clear()
        if not pending:
            return
        now = timezone.now()
        try:
            with transaction.atomic():
                update_rows(
                    InboundCallback,
                    set_fields=_PROCESSED_FIELDS,
                    rows=[
                        [
                            callback.pk,
                            CallbackState.PROCESSED,
                            callback.attempts + 1,
                            "",
                            now,
                            None,
                            self.parsed[callback.pk].checkout_request_id,
                            request.payment.pk,
                        ]
                        for callback, request in pending
                    ],
                )
                payment_transition_many([request for _, request in pending])
        except (IntegrityError, InvalidTransition) as exc:
            # Another drainer credited one of these receipts meanwhile (or a row changed):
            # decide each on its own, where such conflicts are recorded for review.
            logger.info(
                "batch write conflicted; deciding one by one",
                extra=ctx(count=len(pending), error=type(exc).__name__),
            )
            for callback, _ in pending:
                _process_in_batch(callback, self.payments)
            return
        for callback, request in pending:
            callback.state = CallbackState.PROCESSED
            callback.attempts += 1
            callback.processed_at = now
            callback.payment = request.payment


_PROCESSED_FIELDS = (
    "state",
    "attempts",
    "last_error",
    "processed_at",
    "next_attempt_at",
    "checkout_request_id",
    "payment",
)


def _payment_of_token() -> Coalesce:
    """SQL for an UPDATE of callbacks: the callback's payment, else the one whose token its
    path carried. Processing links them; a callback parked because processing failed may not
    have got that far, and its payment's API client must still find it (to replay it)."""
    by_token = (
        Payment.objects.filter(callback_token_hash=OuterRef("token_hash"))
        .exclude(callback_token_hash="")
        .values("pk")[:1]
    )
    return Coalesce(F("payment_id"), Subquery(by_token), output_field=UUIDField())


def _park_in_batch(callback: InboundCallback, exc: BaseException) -> None:
    logger.exception("callback processing failed", extra=ctx(callback_id=callback.pk))
    InboundCallback.objects.filter(pk=callback.pk).update(
        state=CallbackState.FAILED,
        attempts=F("attempts") + 1,
        last_error="".join(traceback.format_exception(exc))[-8000:],
        processed_at=timezone.now(),
        payment=_payment_of_token(),
    )


def _process_locked(
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
    if retry is not None:
        callback.last_error = outcome.detail
        callback.next_attempt_at = timezone.now() + timedelta(seconds=retry.countdown)
    elif outcome.state == CallbackState.VERIFYING:
        callback.state = CallbackState.VERIFYING
        callback.last_error = outcome.detail
        callback.next_attempt_at = None
        callback_id = callback.pk
        transaction.on_commit(lambda: verify_enqueue(callback_id=callback_id))
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
    if retry is None and outcome.state != CallbackState.VERIFYING:
        logger.info(
            "callback processed",
            extra=ctx(callback_id=callback.pk, state=outcome.state, payment_id=callback.payment_id),
        )
    return outcome, retry


def callback_mark_failed(*, callback_id: int, error: BaseException) -> None:
    """Processing kept failing: park it, with the traceback, for an operator to replay."""
    text = "".join(traceback.format_exception(error))[-8000:]
    InboundCallback.objects.filter(pk=callback_id).exclude(state__in=FINAL_STATES).update(
        state=CallbackState.FAILED,
        last_error=text,
        processed_at=timezone.now(),
        payment=_payment_of_token(),
    )


def callback_record_attempt_error(*, callback_id: int, error: BaseException) -> None:
    text = "".join(traceback.format_exception(error))[-8000:]
    InboundCallback.objects.filter(pk=callback_id).update(last_error=text)


def _initiation_may_be_in_flight(payment: Payment) -> bool:
    """The web request that made this payment may still be waiting for Daraja's answer."""
    if payment.initiation_unknown:
        return False
    window = settings.MPESA_CONNECT_TIMEOUT + settings.MPESA_READ_TIMEOUT + 5
    return timezone.now() - payment.created_at < timedelta(seconds=window)


def _decide(callback: InboundCallback, locked_payments: PaymentLookup | None) -> ProcessOutcome:
    """Runs under the callback row's lock, inside the caller's transaction."""
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
        _flag_checkout_target(parsed, callback, "callback without a token")
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
        _flag_checkout_target(parsed, callback, "callback with an unknown token")
        return ProcessOutcome(CallbackState.REJECTED, "unknown callback token")
    callback.payment = payment

    if payment.checkout_request_id is None:
        if payment.status == PaymentStatus.INITIATED and _initiation_may_be_in_flight(payment):
            return ProcessOutcome(
                CallbackState.RECEIVED, "payment has no CheckoutRequestID yet (still initiating)"
            )
        # The push's answer was lost (timeout) or never awaited: the token proves this
        # callback is for this payment, so adopt Daraja's CheckoutRequestID from it.
        return _apply(payment, parsed, callback, adopt_checkout=True)
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
    return _apply(payment, parsed, callback, adopt_checkout=False)


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


def _apply(
    payment: Payment, parsed: StkCallback, callback: InboundCallback, *, adopt_checkout: bool
) -> ProcessOutcome:
    evidence = _evidence(callback, parsed)
    ids: dict[str, Any] = {}
    if adopt_checkout:
        ids = {
            "checkout_request_id": parsed.checkout_request_id,
            "merchant_request_id": parsed.merchant_request_id,
        }
        evidence["adopted_checkout_request_id"] = True

    if payment.status == PaymentStatus.SUCCESS:
        if not parsed.is_success:
            return ProcessOutcome(
                CallbackState.IGNORED,
                f"failure {parsed.result_code} after SUCCESS; SUCCESS never moves back",
            )
        if parsed.receipt_number == payment.mpesa_receipt_number:
            return ProcessOutcome(CallbackState.DUPLICATE, "payment already SUCCESS")
        if payment.mpesa_receipt_number is None and parsed.amount == payment.amount:
            assert parsed.receipt_number is not None
            try:
                with transaction.atomic():
                    payment_attach_receipt(
                        payment=payment,
                        receipt_number=parsed.receipt_number,
                        evidence=evidence,
                        callback=callback,
                    )
            except IntegrityError:
                return _review(payment, callback, evidence, _receipt_taken(parsed))
            return ProcessOutcome(CallbackState.PROCESSED, "receipt attached")
        return _review(payment, callback, evidence, "a second, different success callback")

    if payment.status == PaymentStatus.FAILED:
        if not parsed.is_success:
            return ProcessOutcome(CallbackState.DUPLICATE, "payment already FAILED")
        if payment.failure_final:
            return _review(
                payment,
                callback,
                evidence,
                f"success callback for a payment FAILED with result {payment.result_code}",
            )
        # Late success after we stopped waiting: money M-Pesa took never stays FAILED.
        return _credit(
            payment,
            parsed,
            callback,
            evidence,
            ids,
            reason=f"late success after FAILED ({payment.result_desc or payment.result_code})",
        )

    # INITIATED or PENDING: the callback decides the outcome.
    if not parsed.is_success:
        try:
            with transaction.atomic():
                _transition(
                    payment,
                    PaymentStatus.FAILED,
                    callback,
                    evidence,
                    reason=_failure_reason(parsed),
                    fields={**ids, **_failure_fields(parsed)},
                )
        except IntegrityError:
            # Only possible when adopting: the CheckoutRequestID is another payment's.
            return _review(
                payment,
                callback,
                evidence,
                f"CheckoutRequestID {parsed.checkout_request_id} belongs to another payment",
            )
        return ProcessOutcome(CallbackState.PROCESSED)
    return _credit(payment, parsed, callback, evidence, ids, reason=parsed.result_desc)


def _credit(
    payment: Payment,
    parsed: StkCallback,
    callback: InboundCallback,
    evidence: dict[str, Any],
    ids: dict[str, Any],
    *,
    reason: str,
) -> ProcessOutcome:
    assert parsed.amount is not None and parsed.receipt_number is not None
    if parsed.amount != payment.amount:
        return _review(
            payment,
            callback,
            evidence,
            f"amount mismatch: callback says {parsed.amount}, payment is {payment.amount}",
        )
    if needs_verification(payment) and callback.verified_at is None:
        return ProcessOutcome(
            CallbackState.VERIFYING, "confirming the success with STK Query before crediting"
        )
    try:
        with transaction.atomic():
            _transition(
                payment,
                PaymentStatus.SUCCESS,
                callback,
                evidence,
                reason=reason,
                fields={**ids, **_success_fields(parsed)},
            )
    except IntegrityError:
        # The unique receipt (or adopted CheckoutRequestID) belongs to another payment.
        return _review(payment, callback, evidence, _receipt_taken(parsed))
    return ProcessOutcome(CallbackState.PROCESSED)


def _evidence(callback: InboundCallback, parsed: StkCallback) -> dict[str, Any]:
    """What an event records of the callback behind it."""
    evidence: dict[str, Any] = {"callback_id": callback.pk, **parsed.evidence()}
    if parsed.warnings:
        evidence["warnings"] = list(parsed.warnings)
    if callback.verified_at is not None:
        evidence["verified_by_query_at"] = callback.verified_at.isoformat()
    return evidence


def _success_fields(parsed: StkCallback) -> dict[str, Any]:
    return {
        "result_code": parsed.result_code,
        "result_desc": parsed.result_desc,
        "mpesa_receipt_number": parsed.receipt_number,
        "transaction_date": parsed.transaction_date,
        "paid_amount": parsed.amount,
        "payer_phone": parsed.phone_number or "",
    }


def _failure_fields(parsed: StkCallback) -> dict[str, Any]:
    return {
        "result_code": parsed.result_code,
        "result_desc": parsed.result_desc,
        "failure_final": True,
    }


def _failure_reason(parsed: StkCallback) -> str:
    return parsed.result_desc or f"result code {parsed.result_code}"


def _receipt_taken(parsed: StkCallback) -> str:
    return (
        f"receipt {parsed.receipt_number} (or CheckoutRequestID {parsed.checkout_request_id}) "
        "already credited to another payment"
    )


def _transition(
    payment: Payment,
    to_status: str,
    callback: InboundCallback,
    evidence: dict[str, Any],
    *,
    reason: str,
    fields: dict[str, Any],
) -> None:
    try:
        payment_transition(
            payment=payment,
            to_status=to_status,
            source=EventSource.CALLBACK,
            reason=reason,
            evidence=evidence,
            callback=callback,
            fields=fields,
            locked=True,
        )
    except InvalidTransition:
        # The row changed under us (only possible without a lock, e.g. SQLite): decide again.
        payment.refresh_from_db()
        raise
    payment.status = to_status


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


# --- Verification before crediting (MPESA_VERIFY_SUCCESS) ------------------------------------


def needs_verification(payment: Payment) -> bool:
    mode = settings.MPESA_VERIFY_SUCCESS
    return mode == "always" or (mode == "above" and payment.amount > settings.MPESA_VERIFY_ABOVE)


class VerifyLater(Exception):
    """Daraja could not confirm yet (still pending, or unreachable): ask again later."""


def callback_verify(*, callback_id: int) -> str:
    """Confirm a success callback with STK Query (outside any transaction), then credit it,
    or, when the query contradicts it, refuse it as a security event and record the query's
    outcome on the payment."""
    callback = InboundCallback.objects.select_related("payment").get(pk=callback_id)
    payment = callback.payment
    if callback.state != CallbackState.VERIFYING or payment is None:
        return "skipped"
    assert payment.checkout_request_id is not None
    try:
        answer = get_client().stk_query(checkout_request_id=payment.checkout_request_id)
    except DarajaError as exc:  # both "pending" errors and outages: try again later
        raise VerifyLater(str(exc)) from None
    if answer.pending:
        raise VerifyLater(answer.result_desc or "still pending")
    if answer.is_success:
        InboundCallback.objects.filter(pk=callback_id, state=CallbackState.VERIFYING).update(
            verified_at=timezone.now()
        )
        return callback_process(callback_id=callback_id).state
    evidence = {
        "callback_id": callback_id,
        "query_result_code": answer.result_code,
        "query_result_desc": answer.result_desc,
    }
    reason = (
        f"STK Query contradicts the success callback: {answer.result_code} {answer.result_desc}"
    )
    with transaction.atomic():
        locked = InboundCallback.objects.select_for_update().get(pk=callback_id)
        if locked.state != CallbackState.VERIFYING:
            return "skipped"
        locked.state = CallbackState.REJECTED
        locked.last_error = reason
        locked.processed_at = timezone.now()
        locked.save(update_fields=["state", "last_error", "processed_at"])
        current = Payment.objects.select_for_update().get(pk=payment.pk)
        payment_record_event(
            payment=current,
            kind=EventKind.FLAGGED,
            source=EventSource.QUERY,
            reason=reason,
            evidence=evidence,
            callback=locked,
            flag=True,
        )
        if current.status in (PaymentStatus.INITIATED, PaymentStatus.PENDING):
            payment_transition(
                payment=current,
                to_status=PaymentStatus.FAILED,
                source=EventSource.QUERY,
                reason=f"STK Query: {answer.result_desc or answer.result_code}",
                evidence=evidence,
                fields={
                    "result_code": answer.result_code,
                    "result_desc": answer.result_desc,
                    "failure_final": True,
                },
                locked=True,
            )
    logger.warning("callback contradicted by STK Query", extra=ctx(callback_id=callback_id))
    return CallbackState.REJECTED


# --- Re-drive and replay ---------------------------------------------------------------------


def callbacks_redrive(*, older_than: float | None = None, limit: int = 1000) -> int:
    """Re-enqueue stored callbacks nobody processed (lost message, dead worker, broker
    outage). Each re-drive counts as an attempt: a callback that kills its worker every time
    is parked as failed after CALLBACK_MAX_ATTEMPTS instead of looping forever."""
    age = settings.CALLBACK_REDRIVE_AFTER if older_than is None else older_than
    now = timezone.now()
    stale = InboundCallback.objects.filter(
        state=CallbackState.RECEIVED, received_at__lte=now - timedelta(seconds=age)
    ).filter(Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now))
    parked = stale.filter(attempts__gte=settings.CALLBACK_MAX_ATTEMPTS).update(
        state=CallbackState.FAILED,
        last_error=_gave_up(),
        processed_at=now,
        payment=_payment_of_token(),
    )
    verifying = list(
        InboundCallback.objects.filter(
            state=CallbackState.VERIFYING, received_at__lte=now - timedelta(seconds=age)
        ).values_list("pk", flat=True)[:limit]
    )
    for callback_id in verifying:
        verify_enqueue(callback_id=callback_id)
    due = list(stale.order_by("received_at").values_list("pk", flat=True)[:limit])
    if not due:
        if parked:
            logger.warning("parked callbacks that kept failing", extra=ctx(count=parked))
        return 0
    InboundCallback.objects.filter(pk__in=due).update(attempts=F("attempts") + 1)
    if settings.CALLBACK_PROCESSING == "batch":
        published = drain_enqueue()
        count = len(due) if published else 0
    else:
        count = sum(1 for callback_id in due if callback_enqueue(callback_id=callback_id))
    logger.info("re-drove stored callbacks", extra=ctx(count=count, parked=parked))
    return count


def _gave_up() -> Concat:
    return Concat(
        Value("gave up after repeated attempts (worker lost or processing kept failing); "),
        F("last_error"),
    )


def callback_replay(*, callback_id: int, actor: str = "") -> InboundCallback:
    """Put a parked (failed/orphan) callback back in the queue, for an operator; recorded on
    its payment's audit trail when it has one."""
    with transaction.atomic():
        callback = (
            InboundCallback.objects.select_for_update(of=("self",))
            .select_related("payment")
            .get(pk=callback_id)
        )
        if callback.state in (CallbackState.FAILED, CallbackState.ORPHAN):
            _requeue(
                callback,
                payment=callback.payment,
                source=EventSource.ADMIN,
                actor=actor,
                reason=f"callback {callback.pk} replayed by an operator (it was {callback.state})",
            )
    return callback


class CallbackNotReplayable(Exception):
    """Only a callback whose processing failed is replayed for an API client, a bounded
    number of times; the message says why this one is not."""


def payment_callback_replay(*, payment: Payment, callback_id: int, actor: str) -> InboundCallback:
    """Put one of ``payment``'s failed callbacks back in the queue, for the payment's API
    client, and record it on the payment's audit trail. Raises
    ``InboundCallback.DoesNotExist`` for a callback that is not this payment's and
    :class:`CallbackNotReplayable` for one that did not fail (processed, duplicate, for
    review, ...: processing it again would change nothing, or is a person's decision) or was
    replayed through the API CALLBACK_API_REPLAY_LIMIT times already (a callback that keeps
    crashing its worker is then an operator's to replay, from the admin)."""
    with transaction.atomic():
        callback = InboundCallback.objects.select_for_update().get(pk=callback_id, payment=payment)
        if callback.state != CallbackState.FAILED:
            raise CallbackNotReplayable(
                f"callback {callback.pk} is {callback.state}: only a callback whose processing "
                "failed can be replayed"
            )
        limit = settings.CALLBACK_API_REPLAY_LIMIT
        done = PaymentEvent.objects.filter(
            callback=callback, source=EventSource.API, evidence__action=REPLAY_ACTION
        ).count()
        if done >= limit:
            raise CallbackNotReplayable(
                f"callback {callback.pk} was replayed {done} times through the API already "
                f"(CALLBACK_API_REPLAY_LIMIT is {limit}); an operator can replay it"
            )
        _requeue(
            callback,
            payment=payment,
            source=EventSource.API,
            actor=actor,
            reason=f"callback {callback.pk} replayed (its processing had failed; replay "
            f"{done + 1} of at most {limit} through the API)",
        )
    logger.info("callback replayed", extra=ctx(callback_id=callback.pk, actor=actor))
    return callback


# States whose stored error is a reason this code wrote about the callback (shown to the
# payment's API client): every final state but processed (no error) and failed, whose error
# is a traceback kept for operators, as is a waiting callback's; and verifying.
_REASON_STATES = (FINAL_STATES - {CallbackState.PROCESSED, CallbackState.FAILED}) | {
    CallbackState.VERIFYING
}


def callback_public_error(callback: InboundCallback, limit: int = 300) -> str:
    """What a payment's API client is told of a callback's error: the reason for the states
    that have one, a fixed sentence for a failed callback (its traceback can name hosts,
    users and rows: it stays with the operators), else ''."""
    if callback.state == CallbackState.FAILED:
        return "processing failed; the error is kept for the operators"
    if callback.state not in _REASON_STATES:
        return ""
    text = " ".join(callback.last_error.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


# The evidence that marks a replay on the payment's trail (counted for the API's limit).
REPLAY_ACTION = "callback_replay"


def _requeue(
    callback: InboundCallback, *, payment: Payment | None, source: str, actor: str, reason: str
) -> None:
    """Back in the queue as if it had just arrived; the replay recorded on ``payment``'s
    audit trail when there is one."""
    callback.state = CallbackState.RECEIVED
    callback.attempts = 0
    callback.next_attempt_at = None
    callback.processed_at = None
    callback.save(update_fields=["state", "attempts", "next_attempt_at", "processed_at"])
    if payment is not None:
        payment_record_event(
            payment=payment,
            kind=EventKind.NOTE,
            source=source,
            actor=actor,
            reason=reason,
            evidence={"action": REPLAY_ACTION},
            callback=callback,
        )
    callback_id = callback.pk
    transaction.on_commit(lambda: callback_wake(callback_id=callback_id))


# --- Retention of raw bodies -------------------------------------------------------------------

# Only these states' bodies are ever purged, and only for callbacks linked to no payment,
# whose token is no payment's, named by no payment's event and sent from no address of
# MPESA_CALLBACK_ALLOWED_IPS: a refused or unreadable request nobody's payment depends on.
# Evidence of money (processed, duplicate, ignored, review, orphan, failed, anything linked to
# or carrying the token of a payment, a forgery flagged on the payment it aimed at, what
# Daraja itself sent for a payment we do not have) is kept.
PURGEABLE_STATES = (CallbackState.REJECTED, CallbackState.INVALID)


def callback_bodies_purge(*, older_than_days: int | None = None, batch_size: int = 1000) -> int:
    """Empty the stored bodies of refused and invalid callbacks that concern no payment, did
    not come from Daraja's addresses (MPESA_CALLBACK_ALLOWED_IPS) and arrived more than
    ``older_than_days`` (CALLBACK_BODY_RETENTION_DAYS) ago. The row stays, with the body's
    SHA-256, its size, the headers and the error. Returns how many."""
    days = settings.CALLBACK_BODY_RETENTION_DAYS if older_than_days is None else older_than_days
    cutoff = timezone.now() - timedelta(days=days)
    due = InboundCallback.objects.filter(
        state__in=PURGEABLE_STATES,
        payment__isnull=True,
        received_at__lt=cutoff,
        body_purged_at__isnull=True,
    ).exclude(
        Exists(PaymentEvent.objects.filter(callback=OuterRef("pk")))
        # A payment's token in the path: ours, even if not linked (refused callbacks were
        # stored unlinked before they were linked at intake; the migration linked invalid ones).
        | Exists(
            Payment.objects.filter(callback_token_hash=OuterRef("token_hash")).exclude(
                callback_token_hash=""
            )
        )
    )
    allowlist = settings.MPESA_CALLBACK_ALLOWED_IPS
    total = 0
    after = 0
    while True:
        rows = list(
            due.filter(id__gt=after).order_by("id").values_list("id", "source_ip")[:batch_size]
        )
        if not rows:
            break
        after = rows[-1][0]
        ids = [pk for pk, source in rows if not ip_allowed(source, allowlist)]
        total += InboundCallback.objects.filter(pk__in=ids, payment__isnull=True).update(
            body=b"", body_complete=False, body_purged_at=timezone.now()
        )
    if total:
        logger.info("purged refused and invalid callback bodies", extra=ctx(count=total, days=days))
    return total
