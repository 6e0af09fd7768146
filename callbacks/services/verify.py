"""Verify-by-query (MPESA_VERIFY_SUCCESS): a success callback waits in ``verifying`` until STK
Query confirms it; the query's answer is evidence for the payment like any other."""

from __future__ import annotations

import logging

from django.db import transaction
from django.utils import timezone

from core.logging import ctx
from daraja.errors import DarajaError
from payments import outcomes
from payments.accounts import payment_client
from payments.models import EventSource, Payment
from payments.outcomes import Evidence, needs_verification
from payments.services import payment_flag

from ..models import CallbackState, InboundCallback
from .process import callback_process
from .states import callback_move

logger = logging.getLogger(__name__)

__all__ = ["VerifyLater", "callback_verify", "needs_verification"]


class VerifyLater(Exception):
    """Daraja could not confirm yet (still pending, or unreachable): ask again later."""


def callback_verify(*, callback_id: int) -> str:
    """Confirm a success callback with STK Query (outside any transaction), then credit it,
    or, when the query contradicts it, refuse it as a security event and record the query's
    outcome on the payment."""
    callback = InboundCallback.objects.select_related("payment__account").get(pk=callback_id)
    payment = callback.payment
    if callback.state != CallbackState.VERIFYING or payment is None:
        return "skipped"
    assert payment.checkout_request_id is not None
    try:
        answer = payment_client(payment).stk_query(checkout_request_id=payment.checkout_request_id)
    except DarajaError as exc:  # both "pending" errors and outages: try again later
        raise VerifyLater(str(exc)) from None
    if answer.pending:
        raise VerifyLater(answer.result_desc or "still pending")
    if answer.is_success:
        InboundCallback.objects.filter(pk=callback_id, state=CallbackState.VERIFYING).update(
            verified_at=timezone.now()
        )
        return callback_process(callback_id=callback_id).state
    record = {
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
        callback_move(
            locked,
            to_state=CallbackState.REJECTED,
            last_error=reason,
            processed_at=timezone.now(),
        )
        current = Payment.objects.select_for_update().get(pk=payment.pk)
        payment_flag(
            payment=current,
            source=EventSource.QUERY,
            reason=reason,
            evidence=record,
            callback_id=locked.pk,
        )
        outcomes.payment_apply_evidence(
            payment=current,
            evidence=Evidence(
                source=EventSource.QUERY,
                succeeded=False,
                result_code=answer.result_code,
                result_desc=answer.result_desc,
                reason=f"STK Query: {answer.result_desc or answer.result_code}",
                record=record,
            ),
            locked=True,
        )
    logger.warning("callback contradicted by STK Query", extra=ctx(callback_id=callback_id))
    return CallbackState.REJECTED
