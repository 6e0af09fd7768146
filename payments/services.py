"""Payment writes: the STK Push flow and the one transition function.

Every status change goes through :func:`payment_transition`, which checks the allowed
transitions, changes the row with a conditional update under a row lock, and writes the audit
event, all in one transaction. Slow I/O (the Daraja call) happens outside any transaction.
"""

from __future__ import annotations

import logging
import random
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from core.db import in_transaction, update_rows
from core.logging import ctx
from core.models import ApiClient, hash_secret
from daraja.client import PAYBILL, TILL, get_client
from daraja.errors import (
    RESULT_CODES,
    Action,
    DarajaError,
    DarajaPendingError,
    DarajaProtocolError,
    DarajaServerError,
    DarajaTransportError,
    DarajaUnreachableError,
)

from .models import EventKind, EventSource, Payment, PaymentEvent, PaymentStatus

logger = logging.getLogger(__name__)

S = PaymentStatus
ALLOWED_TRANSITIONS: dict[str, frozenset[str]] = {
    # INITIATED -> SUCCESS: a verified callback for a push whose initiation answer was lost.
    S.INITIATED: frozenset({S.PENDING, S.FAILED, S.SUCCESS}),
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
        "failure_final",
    }
)


class InvalidTransition(Exception):
    def __init__(self, from_status: str, to_status: str, message: str = "") -> None:
        super().__init__(message or f"a payment cannot go from {from_status} to {to_status}")
        self.from_status = from_status
        self.to_status = to_status


def payment_failure_is_final(payment: Payment) -> bool:
    """FAILED for a reason M-Pesa gave (a result code of the catalogue in ``daraja.errors``
    whose action is to fail — 1032 cancelled by the customer, 2001 wrong PIN, … — or a push
    Daraja refused), as opposed to FAILED because we stopped waiting ("expired unresolved",
    an STK Push whose answer was lost): only the latter may become SUCCESS on a statement
    line alone."""
    if payment.status != S.FAILED:
        return False
    if payment.failure_final:
        return True
    info = RESULT_CODES.get(payment.result_code)
    return info is not None and info.action == Action.FAIL


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
    callback: Any = None,
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
            callback=callback,
        )
    _log_transition(current, from_status, to_status, source, callback)
    return TransitionResult(payment=current, changed=True, event=event)


@dataclass(frozen=True)
class TransitionRequest:
    """One change for :func:`payment_transition_many`: ``payment`` is locked and current."""

    payment: Payment
    to_status: str
    source: str
    reason: str = ""
    evidence: dict[str, Any] | None = None
    callback: Any = None
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
                callback=request.callback,
            )
            for request, from_status, _ in planned
        )
    for request, from_status, updates in planned:
        for name, value in updates.items():
            setattr(request.payment, name, value)
        _log_transition(
            request.payment, from_status, request.to_status, request.source, request.callback
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
    if to_status in (S.SUCCESS, S.FAILED):
        updates["completed_at"] = now
    return updates


def _log_transition(
    payment: Payment, from_status: str, to_status: str, source: str, callback: Any
) -> None:
    extra = {"payment_id": payment.pk, "from_status": from_status, "to_status": to_status}
    if callback is not None:
        extra["callback_id"] = callback.pk
    logger.info("payment status changed", extra=ctx(source=source, **extra))


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
            reason=event_reason(reason),
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
    on_created: Callable[[Payment], None] | None = None,
) -> tuple[Payment, str]:
    """Save the payment INITIATED with its first event and commit. Returns it with the
    callback token (only its hash is stored). ``on_created`` runs in the same transaction
    (the API records the payment on its Idempotency-Key there)."""
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
        if on_created is not None:
            on_created(payment)
    return payment, token


def payment_initiate(
    *,
    client: ApiClient | None,
    phone_number: str,
    amount: Decimal,
    account_reference: str,
    description: str,
    on_created: Callable[[Payment], None] | None = None,
) -> Payment:
    """The STK flow: commit INITIATED, call Daraja outside any transaction, then record
    PENDING (accepted), FAILED (refused) or leave INITIATED when the outcome is unknown.
    ``on_created`` runs in the transaction that creates the payment."""
    if in_transaction():
        raise RuntimeError("payment_initiate must not run inside a transaction")
    payment, token = payment_create(
        client=client,
        phone_number=phone_number,
        amount=amount,
        account_reference=account_reference,
        description=description,
        on_created=on_created,
    )
    try:
        accepted = get_client().stk_push(
            phone_number=phone_number,
            amount=amount,
            account_reference=account_reference,
            description=description,
            callback_url=build_callback_url(token),
        )
    except DarajaUnreachableError as exc:
        # No connection was made, so no prompt was sent: the payment failed for certain, and
        # the client is told why at once instead of waiting on an INITIATED payment.
        reason = f"STK Push not sent: {exc}.{_simulator_hint()}"
        logger.warning("stk push not sent", extra=ctx(payment_id=payment.pk, error=str(exc)))
        return payment_transition(
            payment=payment,
            to_status=S.FAILED,
            source=EventSource.DARAJA,
            reason=reason,
            evidence=_error_evidence(exc),
            fields={
                "result_code": "daraja_unreachable",
                "result_desc": reason[:500],
                "failure_final": True,
            },
        ).payment
    except (DarajaTransportError, DarajaServerError, DarajaProtocolError) as exc:
        # Daraja may or may not have sent the prompt: do not report a failure we cannot prove.
        Payment.objects.filter(pk=payment.pk).update(initiation_unknown=True)
        payment.initiation_unknown = True
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
            fields={
                "result_code": exc.error_code or "error",
                "result_desc": exc.message[:500],
                "failure_final": True,
            },
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
    except InvalidTransition:
        # The callback (authenticated by the payment's token) was faster than this request and
        # already decided the payment: nothing left to do here.
        payment.refresh_from_db()
        return payment
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


