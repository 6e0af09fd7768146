"""Attacks on the callback intake itself: getting past the source allowlist, filling the
database through the callback URL. Each case ends by checking what was (not) stored."""

from decimal import Decimal

import pytest
from django.test import Client

from callbacks.models import CallbackState, InboundCallback
from core.testing import stk_success_body
from payments.models import EventSource, PaymentStatus
from payments.services import payment_create, payment_transition

pytestmark = pytest.mark.django_db
SAFARICOM_IP = "196.201.214.200"
ATTACKER_IP = "203.0.113.9"


def victim(checkout="ws_CO_VICTIM", amount="1000.00"):
    payment, token = payment_create(
        client=None,
        phone_number="254712345678",
        amount=Decimal(amount),
        account_reference="A",
        description="B",
    )
    payment = payment_transition(
        payment=payment,
        to_status=PaymentStatus.PENDING,
        source=EventSource.DARAJA,
        fields={"checkout_request_id": checkout},
    ).payment
    return payment, token


@pytest.fixture
def post(django_capture_on_commit_callbacks):
    def _post(path, body, content_type="application/json", **extra):
        with django_capture_on_commit_callbacks(execute=True):
            response = Client().post(path, data=body, content_type=content_type, **extra)
        return response, InboundCallback.objects.order_by("-id").first()

    return _post


# --- 4: the allowlist bypassed by connecting straight to gunicorn ----------------------------


@pytest.mark.parametrize("proxies", [["127.0.0.1"], []])
def test_a_direct_connection_cannot_claim_a_safaricom_address(post, settings, proxies):
    """The proxy is on loopback; the attacker reaches gunicorn's port from outside and sends
    the X-Forwarded-For a proxy would have written. Old settings (TRUSTED_PROXY_COUNT=1)
    believed it from any peer."""
    settings.MPESA_CALLBACK_IP_MODE = "enforce"
    settings.TRUSTED_PROXIES = proxies
    settings.TRUSTED_PROXY_COUNT = 1
    payment, token = victim()
    response, callback = post(
        f"/payments/callback/{token}/",
        stk_success_body(checkout_request_id="ws_CO_VICTIM", amount=1000),
        HTTP_X_FORWARDED_FOR=SAFARICOM_IP,
        REMOTE_ADDR=ATTACKER_IP,
    )
    assert response.status_code == 403
    assert callback.state == CallbackState.REJECTED and callback.source_ip == ATTACKER_IP
    payment.refresh_from_db()
    assert payment.status == PaymentStatus.PENDING


def test_the_same_header_through_the_trusted_proxy_is_believed(post, settings):
    settings.MPESA_CALLBACK_IP_MODE = "enforce"
    settings.TRUSTED_PROXIES = ["127.0.0.1"]
    settings.TRUSTED_PROXY_COUNT = 0
    payment, token = victim()
    response, callback = post(
        f"/payments/callback/{token}/",
        stk_success_body(checkout_request_id="ws_CO_VICTIM", amount=1000),
        HTTP_X_FORWARDED_FOR=SAFARICOM_IP,
        REMOTE_ADDR="127.0.0.1",
    )
    assert response.status_code == 200 and callback.source_ip == SAFARICOM_IP
    payment.refresh_from_db()
    assert payment.status == PaymentStatus.SUCCESS


def test_a_chain_of_trusted_proxies_is_walked_from_the_right(post, settings):
    """CDN -> load balancer -> nginx: every hop a trusted proxy; an address the client wrote
    at the left is never reached."""
    settings.MPESA_CALLBACK_IP_MODE = "enforce"
    settings.TRUSTED_PROXIES = ["127.0.0.1", "10.0.0.0/8"]
    settings.TRUSTED_PROXY_COUNT = 0
    _, token = victim()
    response, callback = post(
        f"/payments/callback/{token}/",
        stk_success_body(checkout_request_id="ws_CO_VICTIM", amount=1000),
        HTTP_X_FORWARDED_FOR=f"{SAFARICOM_IP}, {ATTACKER_IP}, 10.1.2.3, 10.0.0.7",
        REMOTE_ADDR="127.0.0.1",
    )
    assert response.status_code == 403 and callback.source_ip == ATTACKER_IP
