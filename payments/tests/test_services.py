from decimal import Decimal

import pytest
from django.db import IntegrityError, transaction

from payments.models import EventKind, EventSource, Payment, PaymentEvent, PaymentStatus
from payments.services import (
    ALLOWED_TRANSITIONS,
    InvalidTransition,
    TransitionRequest,
    payment_transition,
    payment_transition_many,
)
from testsupport.factories import PaymentFactory

pytestmark = pytest.mark.django_db


def test_the_transition_table_is_the_seed_lifecycle_plus_late_success():
    assert ALLOWED_TRANSITIONS == {
        PaymentStatus.INITIATED: {
            PaymentStatus.PENDING,
            PaymentStatus.FAILED,
            PaymentStatus.SUCCESS,
        },
        PaymentStatus.PENDING: {PaymentStatus.SUCCESS, PaymentStatus.FAILED},
        PaymentStatus.SUCCESS: set(),
        PaymentStatus.FAILED: {PaymentStatus.SUCCESS},
    }


@pytest.mark.parametrize(
    ("start", "target"),
    [
        (PaymentStatus.PENDING, PaymentStatus.INITIATED),
        (PaymentStatus.SUCCESS, PaymentStatus.FAILED),
        (PaymentStatus.SUCCESS, PaymentStatus.PENDING),
        (PaymentStatus.FAILED, PaymentStatus.PENDING),
    ],
)
def test_forbidden_transitions_raise_and_change_nothing(start, target):
    payment = PaymentFactory(
        status=PaymentStatus.PENDING
        if start != PaymentStatus.INITIATED
        else PaymentStatus.INITIATED
    )
    if start == PaymentStatus.SUCCESS:
        payment = payment_transition(
            payment=payment,
            to_status=PaymentStatus.SUCCESS,
            source="callback",
            fields={"mpesa_receipt_number": "UKR1AAAAAA"},
        ).payment
    elif start == PaymentStatus.FAILED:
        payment = payment_transition(
            payment=payment, to_status=PaymentStatus.FAILED, source="callback"
        ).payment
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
    payment = PaymentFactory(status=PaymentStatus.PENDING)
    result = payment_transition(
        payment=payment,
        to_status=PaymentStatus.SUCCESS,
        source=EventSource.CALLBACK,
        reason="paid",
        evidence={"receipt": "UKR1AAAAAA"},
        fields={"mpesa_receipt_number": "UKR1AAAAAA", "paid_amount": Decimal("10")},
    )
    assert result.changed
    stored = Payment.objects.get(pk=payment.pk)
    assert stored.status == PaymentStatus.SUCCESS and stored.completed_at is not None
    assert stored.mpesa_receipt_number == "UKR1AAAAAA"
    event = stored.events.get(to_status=PaymentStatus.SUCCESS)
    assert (event.from_status, event.source, event.evidence) == (
        PaymentStatus.PENDING,
        "callback",
        {"receipt": "UKR1AAAAAA"},
    )


def test_repeating_a_transition_is_a_no_op():
    payment = PaymentFactory(status=PaymentStatus.PENDING)
    payment_transition(payment=payment, to_status=PaymentStatus.FAILED, source="callback")
    again = payment_transition(payment=payment, to_status=PaymentStatus.FAILED, source="callback")
    assert not again.changed and again.event is None
    assert payment.events.filter(to_status=PaymentStatus.FAILED).count() == 1


def test_transition_cannot_set_arbitrary_fields():
    payment = PaymentFactory(status=PaymentStatus.PENDING)
    with pytest.raises(ValueError):
        payment_transition(
            payment=payment,
            to_status=PaymentStatus.FAILED,
            source="x",
            fields={"amount": Decimal("1")},
        )


def test_amount_must_be_positive_at_the_database_level():
    from django.db import IntegrityError

    payment = PaymentFactory(status=PaymentStatus.INITIATED)
    with pytest.raises(IntegrityError):
        Payment.objects.filter(pk=payment.pk).update(amount=Decimal("0"))


# --- payment_transition_many: the same transitions for many locked payments at once -----------


def _locked(*payments):
    """The rows as a caller holding their locks sees them (read inside its transaction)."""
    return list(Payment.objects.select_for_update().filter(pk__in=[p.pk for p in payments]))


