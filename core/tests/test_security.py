"""Merchant API protections, deployment settings, admin access, metrics, and the log test."""

import os
import re
import subprocess
import sys

import pytest
from django.contrib.admin.models import LogEntry
from django.contrib.auth import get_user_model
from django.test import Client
from rest_framework.test import APIClient

from core.logging import mask_text
from core.net import client_ip, ip_allowed
from payments.models import Payment
from testsupport import REPO_ROOT, stk_accepted, stk_success_body
from testsupport.factories import PaymentFactory

VALID = {
    "phone_number": "0712345678",
    "amount": 100,
    "account_reference": "ORDER1",
    "description": "Test",
}


def run_manage(*args, **env):
    base = {k: v for k, v in os.environ.items() if not k.startswith(("MPESA_", "DJANGO_"))}
    base.update(env)
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=REPO_ROOT,
        env=base,
        capture_output=True,
        text=True,
        timeout=120,
    )


PRODUCTION = {
    "DJANGO_SECRET_KEY": "x" * 20 + "production-secret-key-with-enough-entropy-0123456789",
    "DJANGO_ALLOWED_HOSTS": "pay.example.com",
    "MPESA_ENV": "production",
    "MPESA_CONSUMER_KEY": "live-consumer-key",
    "MPESA_CONSUMER_SECRET": "live-consumer-secret",
    "MPESA_SHORTCODE": "4125223",
    "MPESA_PASSKEY": "live-passkey-0123456789abcdef",
    "MPESA_CALLBACK_URL": "https://pay.example.com/payments/callback/",
}


def test_production_settings_pass_check_deploy_without_warnings():
    result = run_manage("check", "--deploy", "--fail-level", "WARNING", **PRODUCTION)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"MPESA_SHORTCODE": "174379"}, "public sandbox values"),
        ({"MPESA_BASE_URL": "https://sandbox.safaricom.co.ke"}, "not production Daraja"),
        ({"MPESA_PASSKEY": ""}, "MPESA_PASSKEY is required"),
        ({"MPESA_CONSUMER_SECRET": ""}, "MPESA_CONSUMER_SECRET is required"),
        ({"DJANGO_DEBUG": "true"}, "DJANGO_DEBUG must be false"),
        ({"MPESA_CALLBACK_URL": "http://pay.example.com/cb/"}, "https"),
        ({"DJANGO_SECRET_KEY": ""}, "DJANGO_SECRET_KEY is not set"),
    ],
)
def test_start_up_refuses_unsafe_production_settings(override, message):
    result = run_manage("check", **{**PRODUCTION, **override})
    assert result.returncode != 0
    assert message in result.stderr


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("PAYMENTS_MAX_AMOUNT", "lots"),
        ("MPESA_ENV", "staging"),
        ("CALLBACK_REDRIVE_AFTER", "soon"),
        ("MPESA_CALLBACK_ALLOWED_IPS", "not-an-ip"),
        ("TRUSTED_PROXIES", "proxy.example.com"),
    ],
)
def test_bad_configuration_stops_start_up_naming_the_variable(name, value):
    result = run_manage("check", DJANGO_DEBUG="true", **{name: value})
    assert result.returncode != 0 and name in result.stderr


def test_trusted_proxy_count_alone_stops_start_up_naming_its_replacement():
    """It used to believe X-Forwarded-For from any peer: refused, not silently reinterpreted."""
    result = run_manage("check", DJANGO_DEBUG="true", TRUSTED_PROXY_COUNT="1")
    assert result.returncode != 0 and "TRUSTED_PROXIES" in result.stderr
    result = run_manage(
        "check", DJANGO_DEBUG="true", TRUSTED_PROXY_COUNT="1", TRUSTED_PROXIES="127.0.0.1"
    )
    assert result.returncode == 0, result.stderr


# --- Merchant API ------------------------------------------------------------------------


@pytest.mark.django_db
def test_throttling_per_key_gives_a_clear_429(api, api_key, settings, daraja):
    settings.API_RATE_LIMIT = "3/min"
    for _ in range(3):
        assert api.get("/payments/").status_code == 200
    response = api.get("/payments/")
    assert response.status_code == 429
    assert response.json()["error"]["code"] == "rate_limited"
    assert "retry in" in response.json()["error"]["message"] and int(response["Retry-After"]) > 0
    # Another key has its own budget.
    from core.services import api_client_create

    other = APIClient()
    other.credentials(HTTP_AUTHORIZATION=f"Bearer {api_client_create(name='other').key}")
    assert other.get("/payments/").status_code == 200


@pytest.mark.django_db
def test_stk_push_has_its_own_lower_limit(api, settings, daraja):
    settings.API_STK_PUSH_RATE_LIMIT = "1/min"
    daraja.post("/mpesa/stkpush/v1/processrequest").respond(200, json=stk_accepted())
    assert api.post("/payments/stk-push/", VALID, format="json").status_code == 201
    assert (
        api.post("/payments/stk-push/", {**VALID, "amount": 101}, format="json").status_code == 429
    )
    assert Payment.objects.count() == 1


