"""The attack suite: each forged or abusive callback is refused and recorded, and no payment
changes. Every case ends by checking the victim payment is exactly as it was."""

from decimal import Decimal

import pytest
from django.test import Client

from callbacks.models import CallbackState, InboundCallback
from callbacks.tasks import verify_callback
from payments.models import EventKind, Payment, PaymentStatus
from testsupport import stk_success_body
from testsupport.factories import PaymentFactory

pytestmark = pytest.mark.django_db
SAFARICOM_IP = "196.201.214.200"


def snapshot(payment):
    payment.refresh_from_db()
    return (
        payment.status,
        payment.mpesa_receipt_number,
        payment.paid_amount,
        payment.events.filter(kind=EventKind.TRANSITION).count(),
    )


@pytest.fixture
def post(django_capture_on_commit_callbacks):
    def _post(path, body, content_type="application/json", **extra):
        with django_capture_on_commit_callbacks(execute=True):
            response = Client().post(path, data=body, content_type=content_type, **extra)
        return response, InboundCallback.objects.order_by("-id").first()

    return _post


def test_forged_success_with_a_guessed_token(post):
    payment, _ = PaymentFactory.with_token(checkout_request_id="ws_CO_VICTIM", amount="1000.00")
    before = snapshot(payment)
    for guess in ["A" * 43, "0" * 43, "payment-callback-token-guess-0001"]:
        response, callback = post(
            f"/payments/callback/{guess}/",
            stk_success_body(checkout_request_id="ws_CO_VICTIM", amount=1000),
        )
        assert response.status_code == 200
        assert (
            callback.state == CallbackState.REJECTED
            and "unknown callback token" in callback.last_error
        )
    assert snapshot(payment) == before
    assert payment.events.filter(kind=EventKind.FLAGGED).count() == 3


def test_forged_success_without_a_token_or_with_a_malformed_one(post):
    payment, _ = PaymentFactory.with_token(checkout_request_id="ws_CO_VICTIM", amount="1000.00")
    before = snapshot(payment)
    for path in [
        "/payments/callback/",
        "/payments/callback/x/",
        "/payments/callback/%27%20OR%201=1/",
    ]:
        response, callback = post(
            path, stk_success_body(checkout_request_id="ws_CO_VICTIM", amount=1000)
        )
        assert response.status_code == 200
        assert callback.state == CallbackState.REJECTED
    assert snapshot(payment) == before


def test_a_valid_token_replayed_against_another_payment(post):
    target, _ = PaymentFactory.with_token(amount="1000.00", checkout_request_id="ws_CO_TARGET")
    _, attacker_token = PaymentFactory.with_token(
        checkout_request_id="ws_CO_ATTACKER", amount="1.00"
    )
    before = snapshot(target)
    _, callback = post(
        f"/payments/callback/{attacker_token}/",
        stk_success_body(checkout_request_id="ws_CO_TARGET", amount=1000),
    )
    assert callback.state == CallbackState.REJECTED
    assert snapshot(target) == before


def test_amount_tampering(post):
    payment, token = PaymentFactory.with_token(checkout_request_id="ws_CO_VICTIM", amount="1000.00")
    before = snapshot(payment)
    _, callback = post(
        f"/payments/callback/{token}/",
        stk_success_body(checkout_request_id="ws_CO_VICTIM", amount=1),
    )
    assert callback.state == CallbackState.REVIEW and "amount mismatch" in callback.last_error
    assert snapshot(payment) == before
    payment.refresh_from_db()
    assert payment.needs_review


def test_receipt_reuse(post):
    _paid, paid_token = PaymentFactory.with_token(
        checkout_request_id="ws_CO_PAID", amount="1000.00"
    )
    post(
        f"/payments/callback/{paid_token}/",
        stk_success_body(checkout_request_id="ws_CO_PAID", amount=1000, receipt="UKR1REUSED"),
    )
    payment, token = PaymentFactory.with_token(checkout_request_id="ws_CO_VICTIM", amount="1000.00")
    before = snapshot(payment)
    _, callback = post(
        f"/payments/callback/{token}/",
        stk_success_body(checkout_request_id="ws_CO_VICTIM", amount=1000, receipt="UKR1REUSED"),
    )
    assert callback.state == CallbackState.REVIEW and "already credited" in callback.last_error
    assert snapshot(payment) == before