def test_many_transitions_write_what_one_by_one_would():
    one, many = (
        PaymentFactory(status=PaymentStatus.PENDING),
        [PaymentFactory(status=PaymentStatus.PENDING) for _ in range(3)],
    )
    fields = {"result_code": "0", "result_desc": "ok", "paid_amount": Decimal("10.00")}
    payment_transition(
        payment=one,
        to_status=PaymentStatus.SUCCESS,
        source=EventSource.CALLBACK,
        reason="paid",
        evidence={"n": 1},
        fields={**fields, "mpesa_receipt_number": "UKR1ONE000"},
    )
    with transaction.atomic():
        locked = _locked(*many)
        payment_transition_many(
            [
                TransitionRequest(
                    payment=payment,
                    to_status=PaymentStatus.SUCCESS if n < 2 else PaymentStatus.FAILED,
                    source=EventSource.CALLBACK,
                    reason="paid" if n < 2 else "cancelled",
                    evidence={"n": n},
                    fields={**fields, "mpesa_receipt_number": f"UKR1MANY0{n}"}
                    if n < 2
                    else {"result_code": "1032", "failure_final": True},
                )
                for n, payment in enumerate(locked)
            ]
        )
    # The objects in memory are what the database now holds.
    for payment in locked:
        stored = Payment.objects.get(pk=payment.pk)
        assert (payment.status, payment.completed_at, payment.mpesa_receipt_number) == (
            stored.status,
            stored.completed_at,
            stored.mpesa_receipt_number,
        )
    statuses = sorted(Payment.objects.filter(pk__in=[p.pk for p in many]).values_list("status"))
    assert statuses == [(PaymentStatus.FAILED,), (PaymentStatus.SUCCESS,), (PaymentStatus.SUCCESS,)]
    reference = PaymentEvent.objects.filter(payment=one).order_by("id").last()
    for n, payment in enumerate(locked):
        event = PaymentEvent.objects.filter(payment=payment).order_by("id").last()
        assert (event.kind, event.from_status, event.source, event.evidence) == (
            EventKind.TRANSITION,
            PaymentStatus.PENDING,
            EventSource.CALLBACK,
            {"n": n},
        )
        if n < 2:
            assert (event.to_status, event.reason) == (reference.to_status, reference.reason)
            stored = Payment.objects.get(pk=payment.pk)
            assert stored.paid_amount == Decimal("10.00") and stored.completed_at is not None
        else:
            assert Payment.objects.get(pk=payment.pk).failure_final is True


def _snapshot():
    return (
        sorted(Payment.objects.values_list("pk", "status", "mpesa_receipt_number")),
        PaymentEvent.objects.count(),
    )


def test_a_payment_changed_since_it_was_read_fails_them_all():
    first, second = (
        PaymentFactory(status=PaymentStatus.PENDING),
        PaymentFactory(status=PaymentStatus.PENDING),
    )
    with transaction.atomic():
        locked = _locked(first, second)
        Payment.objects.filter(pk=second.pk).update(
            status=PaymentStatus.FAILED
        )  # behind the caller's back
        before = _snapshot()
        with (
            pytest.raises(InvalidTransition, match="1 of 2 payments changed"),
            transaction.atomic(),
        ):
            payment_transition_many(
                [TransitionRequest(p, PaymentStatus.SUCCESS, EventSource.CALLBACK) for p in locked]
            )
        assert _snapshot() == before
        assert {p.status for p in locked} == {PaymentStatus.PENDING}  # memory untouched too


def test_a_forbidden_transition_fails_them_all_before_writing():
    pending, success = (
        PaymentFactory(status=PaymentStatus.PENDING),
        PaymentFactory(status=PaymentStatus.PENDING),
    )
    Payment.objects.filter(pk=success.pk).update(status=PaymentStatus.SUCCESS)
    before = _snapshot()
    with transaction.atomic():
        locked = _locked(pending, success)
        with pytest.raises(InvalidTransition, match="SUCCESS to FAILED"):
            payment_transition_many(
                [TransitionRequest(p, PaymentStatus.FAILED, EventSource.CALLBACK) for p in locked]
            )
    assert _snapshot() == before


def test_a_receipt_held_by_another_payment_fails_them_all():
    holder, first, second = (PaymentFactory(status=PaymentStatus.PENDING) for _ in range(3))
    Payment.objects.filter(pk=holder.pk).update(
        status=PaymentStatus.SUCCESS, mpesa_receipt_number="UKR1TAKEN0"
    )
    before = _snapshot()
    with transaction.atomic():
        locked = sorted(_locked(first, second), key=lambda p: p.pk == second.pk)
        receipts = ["UKR1FREE00", "UKR1TAKEN0"]
        with pytest.raises(IntegrityError), transaction.atomic():
            payment_transition_many(
                [
                    TransitionRequest(
                        p,
                        PaymentStatus.SUCCESS,
                        EventSource.CALLBACK,
                        fields={"mpesa_receipt_number": r},
                    )
                    for p, r in zip(locked, receipts, strict=True)
                ]
            )
    assert _snapshot() == before


def test_each_payment_at_most_once():
    payment = PaymentFactory(status=PaymentStatus.PENDING)
    with transaction.atomic():
        (locked,) = _locked(payment)
        with pytest.raises(ValueError, match="at most once"):
            payment_transition_many(
                [TransitionRequest(locked, PaymentStatus.SUCCESS, EventSource.CALLBACK)] * 2
            )


def test_many_transitions_refuse_fields_a_transition_cannot_set():
    payment = PaymentFactory(status=PaymentStatus.PENDING)
    with transaction.atomic():
        (locked,) = _locked(payment)
        with pytest.raises(ValueError, match="amount"):
            payment_transition_many(
                [
                    TransitionRequest(
                        locked, PaymentStatus.SUCCESS, EventSource.CALLBACK, fields={"amount": 1}
                    )
                ]
            )