def payment_initiation_interrupted(*, payment_id: Any, reason: str) -> Payment:
    """The request that created this payment stopped before recording Daraja's answer (its
    process was killed, or a write after the push failed): Daraja may or may not have sent
    the prompt. An INITIATED payment is marked so, on its trail, once; callbacks, STK Query
    and expiry resolve it as after a lost answer. Returns the payment as it stands."""
    with transaction.atomic():
        marked = Payment.objects.filter(
            pk=payment_id, status=S.INITIATED, initiation_unknown=False
        ).update(initiation_unknown=True, updated_at=timezone.now())
        payment = Payment.objects.get(pk=payment_id)
        if marked:
            PaymentEvent.objects.create(
                payment=payment,
                kind=EventKind.NOTE,
                source=EventSource.SYSTEM,
                reason=f"STK Push outcome unknown: {reason}",
            )
    if marked:
        logger.warning("stk push outcome unknown", extra=ctx(payment_id=payment.pk, error=reason))
    return payment


def _simulator_hint() -> str:
    """With MPESA_ENV=simulator, how to start the simulator the settings point at."""
    if settings.MPESA_ENV != "simulator":
        return ""
    port = urlsplit(settings.MPESA_BASE_URL).port
    option = f" --port {port}" if port and port != 8001 else ""
    return f" Is the local Daraja simulator running? Start it with: python -m simulator{option}"


def _error_evidence(exc: DarajaError) -> dict[str, Any]:
    return {
        "error_type": type(exc).__name__,
        "error_code": exc.error_code,
        "error_message": exc.message,
        "http_status": exc.http_status,
        "request_id": exc.request_id,
    }


def payment_attach_receipt(
    *, payment: Payment, receipt_number: str, evidence: dict[str, Any], callback: Any = None
) -> None:
    """A SUCCESS confirmed by STK Query has no receipt; a later callback supplies it."""
    with transaction.atomic():
        updated = Payment.objects.filter(
            pk=payment.pk, status=S.SUCCESS, mpesa_receipt_number__isnull=True
        ).update(mpesa_receipt_number=receipt_number, updated_at=timezone.now())
        if updated:
            PaymentEvent.objects.create(
                payment=payment,
                kind=EventKind.NOTE,
                source=EventSource.CALLBACK,
                reason=f"receipt {receipt_number} from a callback after SUCCESS by query",
                evidence=evidence,
                callback=callback,
            )


# --- Recovery: STK Query for stale PENDING payments, expiry of what never resolves ----------


def _query_backoff(attempt: int) -> float:
    """Capped exponential backoff with full jitter (attempt 1, 2, 3, ...)."""
    base = settings.PAYMENTS_QUERY_BACKOFF_BASE
    cap = settings.PAYMENTS_QUERY_BACKOFF_MAX
    ceiling = min(cap, base * (2 ** max(attempt - 1, 0)))
    return ceiling / 2 + random.uniform(0, ceiling / 2)


@dataclass(frozen=True)
class QueryOutcome:
    outcome: str  # "skipped", "pending", "success", "failed", "error"
    detail: str = ""