def test_non_allowlisted_source_with_a_spoofed_forwarding_header_is_refused(post, settings):
    settings.MPESA_CALLBACK_IP_MODE = "enforce"
    settings.TRUSTED_PROXIES = ["127.0.0.1"]  # the test client connects from loopback
    payment, token = PaymentFactory.with_token(checkout_request_id="ws_CO_VICTIM", amount="1000.00")
    before = snapshot(payment)
    # The attacker writes a Safaricom address first; our one proxy appends the real one.
    response, callback = post(
        f"/payments/callback/{token}/",
        stk_success_body(checkout_request_id="ws_CO_VICTIM", amount=1000),
        HTTP_X_FORWARDED_FOR=f"{SAFARICOM_IP}, 203.0.113.9",
    )
    assert response.status_code == 403
    assert callback.state == CallbackState.REJECTED and "203.0.113.9" in callback.last_error
    assert callback.source_ip == "203.0.113.9" and callback.source_flagged
    assert snapshot(payment) == before


def test_allowlisted_source_behind_the_proxy_is_accepted(post, settings):
    settings.MPESA_CALLBACK_IP_MODE = "enforce"
    settings.TRUSTED_PROXIES = ["127.0.0.1"]  # the test client connects from loopback
    payment, token = PaymentFactory.with_token(checkout_request_id="ws_CO_VICTIM", amount="1000.00")
    _, callback = post(
        f"/payments/callback/{token}/",
        stk_success_body(checkout_request_id="ws_CO_VICTIM", amount=1000),
        HTTP_X_FORWARDED_FOR=f"10.9.9.9, {SAFARICOM_IP}",
    )
    assert callback.state == CallbackState.PROCESSED and callback.source_ip == SAFARICOM_IP
    payment.refresh_from_db()
    assert payment.status == PaymentStatus.SUCCESS


def test_flag_mode_records_outsiders_but_processes(post, settings):
    settings.MPESA_CALLBACK_IP_MODE = "flag"
    _payment, token = PaymentFactory.with_token(
        checkout_request_id="ws_CO_VICTIM", amount="1000.00"
    )
    _, callback = post(
        f"/payments/callback/{token}/",
        stk_success_body(checkout_request_id="ws_CO_VICTIM", amount=1000),
    )
    assert callback.source_flagged and callback.state == CallbackState.PROCESSED


def test_oversized_body(post, settings):
    settings.CALLBACK_MAX_BODY_BYTES = 4096
    payment, token = PaymentFactory.with_token(checkout_request_id="ws_CO_VICTIM", amount="1000.00")
    before = snapshot(payment)
    body = (
        stk_success_body(checkout_request_id="ws_CO_VICTIM", amount=1000)[:-2]
        + b" " * 10_000
        + b"}}"
    )
    response, callback = post(f"/payments/callback/{token}/", body)
    assert response.status_code == 413 and callback.state == CallbackState.REJECTED
    assert snapshot(payment) == before


def test_deeply_nested_json(post):
    payment, token = PaymentFactory.with_token(checkout_request_id="ws_CO_VICTIM", amount="1000.00")
    before = snapshot(payment)
    body = b'{"Body": {"stkCallback": ' + b'{"a": ' * 20000 + b"1" + b"}" * 20000 + b"}}"
    response, callback = post(f"/payments/callback/{token}/", body)
    assert response.status_code in (200, 413)
    assert callback.state in (CallbackState.INVALID, CallbackState.REJECTED)
    assert snapshot(payment) == before


@pytest.mark.parametrize(
    "amount", ["1e400", "99999999999999999999999999", "1000.001", "-1000", "NaN"]
)
def test_huge_or_strange_numbers(post, amount):
    payment, token = PaymentFactory.with_token(checkout_request_id="ws_CO_VICTIM", amount="1000.00")
    before = snapshot(payment)
    response, callback = post(
        f"/payments/callback/{token}/",
        stk_success_body(checkout_request_id="ws_CO_VICTIM", amount=amount),
    )
    assert response.status_code == 200
    assert callback.state == CallbackState.INVALID and callback.last_error
    assert snapshot(payment) == before


def test_wrong_content_type_is_stored_but_changes_nothing_without_the_token(post):
    payment, _ = PaymentFactory.with_token(checkout_request_id="ws_CO_VICTIM", amount="1000.00")
    before = snapshot(payment)
    response, callback = post(
        "/payments/callback/" + "B" * 43 + "/",
        stk_success_body(checkout_request_id="ws_CO_VICTIM", amount=1000),
        content_type="text/xml",
    )
    assert response.status_code == 200 and callback.content_type == "text/xml"
    assert callback.state == CallbackState.REJECTED
    assert snapshot(payment) == before


def test_wrong_content_type_on_the_api_is_refused(api):
    response = api.post("/payments/stk-push/", b"<xml/>", content_type="application/xml")
    assert (
        response.status_code == 415 and response.json()["error"]["code"] == "unsupported_media_type"
    )


