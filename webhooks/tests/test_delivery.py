"""Deliveries end to end, against a real HTTP receiver on 127.0.0.1: signed per Standard
Webhooks (checked with the official ``standardwebhooks`` package), retried on the schedule
with a controllable clock, recorded attempt by attempt, and never lost."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.utils import timezone
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from events.models import Event
from testsupport.dns import PUBLIC, fake_dns
from testsupport.factories import ApiClientFactory, PaymentFactory
from testsupport.receiver import webhook_receiver
from webhooks.models import Attempt, Delivery, DeliveryState, Endpoint
from webhooks.services import (
    MAX_ATTEMPTS,
    RETRY_DELAYS,
    endpoint_create,
    endpoint_secret_rotate,
    webhooks_pump,
)

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _local_targets(settings):
    settings.WEBHOOK_ALLOW_PRIVATE_TARGETS = True
    settings.WEBHOOK_TIMEOUT = 2.0


@pytest.fixture
def receiver():
    with webhook_receiver() as running:
        yield running


@pytest.fixture
def merchant():
    return ApiClientFactory(scopes=["payments", "webhooks"])


def test_a_success_arrives_signed_and_verifies_with_the_standard_library(receiver, merchant):
    endpoint, secret = endpoint_create(client=merchant, url=receiver.url)
    payment = PaymentFactory(client=merchant, success=True, receipt="UKR1HOOK01")

    result = webhooks_pump(seconds=2)

    assert result.delivered == 2  # payment.pending and payment.succeeded
    by_type = {}
    for request in receiver.requests:
        body = Webhook(secret).verify(request.body, request.headers)
        by_type[body["type"]] = (request, body)
    request, body = by_type["payment.succeeded"]
    assert body["data"]["id"] == str(payment.pk) and body["data"]["status"] == "SUCCESS"
    assert body["data"]["mpesa_receipt_number"] == "UKR1HOOK01"
    event = Event.objects.get(object_id=str(payment.pk), type="payment.succeeded")
    assert request.headers["webhook-id"] == event.id == body["id"]
    assert body["api_version"] == event.api_version
    assert set(Delivery.objects.values_list("state", flat=True)) == {DeliveryState.DELIVERED}
    assert Attempt.objects.filter(status_code=200).count() == 2
    assert Endpoint.objects.get(pk=endpoint.pk).failing_since is None


def test_forged_tampered_and_stale_deliveries_are_refused_by_the_receivers_check(
    receiver, merchant
):
    _, secret = endpoint_create(client=merchant, url=receiver.url)
    PaymentFactory(client=merchant)
    webhooks_pump(seconds=2)
    (request,) = receiver.requests
    verifier = Webhook(secret)
    verifier.verify(request.body, request.headers)

    with pytest.raises(WebhookVerificationError):
        verifier.verify(request.body.replace(b"PENDING", b"SUCCESS"), request.headers)
    with pytest.raises(WebhookVerificationError):
        Webhook("whsec_" + "A" * 43 + "=").verify(request.body, request.headers)
    with pytest.raises(WebhookVerificationError):
        verifier.verify(request.body, {**request.headers, "webhook-id": "evt_other"})
    with (
        time_machine.travel(datetime.now(UTC) + timedelta(minutes=10)),
        pytest.raises(WebhookVerificationError, match="too old"),
    ):
        verifier.verify(request.body, request.headers)


def test_during_a_rotation_both_secrets_sign_then_only_the_new_one(receiver, merchant):
    endpoint, old = endpoint_create(client=merchant, url=receiver.url)
    new = endpoint_secret_rotate(endpoint, overlap=timedelta(hours=1))
    PaymentFactory(client=merchant)
    webhooks_pump(seconds=2)
    (during,) = receiver.requests
    assert len(during.headers["webhook-signature"].split(" ")) == 2
    Webhook(old).verify(during.body, during.headers)
    Webhook(new).verify(during.body, during.headers)

    with time_machine.travel(timezone.now() + timedelta(hours=2)):
        PaymentFactory(client=merchant)
        webhooks_pump(seconds=2)
        after = receiver.requests[-1]
        assert len(after.headers["webhook-signature"].split(" ")) == 1
        Webhook(new).verify(after.body, after.headers)
        with pytest.raises(WebhookVerificationError):
            Webhook(old).verify(after.body, after.headers)


def test_failures_are_retried_on_the_schedule_until_delivered(receiver, merchant):
    receiver.statuses = [500, 503, 200]
    endpoint_create(client=merchant, url=receiver.url, event_types=["payment.pending"])
    start = timezone.now()
    with time_machine.travel(start, tick=False) as clock:
        PaymentFactory(client=merchant)
        webhooks_pump(seconds=1)
        delivery = Delivery.objects.get()
        assert (delivery.state, delivery.attempts, delivery.last_status_code) == (
            DeliveryState.PENDING,
            1,
            500,
        )
        wait = delivery.next_attempt_at - start
        assert RETRY_DELAYS[0] <= wait <= RETRY_DELAYS[0] * 1.1

        webhooks_pump(seconds=1)  # not due yet: nothing is sent
        assert len(receiver.requests) == 1

        clock.move_to(delivery.next_attempt_at)
        webhooks_pump(seconds=1)
        delivery.refresh_from_db()
        assert (delivery.attempts, delivery.last_status_code) == (2, 503)
        assert delivery.next_attempt_at - timezone.now() >= RETRY_DELAYS[1]

        clock.move_to(delivery.next_attempt_at)
        webhooks_pump(seconds=1)
    delivery.refresh_from_db()
    assert (delivery.state, delivery.attempts) == (DeliveryState.DELIVERED, 3)
    assert list(
        delivery.attempt_set.order_by("started_at").values_list("status_code", flat=True)
    ) == [
        500,
        503,
        200,
    ]
    assert len({request.headers["webhook-id"] for request in receiver.requests}) == 1


def test_a_dead_receiver_fails_the_delivery_after_three_days_and_disables_the_endpoint(
    merchant, settings
):
    settings.WEBHOOK_DISABLE_AFTER_HOURS = 48
    settings.WEBHOOK_CONNECT_TIMEOUT = 0.5
    with webhook_receiver() as gone:
        url = gone.url  # the port is closed once the receiver stops
    endpoint, _ = endpoint_create(client=merchant, url=url, event_types=["payment.pending"])
    start = timezone.now()
    with time_machine.travel(start, tick=False) as clock:
        PaymentFactory(client=merchant)
        webhooks_pump(seconds=1)
        delivery = Delivery.objects.get()
        while delivery.state == DeliveryState.PENDING and Endpoint.objects.get().enabled:
            clock.move_to(delivery.next_attempt_at)
            webhooks_pump(seconds=1)
            delivery.refresh_from_db()
        endpoint.refresh_from_db()
        # Disabled after 48 hours of failures, before the retries ran out.
        assert (
            not endpoint.enabled and "every attempt failed for 48 hours" in endpoint.disabled_reason
        )
        assert timedelta(hours=48) <= timezone.now() - start < timedelta(days=3)
        assert delivery.state == DeliveryState.PENDING
        assert Event.objects.filter(type="webhook.endpoint_disabled").count() == 1
        assert "ConnectError" in delivery.last_error

        # Enabled again and still dead: the delivery runs out of retries and fails.
        endpoint.enabled = True
        endpoint.failing_since = None
        endpoint.save()
        settings.WEBHOOK_DISABLE_AFTER_HOURS = 1000
        while delivery.state == DeliveryState.PENDING:
            clock.move_to(delivery.next_attempt_at)
            webhooks_pump(seconds=1)
            delivery.refresh_from_db()
    assert delivery.state == DeliveryState.FAILED and delivery.attempts == MAX_ATTEMPTS
    total = sum(RETRY_DELAYS, timedelta())
    assert timedelta(days=3) < total < timedelta(days=3.5)


def test_a_redirect_is_not_followed_and_the_answer_kept_is_capped(receiver, merchant, settings):
    settings.WEBHOOK_RESPONSE_KEEP_BYTES = 16
    receiver.statuses = [302]
    receiver.answer = b"x" * 5000
    endpoint_create(client=merchant, url=receiver.url)
    PaymentFactory(client=merchant)
    webhooks_pump(seconds=1)
    attempt = Attempt.objects.get()
    assert attempt.status_code == 302 and "redirects are not followed" in attempt.error
    assert attempt.response_body == "x" * 16
    assert len(receiver.requests) == 1


def test_only_the_merchants_enabled_endpoints_wanting_the_type_get_it(receiver, merchant):
    other = ApiClientFactory(scopes=["webhooks"])
    endpoint_create(client=merchant, url=receiver.url, event_types=["payment.succeeded"])
    endpoint_create(client=other, url=receiver.url)
    disabled, _ = endpoint_create(client=merchant, url=receiver.url)
    Endpoint.objects.filter(pk=disabled.pk).update(enabled=False)

    PaymentFactory(client=merchant, success=True)
    webhooks_pump(seconds=2)

    bodies = [json.loads(request.body) for request in receiver.requests]
    assert [body["type"] for body in bodies] == ["payment.succeeded"]
    # A disabled endpoint gets no deliveries (its events can be redelivered to it later).
    assert not Delivery.objects.filter(endpoint=disabled).exists()


def test_a_host_that_turns_private_after_it_was_saved_is_refused_when_sending(
    merchant, settings, monkeypatch
):
    """Production: the name was public when the endpoint was saved; at delivery it resolves to
    a private address, and the transport refuses to connect (the attempt says why)."""
    settings.WEBHOOK_ALLOW_PRIVATE_TARGETS = False
    answers = {"hooks.example.com": [PUBLIC]}
    fake_dns(monkeypatch, {"hooks.example.com": lambda: answers["hooks.example.com"]})
    endpoint_create(client=merchant, url="https://hooks.example.com/mpesa")
    answers["hooks.example.com"] = ["10.1.2.3"]
    PaymentFactory(client=merchant, success=True)

    result = webhooks_pump(seconds=2)

    assert result.attempted == 2 and result.delivered == 0
    errors = set(Attempt.objects.values_list("error", flat=True))
    assert len(errors) == 1
    (error,) = errors
    assert error.startswith("refused:") and "10.1.2.3" in error, error


def test_a_delivery_is_timed_from_its_event_in_the_metrics(receiver, merchant, client, settings):
    """mpesa_webhook_delivery_lag_seconds: one observation per delivered event, measured from
    the event's creation (here made 30 s old)."""
    import re

    settings.METRICS_TOKEN = "t"

    def lag() -> tuple[float, float]:
        text = client.get("/metrics", HTTP_AUTHORIZATION="Bearer t", secure=True).content.decode()
        count = re.search(r"^mpesa_webhook_delivery_lag_seconds_count (\S+)$", text, re.M)
        over = re.search(
            r'^mpesa_webhook_delivery_lag_seconds_bucket\{le="10.0"\} (\S+)$', text, re.M
        )
        return (float(count.group(1)) if count else 0.0, float(over.group(1)) if over else 0.0)

    endpoint_create(client=merchant, url=receiver.url)
    PaymentFactory(client=merchant, success=True, receipt="UKR1LAG001")
    Event.objects.update(created_at=timezone.now() - timedelta(seconds=30))
    (count_before, fast_before) = lag()
    assert webhooks_pump(seconds=2).delivered == 2
    count_after, fast_after = lag()
    assert count_after == count_before + 2
    assert fast_after == fast_before  # both took more than 10 s: counted above that bucket
