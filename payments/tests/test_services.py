from decimal import Decimal

import pytest

from payments.models import EventSource, Payment, PaymentStatus
from payments.services import (
    ALLOWED_TRANSITIONS,
    InvalidTransition,
    payment_create,
    payment_transition,
)

pytestmark = pytest.mark.django_db
S = PaymentStatus


def new_payment(status=S.INITIATED):
    payment, _ = payment_create(
        client=None,
        phone_number="254712345678",
        amount=Decimal("10.00"),
        account_reference="A",
        description="B",
    )
    if status == S.PENDING:
        payment = payment_transition(
            payment=payment,
            to_status=S.PENDING,
            source=EventSource.DARAJA,
            fields={"checkout_request_id": f"ws_CO_{payment.pk.hex}"},
        ).payment
    return payment


def test_the_transition_table_is_the_seed_lifecycle_plus_late_success():
    assert ALLOWED_TRANSITIONS == {
        S.INITIATED: {S.PENDING, S.FAILED, S.SUCCESS},
        S.PENDING: {S.SUCCESS, S.FAILED},
        S.SUCCESS: set(),
        S.FAILED: {S.SUCCESS},
    }


@pytest.mark.parametrize(
    ("start", "target"),
    [
        (S.PENDING, S.INITIATED),
        (S.SUCCESS, S.FAILED),
        (S.SUCCESS, S.PENDING),
        (S.FAILED, S.PENDING),
    ],
)
def test_forbidden_transitions_raise_and_change_nothing(start, target):
    payment = new_payment(S.PENDING if start != S.INITIATED else S.INITIATED)
    if start == S.SUCCESS:
        payment = payment_transition(
            payment=payment,
            to_status=S.SUCCESS,
            source="callback",
            fields={"mpesa_receipt_number": "UKR1AAAAAA"},
        ).payment
    elif start == S.FAILED:
        payment = payment_transition(payment=payment, to_status=S.FAILED, source="callback").payment
    events_before = payment.events.count()
    with pytest.raises(InvalidTransition):
        payment_transition(
            payment=payment,
            to_status=target,
            source="system",
            fields={"mpesa_receipt_number": "UKR1BBBBBB"},
        )
    payment.refresh_from_db()
    assert payment.status == start
    assert payment.events.count() == events_before


def test_a_transition_writes_exactly_one_event_with_evidence():
    payment = new_payment(S.PENDING)
    result = payment_transition(
        payment=payment,
        to_status=S.SUCCESS,
        source=EventSource.CALLBACK,
        reason="paid",
        evidence={"receipt": "UKR1AAAAAA"},
        fields={"mpesa_receipt_number": "UKR1AAAAAA", "paid_amount": Decimal("10")},
    )
    assert result.changed
    stored = Payment.objects.get(pk=payment.pk)
    assert stored.status == S.SUCCESS and stored.completed_at is not None
    assert stored.mpesa_receipt_number == "UKR1AAAAAA"
    event = stored.events.get(to_status=S.SUCCESS)
    assert (event.from_status, event.source, event.evidence) == (
        S.PENDING,
        "callback",
        {"receipt": "UKR1AAAAAA"},
    )


def test_repeating_a_transition_is_a_no_op():
    payment = new_payment(S.PENDING)
    payment_transition(payment=payment, to_status=S.FAILED, source="callback")
    again = payment_transition(payment=payment, to_status=S.FAILED, source="callback")
    assert not again.changed and again.event is None
    assert payment.events.filter(to_status=S.FAILED).count() == 1


def test_transition_cannot_set_arbitrary_fields():
    payment = new_payment(S.PENDING)
    with pytest.raises(ValueError):
        payment_transition(
            payment=payment, to_status=S.FAILED, source="x", fields={"amount": Decimal("1")}
        )


def test_amount_must_be_positive_at_the_database_level():
    from django.db import IntegrityError

    payment = new_payment()
    with pytest.raises(IntegrityError):
        Payment.objects.filter(pk=payment.pk).update(amount=Decimal("0"))