# --- Verification before crediting -------------------------------------------------------


@pytest.fixture
def verify_always(settings):
    settings.MPESA_VERIFY_SUCCESS = "always"


def test_success_confirmed_by_query_is_credited(post, daraja, verify_always):
    payment, token = PaymentFactory.with_token(checkout_request_id="ws_CO_VICTIM", amount="1000.00")
    daraja.post("/mpesa/stkpushquery/v1/query").respond(
        200,
        json={
            "ResponseCode": "0",
            "ResultCode": "0",
            "ResultDesc": "The service request is processed successfully.",
        },
    )
    _, callback = post(
        f"/payments/callback/{token}/",
        stk_success_body(checkout_request_id="ws_CO_VICTIM", amount=1000),
    )
    callback.refresh_from_db()
    payment.refresh_from_db()
    assert callback.state == CallbackState.PROCESSED and callback.verified_at is not None
    assert payment.status == PaymentStatus.SUCCESS
    assert "verified_by_query_at" in payment.events.get(to_status=PaymentStatus.SUCCESS).evidence


def test_success_the_query_contradicts_is_a_security_event_not_a_credit(
    post, daraja, verify_always
):
    payment, token = PaymentFactory.with_token(checkout_request_id="ws_CO_VICTIM", amount="1000.00")
    daraja.post("/mpesa/stkpushquery/v1/query").respond(
        200,
        json={"ResponseCode": "0", "ResultCode": "1032", "ResultDesc": "Request cancelled by user"},
    )
    _, callback = post(
        f"/payments/callback/{token}/",
        stk_success_body(checkout_request_id="ws_CO_VICTIM", amount=1000),
    )
    callback.refresh_from_db()
    payment.refresh_from_db()
    assert callback.state == CallbackState.REJECTED and "contradicts" in callback.last_error
    assert (
        payment.status == PaymentStatus.FAILED
        and payment.result_code == "1032"
        and payment.needs_review
    )
    assert payment.mpesa_receipt_number is None


def test_verification_waits_while_the_query_is_pending(post, daraja, verify_always, monkeypatch):
    retried = []
    monkeypatch.setattr(
        verify_callback, "retry", lambda **kw: retried.append(kw) or RuntimeError("retry")
    )
    payment, token = PaymentFactory.with_token(checkout_request_id="ws_CO_VICTIM", amount="1000.00")
    daraja.post("/mpesa/stkpushquery/v1/query").respond(
        500,
        json={
            "requestId": "x",
            "errorCode": "500.001.1001",
            "errorMessage": "The transaction is being processed",
        },
    )
    post(
        f"/payments/callback/{token}/",
        stk_success_body(checkout_request_id="ws_CO_VICTIM", amount=1000),
    )
    callback = InboundCallback.objects.get()
    assert callback.state == CallbackState.VERIFYING and retried
    payment.refresh_from_db()
    assert payment.status == PaymentStatus.PENDING


def test_verify_above_threshold_only(post, daraja, settings):
    settings.MPESA_VERIFY_SUCCESS = "above"
    settings.MPESA_VERIFY_ABOVE = Decimal("5000")
    route = daraja.post("/mpesa/stkpushquery/v1/query").respond(
        200, json={"ResultCode": "0", "ResultDesc": "ok"}
    )
    _small, small_token = PaymentFactory.with_token(
        checkout_request_id="ws_CO_SMALL", amount="1000.00"
    )
    post(
        f"/payments/callback/{small_token}/",
        stk_success_body(checkout_request_id="ws_CO_SMALL", amount=1000),
    )
    assert not route.called
    big, big_token = PaymentFactory.with_token(checkout_request_id="ws_CO_BIG", amount="6000.00")
    post(
        f"/payments/callback/{big_token}/",
        stk_success_body(checkout_request_id="ws_CO_BIG", amount=6000, receipt="UKR1BIGBIG"),
    )
    assert route.called
    assert Payment.objects.get(pk=big.pk).status == PaymentStatus.SUCCESS


def test_rotating_the_secret_key_does_not_break_payments_in_flight(post, settings):
    _payment, token = PaymentFactory.with_token(
        checkout_request_id="ws_CO_VICTIM", amount="1000.00"
    )
    settings.SECRET_KEY = "a-completely-different-secret-key-after-rotation-0123456789"
    _, callback = post(
        f"/payments/callback/{token}/",
        stk_success_body(checkout_request_id="ws_CO_VICTIM", amount=1000),
    )
    assert callback.state == CallbackState.PROCESSED
