"""Draining the inbox in batches: claim stored callbacks with SELECT ... FOR UPDATE SKIP
LOCKED, lock their payments at once, and write the common case for the whole batch together.
Every callback is decided by the payment's own rules (:func:`payments.outcomes.payment_decide`);
only the writing is batched."""

from __future__ import annotations

import logging
import traceback
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import F, Q
from django.utils import timezone

from core.logging import ctx
from core.metrics import CALLBACK_PROCESSING_DELAY, observe
from daraja.parsing import PayloadError, StkCallback, parse_stk_callback
from payments import outcomes
from payments import services as payment_services
from payments.models import Payment
from payments.outcomes import Verdict
from payments.services import InvalidTransition, TransitionRequest

from ..models import CallbackKind, CallbackState, InboundCallback
from .process import (
    TRANSIENT_ERRORS,
    PaymentLookup,
    RetryLater,
    payment_of_token,
    process_locked,
    stk_evidence,
)
from .states import InvalidCallbackMove, callbacks_move, callbacks_move_rows

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class DrainResult:
    processed: int
    retry_in: float | None  # the soonest "try again" among callbacks not decidable yet


# What a drain reads of each callback (its body for the parse, received_at for the metrics).
_DRAIN_FIELDS = (
    "id",
    "kind",
    "state",
    "body",
    "token_hash",
    "attempts",
    "verified_at",
    "received_at",
)


def callbacks_drain_batch(*, batch_size: int | None = None) -> DrainResult:
    """Claim up to ``batch_size`` stored callbacks with SELECT ... FOR UPDATE SKIP LOCKED and
    process them in one transaction. Several workers can drain at once: each claims rows the
    others have not locked, so no callback is worked on twice.

    The common case (a result that moves its payment, nothing to check further) is written
    for the whole batch at once by :class:`_Batch`; every other callback goes through the
    same decisions as :func:`callback_process`, in its own savepoint, in arrival order."""
    size = batch_size or settings.CALLBACK_BATCH_SIZE
    now = timezone.now()
    retry_in: float | None = None
    with transaction.atomic():
        callbacks = list(
            InboundCallback.objects.select_for_update(skip_locked=True)
            .filter(state=CallbackState.RECEIVED)
            .filter(Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now))
            .order_by("id")
            .only(*_DRAIN_FIELDS)[:size]
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
            _, retry = process_locked(callback, locked_payments=payments)
    except TRANSIENT_ERRORS:
        raise
    except Exception as exc:
        # A bug or an unexpected shape: park this one, keep draining the others.
        _park_in_batch(callback, exc)
        return None
    return retry


class _Batch:
    """The callbacks of a batch whose decision is a plain transition of their payment (a
    first result, or a late success): collected, then written together by :meth:`flush`: one
    UPDATE for the payments, one INSERT for their events, one UPDATE for the callbacks.
    Anything else (a review, a duplicate, a verification, a receipt another payment holds,
    and anything a flush could not write) is left to the one-by-one path."""

    def __init__(self, callbacks: list[InboundCallback], payments: PaymentLookup) -> None:
        self.payments = payments
        self.parsed: dict[int, StkCallback] = {}
        for callback in callbacks:
            if callback.kind != CallbackKind.STK:
                continue  # C2B confirmations are decided one by one
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
            payment.checkout_request_id is None
            or payment.checkout_request_id != parsed.checkout_request_id
        ):
            return False  # adopting an id, or a token used with another's: one by one
        try:
            decision = outcomes.payment_decide(
                payment=payment, evidence=stk_evidence(callback, parsed)
            )
        except Exception:
            return False  # the one-by-one path records what went wrong, on this callback only
        request = decision.transition
        if decision.verdict != Verdict.APPLIED or request is None:
            return False
        receipt = (request.fields or {}).get("mpesa_receipt_number")
        if receipt is not None:
            if receipt in self.receipts_taken:
                return False
            self.receipts_taken.add(receipt)
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
                callbacks_move_rows(
                    from_state=CallbackState.RECEIVED,
                    to_state=CallbackState.PROCESSED,
                    set_fields=_PROCESSED_FIELDS,
                    rows=[
                        [
                            callback.pk,
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
                payment_services.payment_transition_many([request for _, request in pending])
        except (IntegrityError, InvalidTransition, InvalidCallbackMove) as exc:
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
        delays = [(now - callback.received_at).total_seconds() for callback, _ in pending]
        kinds = [callback.kind for callback, _ in pending]
        transaction.on_commit(lambda: _observe_processed(kinds, delays))


def _observe_processed(kinds: list[str], delays: list[float]) -> None:
    for kind, delay in zip(kinds, delays, strict=True):
        observe(CALLBACK_PROCESSING_DELAY, delay, kind=kind, state=CallbackState.PROCESSED)


_PROCESSED_FIELDS = (
    "attempts",
    "last_error",
    "processed_at",
    "next_attempt_at",
    "checkout_request_id",
    "payment",
)


def _park_in_batch(callback: InboundCallback, exc: BaseException) -> None:
    logger.exception("callback processing failed", extra=ctx(callback_id=callback.pk))
    callbacks_move(
        InboundCallback.objects.filter(pk=callback.pk),
        from_states=(CallbackState.RECEIVED,),
        to_state=CallbackState.FAILED,
        attempts=F("attempts") + 1,
        last_error="".join(traceback.format_exception(exc))[-8000:],
        processed_at=timezone.now(),
        payment=payment_of_token(),
    )
