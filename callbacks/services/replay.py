"""Putting callbacks back in the queue: the re-drive sweeper (lost messages, dead workers,
broker outages) and replays (an operator, or a payment's API client, for a failed one)."""

from __future__ import annotations

import logging
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import F, Q, Value
from django.db.models.functions import Concat
from django.utils import timezone

from core.logging import ctx
from payments.models import EventKind, EventSource, Payment, PaymentEvent
from payments.services import payment_record_event

from ..models import FINAL_STATES, CallbackState, InboundCallback
from .process import payment_of_token
from .states import callback_move, callbacks_move
from .wakeup import callback_enqueue, callback_wake, drain_enqueue, verify_enqueue

logger = logging.getLogger(__name__)


def callbacks_redrive(*, older_than: float | None = None, limit: int = 1000) -> int:
    """Re-enqueue stored callbacks nobody processed (lost message, dead worker, broker
    outage). Each re-drive counts as an attempt: a callback that kills its worker every time
    is parked as failed after CALLBACK_MAX_ATTEMPTS instead of looping forever."""
    age = settings.CALLBACK_REDRIVE_AFTER if older_than is None else older_than
    now = timezone.now()
    stale = InboundCallback.objects.filter(
        state=CallbackState.RECEIVED, received_at__lte=now - timedelta(seconds=age)
    ).filter(Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now))
    parked = callbacks_move(
        stale.filter(attempts__gte=settings.CALLBACK_MAX_ATTEMPTS),
        from_states=(CallbackState.RECEIVED,),
        to_state=CallbackState.FAILED,
        last_error=_gave_up(),
        processed_at=now,
        payment=payment_of_token(),
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
            callback_id=callback.pk, source=EventSource.API, evidence__action=REPLAY_ACTION
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
    callback_move(
        callback,
        to_state=CallbackState.RECEIVED,
        attempts=0,
        next_attempt_at=None,
        processed_at=None,
    )
    if payment is not None:
        payment_record_event(
            payment=payment,
            kind=EventKind.NOTE,
            source=source,
            actor=actor,
            reason=reason,
            evidence={"action": REPLAY_ACTION},
            callback_id=callback.pk,
        )
    callback_id = callback.pk
    transaction.on_commit(lambda: callback_wake(callback_id=callback_id))
