"""The webhooks of `make run`: the demo merchant's endpoint, the demo receiver that verifies
each delivery with `standardwebhooks`, and the demo page's panel showing both."""

from __future__ import annotations

import json
import threading
from http.server import ThreadingHTTPServer
from io import StringIO
from pathlib import Path

import httpx
import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from payments.demo import demo_client
from testsupport.factories import PaymentFactory
from webhooks.demo_receiver import LOG_FILE, SECRET_FILE, make_handler
from webhooks.models import Endpoint
from webhooks.services import signing_secrets, webhooks_pump

pytestmark = pytest.mark.django_db


@pytest.fixture
def var(settings, tmp_path):
    settings.VAR_DIR = tmp_path
    settings.DEBUG = True
    settings.DEMO_ENABLED = True
    settings.WEBHOOK_ALLOW_PRIVATE_TARGETS = True
    return Path(tmp_path)


@pytest.fixture
def receiver(var):
    server = ThreadingHTTPServer(("127.0.0.1", 0), make_handler(var / SECRET_FILE, var / LOG_FILE))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/webhooks"
    server.shutdown()
    server.server_close()


def bootstrap(url):
    out = StringIO()
    call_command("bootstrap_demo_webhooks", "--url", url, stdout=out)
    return out.getvalue()


def test_the_demo_endpoint_is_made_once_with_its_secret_where_the_receiver_reads_it(var):
    assert "demo receiver" in bootstrap("http://127.0.0.1:8002/webhooks")
    endpoint = Endpoint.objects.get(client=demo_client())
    first = (var / SECRET_FILE).read_text()
    assert signing_secrets([endpoint.pk])[endpoint.pk] == [first]
    assert oct((var / SECRET_FILE).stat().st_mode & 0o777) == "0o600"

    bootstrap("http://127.0.0.1:9002/webhooks")  # make run started again, another port
    endpoint = Endpoint.objects.get(client=demo_client())
    second = (var / SECRET_FILE).read_text()
    assert endpoint.url == "http://127.0.0.1:9002/webhooks" and second != first
    assert signing_secrets([endpoint.pk])[endpoint.pk] == [second]  # no overlap needed


def test_a_demo_payment_is_delivered_verified_and_shown_on_the_demo_page(var, receiver, client):
    bootstrap(receiver)
    payment = PaymentFactory(client=demo_client(), success=True, receipt="UKR1DEMO01")
    webhooks_pump(seconds=2)

    lines = [json.loads(line) for line in (var / LOG_FILE).read_text().splitlines()]
    assert {line["type"] for line in lines} == {"payment.pending", "payment.succeeded"}
    assert all(line["verified"] and line["object_id"] == str(payment.pk) for line in lines)

    panel = client.get(f"/demo/payments/{payment.pk}/webhooks/").json()
    assert [event["type"] for event in panel["events"]] == [
        "payment.pending",
        "payment.succeeded",
    ]
    for event in panel["events"]:
        (delivery,) = event["deliveries"]
        assert delivery["state"] == "delivered" and delivery["last_status_code"] == 204
        assert event["receiver"]["verified"] is True


def test_the_demo_receiver_refuses_a_forged_delivery(var, receiver):
    bootstrap(receiver)
    response = httpx.post(
        receiver,
        content=b'{"type": "payment.succeeded"}',
        headers={
            "webhook-id": "evt_forged",
            "webhook-timestamp": "1764921600",
            "webhook-signature": "v1,AAAA",
        },
    )
    assert response.status_code == 400
    (line,) = [json.loads(line) for line in (var / LOG_FILE).read_text().splitlines()]
    assert line["webhook_id"] == "evt_forged" and not line["verified"] and line["problem"]


def test_the_demo_webhooks_are_for_local_development_only(var, settings):
    settings.DEBUG = False
    with pytest.raises(CommandError, match="local development"):
        bootstrap("http://127.0.0.1:8002/webhooks")
    assert not Endpoint.objects.exists()


def test_the_panel_is_off_with_the_demo_page(var, settings, client):
    settings.DEMO_ENABLED = False
    payment = PaymentFactory()
    assert client.get(f"/demo/payments/{payment.pk}/webhooks/").status_code == 404
