"""The factories make payments the system itself could have made: the same events, fields and
evidence as the real flow, so the invariants hold and the callback token works."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from callbacks.models import InboundCallback
from core.ops import find_violations
from payments.models import EventKind, EventSource, PaymentStatus
from testsupport import stk_success_body
from testsupport.factories import ApiClientFactory, PaymentFactory

pytestmark = pytest.mark.django_db


def transitions(payment):
    return list(
        payment.events.filter(kind=EventKind.TRANSITION)
        .order_by("id")
        .values_list("to_status", "source")
    )


def test_a_pending_payment_went_through_an_accepted_push():
    payment = PaymentFactory()
    assert payment.status == PaymentStatus.PENDING
    assert payment.checkout_request_id.startswith("ws_CO_")
    assert transitions(payment) == [(PaymentStatus.PENDING, EventSource.DARAJA)]
    assert payment.events.filter(kind=EventKind.CREATED).count() == 1
    assert find_violations() == []


def test_a_success_was_decided_from_a_stored_callback():
    paid_at = datetime(2026, 12, 5, 7, 30, tzinfo=UTC)
    payment = PaymentFactory(success=True, receipt="UKR1FACT01", transaction_date=paid_at)
    assert payment.status == PaymentStatus.SUCCESS
    assert (payment.mpesa_receipt_number, payment.paid_amount) == ("UKR1FACT01", Decimal("10.00"))
    assert payment.transaction_date == paid_at
    event = payment.events.get(to_status=PaymentStatus.SUCCESS)
    assert event.source == EventSource.CALLBACK
    assert InboundCallback.objects.filter(pk=event.callback_id, payment_id=payment.pk).exists()
    assert find_violations() == []


def test_a_success_without_a_receipt_was_confirmed_by_stk_query():
    payment = PaymentFactory(success=True, receipt=None)
    assert payment.status == PaymentStatus.SUCCESS and payment.mpesa_receipt_number is None
    assert transitions(payment)[-1] == (PaymentStatus.SUCCESS, EventSource.QUERY)
    assert find_violations() == []


def test_failures_are_mpesas_word_or_the_sweepers():
    cancelled = PaymentFactory(failed=True)
    assert (cancelled.result_code, cancelled.failure_final) == ("1032", True)
    expired = PaymentFactory(failed=True, failure_final=False)
    assert (expired.result_code, expired.failure_final) == ("expired", False)
    assert transitions(expired)[-1] == (PaymentStatus.FAILED, EventSource.SYSTEM)


def test_an_initiated_payment_has_no_checkout_id_and_a_time_can_be_set():
    then = timezone.now() - timedelta(hours=2)
    payment = PaymentFactory(initiated=True, created_at=then)
    assert payment.status == PaymentStatus.INITIATED and not payment.checkout_request_id
    assert payment.created_at == then


def test_the_callback_token_authenticates_the_payments_callback(client):
    payment, token = PaymentFactory.with_token(amount="25.00")
    body = stk_success_body(
        checkout_request_id=payment.checkout_request_id, amount="25.00", receipt="UKR1FACT02"
    )
    response = client.post(
        f"/payments/callback/{token}/", data=body, content_type="application/json"
    )
    assert response.status_code == 200
    assert InboundCallback.objects.get(token_hash=payment.callback_token_hash).payment_id in (
        None,
        payment.pk,
    )


def test_an_api_client_comes_with_its_key(client):
    merchant = ApiClientFactory(scopes=["payments"])
    payment = PaymentFactory(client=merchant)
    response = client.get(
        f"/payments/{payment.pk}/", HTTP_AUTHORIZATION=f"Bearer {merchant.raw_key}"
    )
    assert response.status_code == 200
    assert response.json()["status"] == PaymentStatus.PENDING


def test_the_factory_refuses_a_status_the_flow_cannot_make():
    with pytest.raises(ValueError, match="cannot make"):
        PaymentFactory(status="REFUNDED")