def payment_query(*, payment_id: Any) -> QueryOutcome:
    """Ask Daraja about one PENDING payment (STK Query) and act on a final answer.

    A lease (``query_claimed_until``) taken with a conditional update guarantees at most one
    query in flight per payment, across every worker. Both "pending" answers (HTTP 500
    ``500.001.1001`` and ``4999``) keep the payment PENDING and schedule the next query.
    """
    now = timezone.now()
    lease = now + timedelta(
        seconds=settings.MPESA_CONNECT_TIMEOUT + settings.MPESA_READ_TIMEOUT * 2 + 10
    )
    claimed = (
        Payment.objects.filter(pk=payment_id, status=S.PENDING, checkout_request_id__isnull=False)
        .filter(Q(query_claimed_until__isnull=True) | Q(query_claimed_until__lt=now))
        .update(query_claimed_until=lease)
    )
    if not claimed:
        return QueryOutcome("skipped", "not PENDING or a query is already in flight")
    payment = Payment.objects.get(pk=payment_id)
    attempt = payment.query_attempts + 1
    assert payment.checkout_request_id is not None
    try:
        answer = get_client().stk_query(checkout_request_id=payment.checkout_request_id)
    except DarajaPendingError as exc:
        return _query_later(payment, attempt, f"pending: {exc}")
    except DarajaError as exc:
        return _query_later(payment, attempt, f"query error: {exc}", outcome="error")
    if answer.pending:
        return _query_later(payment, attempt, f"pending: {answer.result_desc}")
    assert answer.result_code is not None
    evidence = {
        "checkout_request_id": payment.checkout_request_id,
        "merchant_request_id": answer.merchant_request_id,
        "result_code": answer.result_code,
        "result_desc": answer.result_desc,
        "query_attempt": attempt,
    }
    _release_query(payment, attempt, f"final: {answer.result_code} {answer.result_desc}")
    if answer.is_success:
        result = payment_transition(
            payment=payment,
            to_status=S.SUCCESS,
            source=EventSource.QUERY,
            reason=f"STK Query: {answer.result_desc or 'paid'}",
            evidence=evidence,
            fields={"result_code": answer.result_code, "result_desc": answer.result_desc},
        )
        return QueryOutcome("success" if result.changed else "skipped", answer.result_desc)
    result = payment_transition(
        payment=payment,
        to_status=S.FAILED,
        source=EventSource.QUERY,
        reason=f"STK Query: {answer.result_desc or answer.result_code}",
        evidence=evidence,
        fields={
            "result_code": answer.result_code,
            "result_desc": answer.result_desc,
            "failure_final": True,
        },
    )
    return QueryOutcome("failed" if result.changed else "skipped", answer.result_desc)


def _query_later(
    payment: Payment, attempt: int, detail: str, outcome: str = "pending"
) -> QueryOutcome:
    Payment.objects.filter(pk=payment.pk).update(
        query_attempts=attempt,
        next_query_at=timezone.now() + timedelta(seconds=_query_backoff(attempt)),
        query_claimed_until=None,
        last_query_result=detail[:500],
    )
    return QueryOutcome(outcome, detail)


def _release_query(payment: Payment, attempt: int, detail: str) -> None:
    Payment.objects.filter(pk=payment.pk).update(
        query_attempts=attempt, query_claimed_until=None, last_query_result=detail[:500]
    )


def payments_due_for_query(*, limit: int = 500) -> list[Any]:
    """PENDING payments older than PAYMENTS_QUERY_AFTER whose next query is due."""
    now = timezone.now()
    return list(
        Payment.objects.filter(
            status=S.PENDING,
            checkout_request_id__isnull=False,
            created_at__lte=now - timedelta(seconds=settings.PAYMENTS_QUERY_AFTER),
        )
        .filter(Q(next_query_at__isnull=True) | Q(next_query_at__lte=now))
        .filter(Q(query_claimed_until__isnull=True) | Q(query_claimed_until__lt=now))
        .order_by("created_at")
        .values_list("pk", flat=True)[:limit]
    )


def payments_expire(*, limit: int = 500) -> int:
    """FAIL what never resolved within PAYMENTS_EXPIRE_AFTER: PENDING with no final callback
    or query answer, and INITIATED whose push never got an answer. Not final: a verified late
    success still moves them to SUCCESS."""
    horizon = timezone.now() - timedelta(seconds=settings.PAYMENTS_EXPIRE_AFTER)
    stale = list(
        Payment.objects.filter(status__in=[S.PENDING, S.INITIATED], created_at__lte=horizon)
        .order_by("created_at")
        .values_list("pk", "status")[:limit]
    )
    expired = 0
    for payment_id, status in stale:
        if status == S.PENDING:
            reason = (
                f"expired unresolved: no callback and no final STK Query answer within "
                f"{settings.PAYMENTS_EXPIRE_AFTER:g}s"
            )
        else:
            reason = (
                f"expired unresolved: the STK Push got no answer from Daraja within "
                f"{settings.PAYMENTS_EXPIRE_AFTER:g}s"
            )
        try:
            result = payment_transition(
                payment=Payment(pk=payment_id),
                to_status=S.FAILED,
                source=EventSource.SYSTEM,
                reason=reason,
                evidence={"expired_after_seconds": settings.PAYMENTS_EXPIRE_AFTER},
                fields={"result_code": "expired", "result_desc": reason, "failure_final": False},
            )
        except InvalidTransition:
            continue  # decided meanwhile by a callback or a query
        expired += int(result.changed)
    if expired:
        logger.info("expired unresolved payments", extra=ctx(count=expired))
    return expired


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
