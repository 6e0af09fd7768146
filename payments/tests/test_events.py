"""A payment's changes reach the event outbox in their own transaction, with the payment as
the API shows it."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.db import transaction

from events.models import Event
from events.services import (
    NotInTransaction,
    event_emit,
    register_listener,
    unregister_listener,
)
from payments.models import EventSource, PaymentStatus
from payments.outcomes import Evidence, payment_apply_evidence
from payments.services import payment_flag, payment_transition
from testsupport.factories import ApiClientFactory, PaymentFactory

pytestmark = pytest.mark.django_db


def types_of(payment):
    return list(
        Event.objects.filter(object_id=str(payment.pk))
        .order_by("id")
        .values_list("type", flat=True)
    )


def test_a_paid_payment_emits_pending_then_succeeded_as_the_api_shows_it(client):
    merchant = ApiClientFactory()
    payment = PaymentFactory(client=merchant, success=True, receipt="UKR1EVT001")

    assert types_of(payment) == ["payment.pending", "payment.succeeded"]
    succeeded = Event.objects.get(object_id=str(payment.pk), type="payment.succeeded")
    shown = client.get(
        f"/payments/{payment.pk}/", HTTP_AUTHORIZATION=f"Bearer {merchant.raw_key}"
    ).json()
    assert succeeded.data == shown
    assert succeeded.client_id == merchant.pk and succeeded.api_version
    assert succeeded.id.startswith("evt_") and succeeded.dispatched_at is None


def test_a_failure_then_a_late_success_emits_both_kinds():
    payment = PaymentFactory(failed=True, failure_final=False)
    payment_apply_evidence(
        payment=payment,
        evidence=Evidence(source=EventSource.QUERY, succeeded=True, result_code="0"),
    )
    assert types_of(payment) == [
        "payment.pending",
        "payment.failed",
        "payment.succeeded",
        "payment.late_success",
    ]
    late = Event.objects.get(object_id=str(payment.pk), type="payment.late_success")
    assert late.data["status"] == PaymentStatus.SUCCESS


def test_a_flag_emits_needs_review():
    payment = PaymentFactory()
    payment_flag(payment=payment, source=EventSource.CALLBACK, reason="amount differs")
    event = Event.objects.get(object_id=str(payment.pk), type="payment.needs_review")
    assert event.data["needs_review"] is True


def test_no_event_without_the_change_it_describes():
    payment = PaymentFactory()
    before = Event.objects.count()
    with pytest.raises(RuntimeError), transaction.atomic():
        payment_transition(payment=payment, to_status=PaymentStatus.FAILED, source="system")
        assert Event.objects.count() == before + 1
        raise RuntimeError("the change is rolled back")
    assert Event.objects.count() == before
    payment.refresh_from_db()
    assert payment.status == PaymentStatus.PENDING


@pytest.mark.django_db(transaction=True)
def test_an_event_outside_a_transaction_is_refused():
    with pytest.raises(NotInTransaction, match="transaction"):
        event_emit(type="payment.pending", data={})


def test_listeners_hear_only_after_the_commit(django_capture_on_commit_callbacks):
    heard = []
    register_listener("test", heard.append)
    try:
        with django_capture_on_commit_callbacks(execute=True) as pending:
            PaymentFactory(amount=Decimal("15.00"))
            assert heard == []
        assert pending and sum(heard) >= 1
    finally:
        unregister_listener("test")


def test_a_listener_that_fails_does_not_fail_the_change(django_capture_on_commit_callbacks):
    def broken(count):
        raise ConnectionError("broker down")

    register_listener("test", broken)
    try:
        with django_capture_on_commit_callbacks(execute=True):
            payment = PaymentFactory()
        assert types_of(payment) == ["payment.pending"]
    finally:
        unregister_listener("test")


@pytest.mark.parametrize("state", ["initiated", "pending", "success", "failed", "query"])
def test_the_event_data_is_exactly_what_the_serializer_gives(state):
    from payments.events import payment_data
    from payments.serializers import PaymentSerializer

    kwargs = {
        "initiated": {"initiated": True},
        "pending": {},
        "success": {"success": True, "receipt": "UKR1EQUAL1"},
        "failed": {"failed": True},
        "query": {"success": True, "receipt": None},
    }[state]
    payment = PaymentFactory(**kwargs)
    assert payment_data(payment) == dict(PaymentSerializer(payment).data)
    changed = payment_data(payment, {"result_desc": "changed", "needs_review": True})
    assert changed["result_desc"] == "changed" and changed["needs_review"] is True
