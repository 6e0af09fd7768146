"""Layers of evidence after the callback: STK Query for stale PENDING payments, expiry, and
late results (DESIGN.md: money M-Pesa took never ends FAILED; SUCCESS never moves back)."""

from datetime import timedelta

import httpx
import pytest
from django.utils import timezone

from callbacks.models import CallbackState, InboundCallback
from payments.models import EventKind, Payment, PaymentStatus
from payments.services import (
    payment_query,
    payments_due_for_query,
    payments_expire,
)
from payments.tasks import sweep_payments
from testsupport import stk_failure_body, stk_success_body
from testsupport.factories import PaymentFactory

pytestmark = pytest.mark.django_db
QUERY = "/mpesa/stkpushquery/v1/query"


@pytest.fixture
def deliver(client, django_capture_on_commit_callbacks):
    def _deliver(token, body):
        with django_capture_on_commit_callbacks(execute=True):
            assert (
                client.post(
                    f"/payments/callback/{token}/", data=body, content_type="application/json"
                ).status_code
                == 200
            )
        return InboundCallback.objects.order_by("-id").first()

    return _deliver


def test_only_stale_pending_payments_are_due(settings):
    settings.PAYMENTS_QUERY_AFTER = 60
    old, _ = PaymentFactory.with_token(
        checkout_request_id="ws_CO_OLD", created_at=timezone.now() - timedelta(seconds=120)
    )
    PaymentFactory.with_token(
        checkout_request_id="ws_CO_NEW", created_at=timezone.now() - timedelta(seconds=5)
    )
    assert payments_due_for_query() == [old.pk]


@pytest.mark.parametrize(
    ("status", "body"),
    [
        (
            500,
            {
                "requestId": "ws_CO_1",
                "errorCode": "500.001.1001",
                "errorMessage": "The transaction is being processed",
            },
        ),
        (200, {"ResultCode": "4999", "ResultDesc": "The transaction is still under processing"}),
    ],
)
def test_both_pending_answers_keep_the_payment_pending_and_back_off(daraja, settings, status, body):
    settings.PAYMENTS_QUERY_BACKOFF_BASE = 10
    settings.PAYMENTS_QUERY_BACKOFF_MAX = 40
    payment, _ = PaymentFactory.with_token(
        checkout_request_id="ws_CO_1", created_at=timezone.now() - timedelta(seconds=120)
    )
    daraja.post(QUERY).respond(status, json=body)
    delays = []
    for _ in range(5):
        assert payment_query(payment_id=payment.pk).outcome == "pending"
        payment.refresh_from_db()
        delays.append((payment.next_query_at - timezone.now()).total_seconds())
        Payment.objects.filter(pk=payment.pk).update(next_query_at=None)
    assert payment.status == PaymentStatus.PENDING and payment.query_attempts == 5
    # Full jitter within [ceiling/2, ceiling], ceilings 10, 20, 40, 40, 40 (capped).
    for delay, ceiling in zip(delays, [10, 20, 40, 40, 40], strict=True):
        assert ceiling / 2 - 1 <= delay <= ceiling + 1


def test_final_query_failure_fails_the_payment_with_evidence(daraja):
    payment, _ = PaymentFactory.with_token(
        checkout_request_id="ws_CO_1", created_at=timezone.now() - timedelta(seconds=120)
    )
    daraja.post(QUERY).respond(
        200,
        json={
            "ResponseCode": "0",
            "ResultCode": "1037",
            "ResultDesc": "No response from user.",
            "CheckoutRequestID": "ws_CO_1",
        },
    )
    assert payment_query(payment_id=payment.pk).outcome == "failed"
    payment.refresh_from_db()
    assert (
        payment.status == PaymentStatus.FAILED
        and payment.result_code == "1037"
        and payment.failure_final
    )
    event = payment.events.get(to_status=PaymentStatus.FAILED)
    assert event.source == "query" and event.evidence["result_code"] == "1037"


def test_final_query_success_credits_the_payment_then_a_callback_brings_the_receipt(
    daraja, deliver
):
    payment, token = PaymentFactory.with_token(
        checkout_request_id="ws_CO_1", created_at=timezone.now() - timedelta(seconds=120)
    )
    daraja.post(QUERY).respond(
        200,
        json={
            "ResponseCode": "0",
            "ResultCode": "0",
            "ResultDesc": "The service request is processed successfully.",
            "CheckoutRequestID": "ws_CO_1",
        },
    )
    assert payment_query(payment_id=payment.pk).outcome == "success"
    payment.refresh_from_db()
    assert (
        payment.status == PaymentStatus.SUCCESS
        and payment.events.get(to_status=PaymentStatus.SUCCESS).source == "query"
    )
    callback = deliver(token, stk_success_body(checkout_request_id="ws_CO_1", receipt="UKR1LATERC"))
    payment.refresh_from_db()
    assert callback.state == CallbackState.PROCESSED
    assert payment.mpesa_receipt_number == "UKR1LATERC"
    assert (
        payment.events.filter(kind=EventKind.TRANSITION, to_status=PaymentStatus.SUCCESS).count()
        == 1
    )


def test_query_errors_are_retried_later_not_failures(daraja):
    payment, _ = PaymentFactory.with_token(
        checkout_request_id="ws_CO_1", created_at=timezone.now() - timedelta(seconds=120)
    )
    daraja.post(QUERY).mock(side_effect=httpx.ConnectError("down"))
    assert payment_query(payment_id=payment.pk).outcome == "error"
    payment.refresh_from_db()
    assert payment.status == PaymentStatus.PENDING and payment.next_query_at is not None


