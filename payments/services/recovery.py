"""Recovery: STK Query for stale PENDING payments, expiry of what never resolves.

A final STK Query answer is evidence like any other:
:func:`payments.outcomes.payment_apply_evidence` decides what it does to the payment.
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from core.logging import ctx
from daraja.errors import DarajaError, DarajaPendingError

from .. import outcomes
from ..accounts import payment_client
from ..models import EventSource, Payment, PaymentStatus
from .transitions import InvalidTransition, payment_transition

logger = logging.getLogger(__name__)


def _query_backoff(attempt: int) -> float:
    """Capped exponential backoff with full jitter (attempt 1, 2, 3, ...)."""
    base = settings.PAYMENTS_QUERY_BACKOFF_BASE
    cap = settings.PAYMENTS_QUERY_BACKOFF_MAX
    ceiling = min(cap, base * (2 ** max(attempt - 1, 0)))
    return ceiling / 2 + random.uniform(0, ceiling / 2)


@dataclass(frozen=True)
class QueryOutcome:
    outcome: str  # "skipped", "pending", "success", "failed", "review", "error"
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
        Payment.objects.filter(
            pk=payment_id, status=PaymentStatus.PENDING, checkout_request_id__isnull=False
        )
        .filter(Q(query_claimed_until__isnull=True) | Q(query_claimed_until__lt=now))
        .update(query_claimed_until=lease)
    )
    if not claimed:
        return QueryOutcome("skipped", "not PENDING or a query is already in flight")
    payment = Payment.objects.select_related("account").get(pk=payment_id)
    attempt = payment.query_attempts + 1
    assert payment.checkout_request_id is not None
    try:
        answer = payment_client(payment).stk_query(checkout_request_id=payment.checkout_request_id)
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
    paid, code = "paid", answer.result_code
    result = outcomes.payment_apply_evidence(
        payment=payment,
        evidence=outcomes.Evidence(
            source=EventSource.QUERY,
            succeeded=answer.is_success,
            result_code=answer.result_code,
            result_desc=answer.result_desc,
            reason=f"STK Query: {answer.result_desc or (paid if answer.is_success else code)}",
            record=evidence,
        ),
    )
    if result.verdict == outcomes.Verdict.APPLIED:
        return QueryOutcome("success" if answer.is_success else "failed", answer.result_desc)
    if result.verdict == outcomes.Verdict.REVIEW:
        return QueryOutcome("review", result.detail)
    return QueryOutcome("skipped", answer.result_desc)


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
            status=PaymentStatus.PENDING,
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
        Payment.objects.filter(
            status__in=[PaymentStatus.PENDING, PaymentStatus.INITIATED], created_at__lte=horizon
        )
        .order_by("created_at")
        .values_list("pk", "status")[:limit]
    )
    expired = 0
    for payment_id, status in stale:
        if status == PaymentStatus.PENDING:
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
                to_status=PaymentStatus.FAILED,
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
