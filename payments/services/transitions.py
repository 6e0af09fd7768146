"""The one transition function of a payment, and the events that do not change its status.

Every status change goes through :func:`payment_transition`, which checks the allowed
transitions, changes the row with a conditional update under a row lock, and writes the audit
event, all in one transaction.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db import transaction
from django.utils import timezone

from core.db import update_rows
from core.logging import ctx
from core.metrics import PAYMENT_OUTCOMES, code_label, count
from daraja.errors import known_final_failure

from ..events import emit_needs_review, emit_transitions
from ..models import EventKind, EventSource, Payment, PaymentEvent, PaymentStatus

logger = logging.getLogger(__name__)

ALLOWED_TRANSITIONS: dict[str, frozenset[str]] = {
    # INITIATED -> SUCCESS: a verified callback for a push whose initiation answer was lost.
    PaymentStatus.INITIATED: frozenset(
        {PaymentStatus.PENDING, PaymentStatus.FAILED, PaymentStatus.SUCCESS}
    ),
    PaymentStatus.PENDING: frozenset({PaymentStatus.SUCCESS, PaymentStatus.FAILED}),
    PaymentStatus.SUCCESS: frozenset(),
    # Money M-Pesa took never ends FAILED in our books: a verified success (late callback,
    # STK Query, statement line) moves a FAILED payment to SUCCESS; callers check the evidence.
    PaymentStatus.FAILED: frozenset({PaymentStatus.SUCCESS}),
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
        "failure_final",
    }
)


class InvalidTransition(Exception):
    def __init__(self, from_status: str, to_status: str, message: str = "") -> None:
        super().__init__(message or f"a payment cannot go from {from_status} to {to_status}")
        self.from_status = from_status
        self.to_status = to_status


def payment_failure_is_final(payment: Payment) -> bool:
    """FAILED for a reason M-Pesa gave (a result code the catalogue in ``daraja.errors`` says
    is a final failure — 1032 cancelled by the customer, 2001 wrong PIN, … — or a push Daraja
    refused), as opposed to FAILED because we stopped waiting ("expired unresolved", an STK
    Push whose answer was lost): only the latter may become SUCCESS on later evidence alone."""
    if payment.status != PaymentStatus.FAILED:
        return False
    return payment.failure_final or known_final_failure(payment.result_code)


@dataclass(frozen=True)
class TransitionResult:
    payment: Payment
    changed: bool
    event: PaymentEvent | None


# An event's reason is kept whole up to this many characters (a person's reason is at most
# 2,000, with a prefix); longer text is cut with a note saying so, never silently.
EVENT_REASON_MAX = 4000


def event_reason(reason: str) -> str:
    if len(reason) <= EVENT_REASON_MAX:
        return reason
    note = f" … [cut: {len(reason):,} characters]"
    return reason[: EVENT_REASON_MAX - len(note)] + note


def payment_transition(
    *,
    payment: Payment,
    to_status: str,
    source: str,
    actor: str = "",
    reason: str = "",
    evidence: dict[str, Any] | None = None,
    callback_id: int | None = None,
    fields: dict[str, Any] | None = None,
    locked: bool = False,
) -> TransitionResult:
    """Move ``payment`` to ``to_status`` with its audit event, atomically.

    Re-reads the row under a lock (``locked=True``: the caller already holds the row lock in
    this transaction and ``payment`` is current); a transition to the status it already has
    is a no-op (``changed=False``) so that retries and duplicates change nothing. The update
    is conditional on the status read, so a concurrent change can never be overwritten.
    """
    fields = _checked_fields(fields)
    # A caller holding the lock is inside its own transaction (and savepoint if it wants one).
    with transaction.atomic(savepoint=not locked):
        if locked:
            current = payment
        else:
            current = Payment.objects.select_for_update().get(pk=payment.pk)
        from_status = current.status
        if from_status == to_status:
            return TransitionResult(payment=current, changed=False, event=None)
        updates = _transition_updates(from_status, to_status, fields, timezone.now())
        # Conditional update: acts only if nobody changed the status since we read it.
        changed = Payment.objects.filter(pk=current.pk, status=from_status).update(**updates)
        if changed != 1:
            raise InvalidTransition(from_status, to_status)
        for name, value in updates.items():
            setattr(current, name, value)
        event = PaymentEvent.objects.create(
            payment=current,
            kind=EventKind.TRANSITION,
            from_status=from_status,
            to_status=to_status,
            source=source,
            actor=actor,
            reason=event_reason(reason),
            evidence=evidence or {},
            callback_id=callback_id,
        )
        emit_transitions([(current, from_status, to_status, None)])
    _log_transition(current, from_status, to_status, source, callback_id)
    return TransitionResult(payment=current, changed=True, event=event)


@dataclass(frozen=True)
class TransitionRequest:
    """One change for :func:`payment_transition_many`: ``payment`` is locked and current."""

    payment: Payment
    to_status: str
    source: str
    reason: str = ""
    evidence: dict[str, Any] | None = None
    callback_id: int | None = None
    fields: dict[str, Any] | None = None


def payment_transition_many(requests: Sequence[TransitionRequest]) -> None:
    """:func:`payment_transition` for many payments whose rows the caller holds locked, in
    its transaction: the same checks and the same rows, but one conditional UPDATE per set of
    fields and one INSERT for all the events. All or nothing: raises InvalidTransition (or the
    database's IntegrityError, for a receipt or CheckoutRequestID another payment holds) with
    nothing changed, in memory or, once the caller rolls back, in the database."""
    if not requests:
        return
    if len({request.payment.pk for request in requests}) != len(requests):
        raise ValueError("payment_transition_many takes each payment at most once")
    now = timezone.now()
    planned: list[tuple[TransitionRequest, str, dict[str, Any]]] = []
    groups: dict[tuple[str, ...], list[list[Any]]] = {}
    for request in requests:
        from_status = request.payment.status
        if from_status == request.to_status:
            raise InvalidTransition(from_status, request.to_status)
        updates = _transition_updates(
            from_status, request.to_status, _checked_fields(request.fields), now
        )
        planned.append((request, from_status, updates))
        names = tuple(sorted(updates))
        groups.setdefault(names, []).append(
            [request.payment.pk, from_status, *(updates[name] for name in names)]
        )
    with transaction.atomic():
        for names, rows in groups.items():
            changed = update_rows(Payment, set_fields=names, rows=rows, match_fields=["status"])
            if changed != len(rows):
                raise InvalidTransition(
                    "", "", f"{len(rows) - changed} of {len(rows)} payments changed meanwhile"
                )
        PaymentEvent.objects.bulk_create(
            PaymentEvent(
                payment=request.payment,
                kind=EventKind.TRANSITION,
                from_status=from_status,
                to_status=request.to_status,
                source=request.source,
                reason=event_reason(request.reason),
                evidence=request.evidence or {},
                callback_id=request.callback_id,
            )
            for request, from_status, _ in planned
        )
        emit_transitions(
            (request.payment, from_status, request.to_status, updates)
            for request, from_status, updates in planned
        )
    for request, from_status, updates in planned:
        for name, value in updates.items():
            setattr(request.payment, name, value)
        _log_transition(
            request.payment, from_status, request.to_status, request.source, request.callback_id
        )


def _checked_fields(fields: dict[str, Any] | None) -> dict[str, Any]:
    fields = dict(fields or {})
    unknown = set(fields) - _TRANSITION_FIELDS
    if unknown:
        raise ValueError(f"payment_transition cannot set {sorted(unknown)}")
    return fields


def _transition_updates(
    from_status: str, to_status: str, fields: dict[str, Any], now: datetime
) -> dict[str, Any]:
    """The columns a transition writes, after checking the transition table."""
    if to_status not in ALLOWED_TRANSITIONS[from_status]:
        raise InvalidTransition(from_status, to_status)
    updates: dict[str, Any] = {"status": to_status, "updated_at": now, **fields}
    if to_status in (PaymentStatus.SUCCESS, PaymentStatus.FAILED):
        updates["completed_at"] = now
    return updates


def _log_transition(
    payment: Payment, from_status: str, to_status: str, source: str, callback_id: int | None
) -> None:
    extra = {"payment_id": payment.pk, "from_status": from_status, "to_status": to_status}
    if callback_id is not None:
        extra["callback_id"] = callback_id
    logger.info("payment status changed", extra=ctx(source=source, **extra))
    if to_status in (PaymentStatus.SUCCESS, PaymentStatus.FAILED):
        labels = {
            "channel": payment.channel,
            "status": to_status,
            "result_code": code_label(payment.result_code),
        }
        transaction.on_commit(lambda: count(PAYMENT_OUTCOMES, **labels))


def payment_record_event(
    *,
    payment: Payment,
    kind: str,
    source: str,
    reason: str,
    evidence: dict[str, Any] | None = None,
    callback_id: int | None = None,
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
            emit_needs_review(payment)
        return PaymentEvent.objects.create(
            payment=payment,
            kind=kind,
            source=source,
            actor=actor,
            reason=event_reason(reason),
            evidence=evidence or {},
            callback_id=callback_id,
        )


def payment_flag(
    *,
    payment: Payment,
    source: str,
    reason: str,
    evidence: dict[str, Any] | None = None,
    callback_id: int | None = None,
    actor: str = "",
) -> PaymentEvent:
    """Keep ``payment`` for a person to look at (``needs_review``), with the reason on its
    trail; its status does not change."""
    event = payment_record_event(
        payment=payment,
        kind=EventKind.FLAGGED,
        source=source,
        reason=reason,
        evidence=evidence,
        callback_id=callback_id,
        actor=actor,
        flag=True,
    )
    logger.warning("payment flagged for review", extra=ctx(payment_id=payment.pk, reason=reason))
    return event


def payment_attach_receipt(
    *,
    payment: Payment,
    receipt_number: str,
    evidence: dict[str, Any],
    callback_id: int | None = None,
    source: str = EventSource.CALLBACK,
    actor: str = "",
    reason: str = "",
) -> bool:
    """A SUCCESS confirmed by STK Query has no receipt; a later callback (or a statement line)
    supplies it. Returns whether it was attached (False: the payment has a receipt already).
    Raises the database's IntegrityError when another payment holds the receipt."""
    with transaction.atomic():
        updated = Payment.objects.filter(
            pk=payment.pk, status=PaymentStatus.SUCCESS, mpesa_receipt_number__isnull=True
        ).update(mpesa_receipt_number=receipt_number, updated_at=timezone.now())
        if updated:
            payment.mpesa_receipt_number = receipt_number
            PaymentEvent.objects.create(
                payment=payment,
                kind=EventKind.NOTE,
                source=source,
                actor=actor,
                reason=event_reason(
                    reason or f"receipt {receipt_number} from a callback after SUCCESS by query"
                ),
                evidence=evidence,
                callback_id=callback_id,
            )
    return bool(updated)


def payment_clear_review(*, payment: Payment, actor: str, reason: str) -> bool:
    """A person looked at a flagged payment: clear the flag, on the record."""
    with transaction.atomic():
        cleared = Payment.objects.filter(pk=payment.pk, needs_review=True).update(
            needs_review=False, updated_at=timezone.now()
        )
        if cleared:
            PaymentEvent.objects.create(
                payment=payment,
                kind=EventKind.NOTE,
                source=EventSource.ADMIN,
                actor=actor,
                reason=event_reason(reason),
            )
    return bool(cleared)