def test_never_more_than_one_query_in_flight(daraja):
    payment, _ = PaymentFactory.with_token(
        checkout_request_id="ws_CO_1", created_at=timezone.now() - timedelta(seconds=120)
    )
    Payment.objects.filter(pk=payment.pk).update(
        query_claimed_until=timezone.now() + timedelta(seconds=30)
    )
    route = daraja.post(QUERY).respond(200, json={"ResultCode": "4999", "ResultDesc": "pending"})
    assert payment_query(payment_id=payment.pk).outcome == "skipped"
    assert not route.called


def test_sweep_queries_due_payments_and_expires_old_ones(daraja, settings):
    settings.PAYMENTS_QUERY_AFTER = 60
    settings.PAYMENTS_EXPIRE_AFTER = 3600
    due, _ = PaymentFactory.with_token(
        checkout_request_id="ws_CO_DUE", created_at=timezone.now() - timedelta(seconds=120)
    )
    old, _ = PaymentFactory.with_token(
        checkout_request_id="ws_CO_OLD", created_at=timezone.now() - timedelta(seconds=7200)
    )
    daraja.post(QUERY).respond(200, json={"ResultCode": "4999", "ResultDesc": "pending"})
    result = sweep_payments.apply().get()
    assert result["expired"] == 1
    old.refresh_from_db()
    due.refresh_from_db()
    assert old.status == PaymentStatus.FAILED and not old.failure_final
    assert "expired unresolved" in old.result_desc
    assert due.status == PaymentStatus.PENDING and due.query_attempts >= 1


def test_initiated_payments_whose_push_got_no_answer_expire_unresolved(settings):
    settings.PAYMENTS_EXPIRE_AFTER = 60
    payment = PaymentFactory(initiated=True, created_at=timezone.now() - timedelta(seconds=600))
    Payment.objects.filter(pk=payment.pk).update(initiation_unknown=True)
    assert payments_expire() == 1
    payment.refresh_from_db()
    assert (
        payment.status == PaymentStatus.FAILED
        and not payment.failure_final
        and "no answer" in payment.result_desc
    )


# --- Late results ------------------------------------------------------------------------


def test_late_success_after_expiry_moves_failed_to_success(deliver, settings):
    settings.PAYMENTS_EXPIRE_AFTER = 60
    payment, token = PaymentFactory.with_token(
        checkout_request_id="ws_CO_1", created_at=timezone.now() - timedelta(seconds=600)
    )
    payments_expire()
    callback = deliver(token, stk_success_body(checkout_request_id="ws_CO_1", receipt="UKR1LATEEE"))
    payment.refresh_from_db()
    assert payment.status == PaymentStatus.SUCCESS and callback.state == CallbackState.PROCESSED
    event = payment.events.get(to_status=PaymentStatus.SUCCESS)
    assert event.from_status == PaymentStatus.FAILED and "late success after FAILED" in event.reason


def test_success_never_moves_back_to_failed(deliver, daraja):
    payment, token = PaymentFactory.with_token(
        checkout_request_id="ws_CO_1", created_at=timezone.now() - timedelta(seconds=120)
    )
    deliver(token, stk_success_body(checkout_request_id="ws_CO_1"))
    daraja.post(QUERY).respond(200, json={"ResultCode": "1032", "ResultDesc": "cancelled"})
    assert payment_query(payment_id=payment.pk).outcome == "skipped"
    late = deliver(token, stk_failure_body(checkout_request_id="ws_CO_1"))
    payment.refresh_from_db()
    assert payment.status == PaymentStatus.SUCCESS and late.state == CallbackState.IGNORED


def test_success_after_a_final_failure_is_flagged_not_credited(deliver):
    payment, token = PaymentFactory.with_token(
        checkout_request_id="ws_CO_1", created_at=timezone.now() - timedelta(seconds=120)
    )
    deliver(token, stk_failure_body(checkout_request_id="ws_CO_1", result_code=1032))
    callback = deliver(token, stk_success_body(checkout_request_id="ws_CO_1"))
    payment.refresh_from_db()
    assert (
        payment.status == PaymentStatus.FAILED
        and payment.needs_review
        and callback.state == CallbackState.REVIEW
    )


def test_callback_for_a_push_whose_answer_was_lost_adopts_the_checkout_id(deliver, api, daraja):
    daraja.post("/mpesa/stkpush/v1/processrequest").mock(side_effect=httpx.ReadTimeout("lost"))
    created = api.post(
        "/payments/stk-push/",
        {"phone_number": "0712345678", "amount": 10, "account_reference": "A", "description": "B"},
        format="json",
    )
    assert created.status_code == 202
    payment = Payment.objects.get(pk=created.json()["id"])
    token = daraja.calls.last.request.content  # the body Daraja "received"
    import json

    callback_url = json.loads(token)["CallBackURL"]
    callback = deliver(
        callback_url.rstrip("/").rsplit("/", 1)[-1],
        stk_success_body(checkout_request_id="ws_CO_ADOPTED", receipt="UKR1ADOPTD"),
    )
    payment.refresh_from_db()
    assert callback.state == CallbackState.PROCESSED
    assert (
        payment.status == PaymentStatus.SUCCESS and payment.checkout_request_id == "ws_CO_ADOPTED"
    )
