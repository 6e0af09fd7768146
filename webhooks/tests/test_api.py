"""The webhooks API: endpoints (secret shown once, stored encrypted), events, deliveries with
their attempts, redelivery; scoped to the key's merchant."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone
from rest_framework.test import APIClient
from standardwebhooks.webhooks import Webhook

from core.crypto import decrypt
from events.models import Event
from testsupport.factories import ApiClientFactory, PaymentFactory
from testsupport.receiver import webhook_receiver
from webhooks.models import Delivery, DeliveryState, Endpoint, EndpointSecret
from webhooks.services import webhooks_pump

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _local_targets(settings):
    settings.WEBHOOK_ALLOW_PRIVATE_TARGETS = True


def api_for(client):
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {client.raw_key}")
    return api


@pytest.fixture
def merchant():
    return ApiClientFactory(scopes=["payments", "webhooks"])


@pytest.fixture
def api(merchant):
    return api_for(merchant)


def test_an_endpoint_is_created_with_its_secret_shown_once_and_stored_encrypted(api):
    created = api.post(
        "/webhooks/endpoints/",
        {"url": "http://127.0.0.1:9/hooks", "event_types": ["payment.succeeded"]},
        format="json",
    )
    assert created.status_code == 201, created.content
    body = created.json()
    assert body["secret"].startswith("whsec_") and body["event_types"] == ["payment.succeeded"]
    stored = EndpointSecret.objects.get(endpoint_id=body["id"])
    assert body["secret"] not in stored.encrypted and decrypt(stored.encrypted) == body["secret"]
    shown = api.get(f"/webhooks/endpoints/{body['id']}/").json()
    assert "secret" not in shown and shown["url"] == "http://127.0.0.1:9/hooks"
    assert [e["id"] for e in api.get("/webhooks/endpoints/").json()["results"]] == [body["id"]]


@pytest.mark.parametrize(
    ("body", "field", "message"),
    [
        ({"url": "ftp://example.com/"}, "url", "https"),
        ({"url": "https://169.254.169.254/"}, "url", "metadata"),
        ({"url": "https://x.invalid/", "event_types": ["payment.refunded"]}, "event_types", ""),
        ({}, "url", "required"),
    ],
)
def test_a_bad_endpoint_is_a_400_naming_the_field(api, body, field, message):
    response = api.post("/webhooks/endpoints/", body, format="json")
    assert response.status_code == 400
    error = response.json()["error"]
    assert field in error["fields"] and message in str(error["fields"][field])


def test_production_refuses_plain_http_and_private_addresses(api, settings):
    settings.WEBHOOK_ALLOW_PRIVATE_TARGETS = False
    for url, message in (
        ("http://hooks.example.com/", "https is required"),
        ("https://127.0.0.1/", "loopback"),
        ("https://10.0.0.1/", "private"),
    ):
        response = api.post("/webhooks/endpoints/", {"url": url}, format="json")
        assert response.status_code == 400 and message in str(response.json()), url


def test_changing_rotating_and_deleting_an_endpoint(api):
    endpoint = api.post("/webhooks/endpoints/", {"url": "http://127.0.0.1:9/a"}, format="json")
    endpoint_id, first = endpoint.json()["id"], endpoint.json()["secret"]

    changed = api.patch(
        f"/webhooks/endpoints/{endpoint_id}/",
        {"description": "orders", "enabled": False},
        format="json",
    )
    assert changed.status_code == 200
    assert changed.json()["enabled"] is False
    assert changed.json()["disabled_reason"] == "disabled by its owner"

    rotated = api.post(
        f"/webhooks/endpoints/{endpoint_id}/rotate-secret/", {"overlap_hours": 2}, format="json"
    )
    second = rotated.json()["secret"]
    assert rotated.status_code == 200 and second != first
    secrets = EndpointSecret.objects.filter(endpoint_id=endpoint_id).order_by("created_at")
    assert [decrypt(s.encrypted) for s in secrets] == [first, second]
    assert secrets[0].expires_at is not None and secrets[1].expires_at is None

    assert api.delete(f"/webhooks/endpoints/{endpoint_id}/").status_code == 204
    assert not Endpoint.objects.filter(pk=endpoint_id).exists()


def test_send_test_delivers_a_signed_test_event_to_that_endpoint(api):
    with webhook_receiver() as receiver:
        created = api.post("/webhooks/endpoints/", {"url": receiver.url}, format="json").json()
        response = api.post(f"/webhooks/endpoints/{created['id']}/send-test/")
        assert response.status_code == 202 and response.json()["event_type"] == "webhook.test"
        webhooks_pump(seconds=1)
    (request,) = receiver.requests
    assert Webhook(created["secret"]).verify(request.body, request.headers)["type"] == (
        "webhook.test"
    )
    delivery = api.get(f"/webhooks/deliveries/{response.json()['id']}/").json()
    assert delivery["state"] == "delivered"
    (attempt,) = delivery["attempt_log"]
    assert attempt["status_code"] == 200 and attempt["latency_ms"] >= 0
    assert attempt["response_body"] == '{"ok": true}'


def test_events_and_deliveries_are_listed_and_an_event_is_redelivered_on_record(api, merchant):
    with webhook_receiver() as receiver:
        api.post("/webhooks/endpoints/", {"url": receiver.url}, format="json")
        payment = PaymentFactory(client=merchant)
        webhooks_pump(seconds=1)
        events = api.get("/webhooks/events/", {"object_id": str(payment.pk)}).json()["results"]
        assert [e["type"] for e in events] == ["payment.pending"]
        assert events[0]["data"]["id"] == str(payment.pk)

        again = api.post(
            f"/webhooks/events/{events[0]['id']}/redeliver/", {"reason": "lost it"}, format="json"
        )
        assert again.status_code == 202
        (made,) = again.json()
        assert made["reason"] == "lost it" and made["requested_by"].startswith("api:")
        webhooks_pump(seconds=1)
    assert len(receiver.requests) == 2
    assert receiver.requests[0].headers["webhook-id"] == receiver.requests[1].headers["webhook-id"]
    listed = api.get(f"/webhooks/events/{events[0]['id']}/deliveries/").json()["results"]
    assert sorted(d["state"] for d in listed) == ["delivered", "delivered"]


def test_everything_that_failed_in_a_range_is_redelivered(api, merchant):
    with webhook_receiver() as receiver:
        endpoint = api.post("/webhooks/endpoints/", {"url": receiver.url}, format="json").json()
        for _ in range(3):
            PaymentFactory(client=merchant)
        webhooks_pump(seconds=1)
        Delivery.objects.update(state=DeliveryState.FAILED)
        now = timezone.now()
        response = api.post(
            "/webhooks/deliveries/redeliver-failed/",
            {
                "since": (now - timedelta(hours=1)).isoformat(),
                "until": (now + timedelta(minutes=1)).isoformat(),
                "endpoint": endpoint["id"],
                "reason": "receiver was down",
            },
            format="json",
        )
        assert response.status_code == 202 and response.json() == {"redelivered": 3}
        webhooks_pump(seconds=1)
    assert len(receiver.requests) == 6
    assert Delivery.objects.filter(reason="receiver was down", state="delivered").count() == 3

    backwards = api.post(
        "/webhooks/deliveries/redeliver-failed/",
        {"since": now.isoformat(), "until": (now - timedelta(hours=1)).isoformat()},
        format="json",
    )
    assert backwards.status_code == 400 and backwards.json()["error"]["code"] == "invalid_range"


def test_a_key_sees_only_its_merchants_webhooks_and_needs_the_scope(api, merchant):
    created = api.post("/webhooks/endpoints/", {"url": "http://127.0.0.1:9/"}, format="json")
    PaymentFactory(client=merchant)
    event = Event.objects.get()
    stranger = api_for(ApiClientFactory(scopes=["webhooks"]))
    assert stranger.get(f"/webhooks/endpoints/{created.json()['id']}/").status_code == 404
    assert stranger.get(f"/webhooks/events/{event.id}/").status_code == 404
    assert stranger.get("/webhooks/events/").json()["results"] == []
    assert (
        stranger.post(
            f"/webhooks/events/{event.id}/redeliver/",
            {"endpoint": created.json()["id"]},
            format="json",
        ).status_code
        == 404
    )

    payments_only = api_for(ApiClientFactory(scopes=["payments"]))
    response = payments_only.get("/webhooks/endpoints/")
    assert response.status_code == 403 and response.json()["error"]["code"] == "missing_scope"