@pytest.mark.django_db
def test_oversized_api_body_is_413(api, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 2048
    response = api.post("/payments/stk-push/", {**VALID, "description": "x" * 5000}, format="json")
    assert response.status_code == 413 and response.json()["error"]["code"] == "payload_too_large"


@pytest.mark.django_db
def test_401_bodies_share_one_shape(client):
    for path in ["/payments/", "/payments/stk-push/"]:
        response = client.get(path)
        assert response.status_code == 401
        assert set(response.json()["error"]) == {"code", "message"}


# --- Client addresses ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("proxies", "forwarded", "remote", "expected"),
    [
        ([], "196.201.214.200", "203.0.113.9", "203.0.113.9"),
        (["10.0.0.1"], "196.201.214.200, 203.0.113.9", "10.0.0.1", "203.0.113.9"),
        (["10.0.0.0/24"], "1.1.1.1, 196.201.214.200, 10.0.0.2", "10.0.0.1", "196.201.214.200"),
        (["10.0.0.0/24"], "10.0.0.2", "10.0.0.1", "10.0.0.2"),
        (["10.0.0.1"], "garbage", "10.0.0.1", "10.0.0.1"),
        (["10.0.0.1"], "", "10.0.0.1", "10.0.0.1"),
        # The header is believed only from a trusted proxy: a direct peer is the client.
        (["10.0.0.1"], "196.201.214.200", "203.0.113.9", "203.0.113.9"),
        (["127.0.0.1"], "196.201.214.200", "::ffff:127.0.0.1", "196.201.214.200"),
    ],
)
def test_client_ip_never_trusts_the_first_forwarded_value(
    rf, settings, proxies, forwarded, remote, expected
):
    settings.TRUSTED_PROXIES = proxies
    settings.TRUSTED_PROXY_COUNT = 0
    request = rf.post("/", HTTP_X_FORWARDED_FOR=forwarded, REMOTE_ADDR=remote)
    assert client_ip(request) == expected


def test_trusted_proxy_count_caps_the_entries_read(rf, settings):
    settings.TRUSTED_PROXIES = ["10.0.0.0/24"]
    settings.TRUSTED_PROXY_COUNT = 1
    request = rf.post("/", HTTP_X_FORWARDED_FOR="196.201.214.200, 10.0.0.2", REMOTE_ADDR="10.0.0.1")
    assert client_ip(request) == "10.0.0.2"


def test_allowlist_accepts_addresses_and_ranges():
    assert ip_allowed("196.201.214.200", ["196.201.214.200"])
    assert ip_allowed("196.201.212.130", ["196.201.212.0/24"])
    assert not ip_allowed("203.0.113.9", ["196.201.212.0/24"])
    assert not ip_allowed(None, ["196.201.212.0/24"]) and not ip_allowed("nonsense", ["0.0.0.0/0"])


# --- Admin -------------------------------------------------------------------------------


@pytest.mark.django_db
def test_admin_is_for_staff_only(client):
    user = get_user_model().objects.create_user("clerk", password="pw-12345-long")
    client.force_login(user)
    response = client.get("/admin/payments/payment/")
    assert response.status_code == 302 and "/admin/login/" in response["Location"]


@pytest.mark.django_db
def test_admin_actions_on_payments_are_audited_with_the_user(client, daraja):
    from payments.services import payment_record_event

    payment = PaymentFactory(initiated=True)
    payment_record_event(
        payment=payment, kind="flagged", source="callback", reason="amount mismatch", flag=True
    )
    admin = get_user_model().objects.create_superuser("boss", "b@example.com", "pw-12345-long")
    client.force_login(admin)
    response = client.post(
        "/admin/payments/payment/",
        {"action": "clear_review", "_selected_action": [str(payment.pk)]},
    )
    assert response.status_code == 302
    payment.refresh_from_db()
    assert not payment.needs_review
    note = payment.events.get(kind="note")
    assert note.actor == "boss" and note.source == "admin"
    assert LogEntry.objects.filter(user=admin, object_id=str(payment.pk)).exists()


@pytest.mark.django_db
def test_an_admin_replay_of_a_callback_is_on_the_payments_trail(client, monkeypatch):
    from callbacks.models import InboundCallback
    from callbacks.tasks import process_callback
    from testsupport import stk_success_body

    payment, token = PaymentFactory.with_token(checkout_request_id="ws_CO_ADMIN_REPLAY")
    client.post(
        f"/payments/callback/{token}/",
        data=stk_success_body(checkout_request_id="ws_CO_ADMIN_REPLAY"),
        content_type="application/json",
    )
    callback = InboundCallback.objects.get()
    monkeypatch.setattr("payments.outcomes.payment_decide", lambda **kwargs: 1 / 0)
    process_callback.apply(args=(callback.pk,))
    monkeypatch.undo()
    admin = get_user_model().objects.create_superuser("boss", "b@example.com", "pw-12345-long")
    client.force_login(admin)

    response = client.post(
        "/admin/callbacks/inboundcallback/",
        {"action": "replay", "_selected_action": [str(callback.pk)]},
    )

    assert response.status_code == 302
    callback.refresh_from_db()
    assert callback.state == "received"
    note = payment.events.get(kind="note")
    assert (note.actor, note.source, note.callback_id) == ("boss", "admin", callback.pk)
    assert LogEntry.objects.filter(user=admin, object_id=str(callback.pk)).exists()


