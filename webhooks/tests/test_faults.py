"""Faults with real processes: a real worker and beat on PostgreSQL and Redis, and a real
receiver. Redis stopped while events are written, a worker killed with deliveries in flight,
a receiver that times out: every event is delivered at least once, none is lost."""

from __future__ import annotations

import os
import signal

import pytest
from django.db import connection

from events.models import Event
from testsupport import celery_beat, celery_worker, start_redis, stop_redis, wait_for
from testsupport.factories import ApiClientFactory, PaymentFactory
from testsupport.receiver import webhook_receiver
from webhooks.models import Attempt, Delivery, DeliveryState
from webhooks.services import endpoint_create

pytestmark = [
    pytest.mark.services,
    pytest.mark.faults,
    pytest.mark.worker,  # this process publishes to the real broker, as a web process does
    pytest.mark.django_db(transaction=True),
]

FAST = {
    "WEBHOOK_ALLOW_PRIVATE_TARGETS": "true",
    "WEBHOOK_REDRIVE_INTERVAL": "1",
    "WEBHOOK_TIMEOUT": "2",
    "WEBHOOK_PUMP_SECONDS": "1",
}


@pytest.fixture(autouse=True)
def _settings(settings):
    settings.WEBHOOK_ALLOW_PRIVATE_TARGETS = True
    settings.WEBHOOK_TIMEOUT = 2.0


@pytest.fixture(autouse=True)
def _services_restored():
    yield
    start_redis()
    connection.close()


def delivered_ids(receiver):
    with receiver.lock:
        return {request.headers["webhook-id"] for request in receiver.requests}


def test_events_written_while_redis_is_down_are_delivered_once_it_returns():
    merchant = ApiClientFactory(scopes=["payments", "webhooks"])
    with webhook_receiver() as receiver:
        endpoint_create(client=merchant, url=receiver.url)
        with celery_beat(**FAST), celery_worker(concurrency=2, supervised=True, **FAST):
            for _ in range(5):
                PaymentFactory(client=merchant)
            wait_for(lambda: len(delivered_ids(receiver)) >= 5, timeout=60)
            stop_redis()
            try:
                # The wake-ups cannot be published: the changes and their events commit anyway.
                for _ in range(20):
                    PaymentFactory(client=merchant, success=True)
                assert Event.objects.count() == 5 + 20 * 2
            finally:
                start_redis()
            wanted = set(Event.objects.values_list("id", flat=True))
            wait_for(lambda: delivered_ids(receiver) >= wanted, timeout=120, interval=0.5)
            # A request's answer is recorded by the pump's next loop, after it has arrived:
            # wait for the records too, while the worker runs.
            pending = Delivery.objects.exclude(state=DeliveryState.DELIVERED)
            wait_for(lambda: not pending.exists(), timeout=60, interval=0.5)
    assert set(Delivery.objects.values_list("state", flat=True)) == {DeliveryState.DELIVERED}


def test_a_worker_killed_with_deliveries_in_flight_loses_none():
    merchant = ApiClientFactory(scopes=["payments", "webhooks"])
    with webhook_receiver() as receiver:
        receiver.delay = 1.0  # every answer takes a second: deliveries are in flight
        endpoint_create(client=merchant, url=receiver.url)
        with celery_beat(**FAST), celery_worker(concurrency=2, **FAST) as worker:
            for _ in range(30):
                PaymentFactory(client=merchant)
            wait_for(lambda: len(receiver.requests) >= 3, timeout=60)
            os.killpg(worker.pid, signal.SIGKILL)
            in_flight = Delivery.objects.filter(state=DeliveryState.PENDING).count()
            assert in_flight > 0, "the kill landed after every delivery: not mid-flight"
            receiver.delay = 0.0
            with celery_worker(concurrency=2, log_path=None, **FAST):
                wanted = set(Event.objects.values_list("id", flat=True))
                wait_for(lambda: delivered_ids(receiver) >= wanted, timeout=120, interval=0.5)
                wait_for(
                    lambda: not Delivery.objects.exclude(state=DeliveryState.DELIVERED).exists(),
                    timeout=60,
                )
    assert len(wanted) == 30


def test_a_receiver_that_times_out_is_retried_and_the_others_are_not_held_up():
    merchant = ApiClientFactory(scopes=["payments", "webhooks"])
    with webhook_receiver() as slow, webhook_receiver() as fast:
        slow.delay = 3.0  # over WEBHOOK_TIMEOUT (2 s)
        slow_endpoint, _ = endpoint_create(client=merchant, url=slow.url)
        endpoint_create(client=merchant, url=fast.url)
        with celery_beat(**FAST), celery_worker(concurrency=2, **FAST):
            for _ in range(10):
                PaymentFactory(client=merchant)
            wanted = set(Event.objects.values_list("id", flat=True))
            wait_for(lambda: delivered_ids(fast) >= wanted, timeout=60, interval=0.2)
            wait_for(
                lambda: Attempt.objects.filter(
                    delivery__endpoint=slow_endpoint, error__startswith="timed out"
                ).exists(),
                timeout=60,
            )
    timed_out = Delivery.objects.filter(endpoint=slow_endpoint).exclude(last_error="")
    assert timed_out.exists() and all(d.state == DeliveryState.PENDING for d in timed_out)
    assert all("timed out" in d.last_error for d in timed_out)
