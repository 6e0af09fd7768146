"""Celery tasks for payments: the STK Query sweeper and expiry, and the C2B pull. Thin,
id-based, idempotent."""

from __future__ import annotations

import logging

from celery import shared_task

from core.logging import ctx

from .pull import pull_due_accounts
from .services import payment_query, payments_due_for_query, payments_expire

logger = logging.getLogger(__name__)


@shared_task(acks_late=True, reject_on_worker_lost=True, ignore_result=True)
def query_payment(payment_id: str) -> str:
    outcome = payment_query(payment_id=payment_id)
    logger.info(
        "stk query",
        extra=ctx(payment_id=payment_id, outcome=outcome.outcome, detail=outcome.detail),
    )
    return outcome.outcome


@shared_task(ignore_result=True)
def sweep_payments() -> dict[str, int]:
    """Beat: query stale PENDING payments, then expire what is past the horizon."""
    due = payments_due_for_query()
    for payment_id in due:
        query_payment.delay(str(payment_id))
    expired = payments_expire()
    return {"queried": len(due), "expired": expired}


@shared_task(ignore_result=True)
def pull_c2b() -> dict[str, dict[str, int | str]]:
    """Beat: Pull Transactions for every account that has it, recording what no
    confirmation brought (payments.pull)."""
    return {
        shortcode: {
            "read": result.read,
            "recovered": result.recorded,
            "refused": result.refused,
            "error": result.error,
        }
        for shortcode, result in pull_due_accounts().items()
    }