@pytest.mark.django_db
def test_admin_cannot_edit_a_payment_status(client):

    payment = PaymentFactory(initiated=True)
    client.force_login(
        get_user_model().objects.create_superuser("boss", "b@example.com", "pw-12345-long")
    )
    page = client.get(f"/admin/payments/payment/{payment.pk}/change/")
    assert page.status_code == 200 and b'name="status"' not in page.content
    client.post(f"/admin/payments/payment/{payment.pk}/change/", {"status": "SUCCESS"})
    payment.refresh_from_db()
    assert payment.status == "INITIATED"


# --- Metrics -----------------------------------------------------------------------------


@pytest.mark.django_db
def test_metrics_need_the_token_and_count_security_events(client, settings):
    settings.METRICS_TOKEN = "metrics-secret"
    assert client.get("/metrics").status_code == 404
    refused = 'mpesa_callbacks_received_total{outcome="refused",route="stk"}'

    def value() -> float:
        response = client.get("/metrics", HTTP_AUTHORIZATION="Bearer metrics-secret")
        assert response.status_code == 200
        found = re.search(rf"^{re.escape(refused)} (\S+)$", response.content.decode(), re.M)
        return float(found.group(1)) if found else 0.0

    before = value()
    client.post("/payments/callback/x/", data=b"{}", content_type="application/json")
    assert value() == before + 1


# --- Logs --------------------------------------------------------------------------------


@pytest.mark.django_db
def test_logs_of_a_full_payment_flow_hold_no_secret_and_no_phone_number(
    api, api_key, daraja, django_capture_on_commit_callbacks, settings
):
    settings.MPESA_VERIFY_SUCCESS = "always"
    import io
    import logging

    from core.logging import KeyValueFormatter

    # A handler exactly like the configured console one (same formatter and filters), into a buffer.
    root = logging.getLogger()
    console = next(h for h in root.handlers if isinstance(h.formatter, KeyValueFormatter))
    buffer = io.StringIO()
    capture = logging.StreamHandler(buffer)
    capture.setFormatter(console.formatter)
    for log_filter in console.filters:
        capture.addFilter(log_filter)
    root.addHandler(capture)
    root.setLevel(logging.DEBUG)
    try:
        route = daraja.post("/mpesa/stkpush/v1/processrequest").respond(
            200, json=stk_accepted("ws_CO_LOGTEST")
        )
        daraja.post("/mpesa/stkpushquery/v1/query").respond(
            200, json={"ResultCode": "0", "ResultDesc": "ok"}
        )
        payment_id = api.post("/payments/stk-push/", VALID, format="json").json()["id"]
        import json

        callback_url = json.loads(route.calls.last.request.content)["CallBackURL"]
        token = callback_url.rstrip("/").rsplit("/", 1)[-1]
        with django_capture_on_commit_callbacks(execute=True):
            Client().post(
                f"/payments/callback/{token}/",
                data=stk_success_body(
                    checkout_request_id="ws_CO_LOGTEST", amount=100, phone=254712345678
                ),
                content_type="application/json",
            )
        # An error path too: a request carrying the key in a header that fails validation.
        api.post("/payments/stk-push/", {**VALID, "amount": "x"}, format="json")
    finally:
        root.setLevel(logging.INFO)
        root.removeHandler(capture)
    assert Payment.objects.get(pk=payment_id).status == "SUCCESS"
    logs = buffer.getvalue()
    assert "payment status changed" in logs and "callback processed" in logs  # logs were captured
    secrets = {
        "passkey": settings.MPESA_PASSKEY,
        "consumer secret": settings.MPESA_CONSUMER_SECRET,
        "daraja token": "test-token",
        "api key": api_key.key,
        "api key secret part": api_key.key.split("_", 2)[2],
        "callback token": token,
        "phone": "254712345678",
        "local phone": "0712345678",
    }
    leaked = [name for name, value in secrets.items() if value in logs]
    assert leaked == []


def test_access_log_lines_lose_the_callback_token_and_credentials():
    line = 'POST /payments/callback/Ab3_-xYz0123456789abcdefghijkLMNOP/ 200 "Bearer mpk_0a1b2c3d_secretpart"'
    masked = mask_text(line)
    assert "Ab3_-xYz0123456789abcdefghijkLMNOP" not in masked and "secretpart" not in masked
    assert "/payments/callback/<token>/" in masked
