"""The events a payment emits into the outbox, in the transaction of its change.

- ``payment.pending``: Daraja accepted the push; the customer has the prompt.
- ``payment.succeeded``: the customer paid (every move to SUCCESS).
- ``payment.failed``: it failed (M-Pesa's result, or expired unresolved).
- ``payment.late_success``: a FAILED payment turned out paid (late evidence); also sent as
  ``payment.succeeded``, so a receiver that handles only that one credits it too.
- ``payment.needs_review``: kept for a person (amount or receipt problem, final failure).
- ``payment.received``: a paybill or till payment the customer made (C2B) was recorded; also
  sent as ``payment.succeeded``.

Each carries the payment as ``GET /payments/<id>/`` shows it at that moment.
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import lru_cache
from typing import Any

from events.services import NewEvent, events_emit

from .models import Payment, PaymentStatus
from .serializers import PaymentSerializer

PENDING = "payment.pending"
SUCCEEDED = "payment.succeeded"
FAILED = "payment.failed"
LATE_SUCCESS = "payment.late_success"
NEEDS_REVIEW = "payment.needs_review"
RECEIVED = "payment.received"
TYPES = (PENDING, SUCCEEDED, FAILED, LATE_SUCCESS, NEEDS_REVIEW, RECEIVED)


def transition_event_types(from_status: str, to_status: str) -> list[str]:
    if to_status == PaymentStatus.PENDING:
        return [PENDING]
    if to_status == PaymentStatus.FAILED:
        return [FAILED]
    if to_status == PaymentStatus.SUCCESS:
        return [SUCCEEDED, LATE_SUCCESS] if from_status == PaymentStatus.FAILED else [SUCCEEDED]
    return []


@lru_cache(maxsize=1)
def _fields() -> list[tuple[str, Any]]:
    """PaymentSerializer's bound fields, made once: every field is a plain attribute."""
    return [(name, field) for name, field in PaymentSerializer().fields.items()]


def payment_data(payment: Payment, updates: dict[str, Any] | None = None) -> dict[str, Any]:
    """The payment as the API shows it (``PaymentSerializer``'s own fields, each rendered as
    the serializer renders it), with ``updates`` applied. A tenth of the serializer's cost:
    the batch drain writes one of these per payment it changes."""
    data: dict[str, Any] = {}
    for name, field in _fields():
        value = (updates or {}).get(field.source, getattr(payment, field.source))
        data[name] = None if value is None else field.to_representation(value)
    return data


def emit_transitions(changes: Iterable[tuple[Payment, str, str, dict[str, Any] | None]]) -> None:
    """Emit the events of transitions written in the current transaction: (payment as read,
    from status, to status, the columns written)."""
    new: list[NewEvent] = []
    for payment, from_status, to_status, updates in changes:
        types = transition_event_types(from_status, to_status)
        if not types:
            continue
        data = payment_data(payment, updates)
        new += [NewEvent(kind, data, payment.client_id, str(payment.pk)) for kind in types]
    events_emit(new)


def emit_payment_event(kind: str, payment: Payment) -> None:
    events_emit([NewEvent(kind, payment_data(payment), payment.client_id, str(payment.pk))])


def emit_needs_review(payment: Payment) -> None:
    emit_payment_event(NEEDS_REVIEW, payment)
