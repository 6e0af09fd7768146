"""/health/live and /health/ready: what a load balancer or Kubernetes probe sees, with the
database, the broker, a worker and beat healthy or not; and with a real beat killed."""

import json
import os
import signal
from datetime import timedelta

import pytest
from django.db import connection
from django.test import Client
from django.utils import timezone

from core.health import BEAT, WORKER, heartbeat
from core.models import Heartbeat
from testsupport import celery_beat, celery_worker, start_redis, stop_redis, wait_for

JSON = {"HTTP_ACCEPT": "application/json"}


def _ready(client) -> tuple[int, dict[str, str]]:
    response = client.get("/health/ready", secure=True, **JSON)
    return response.status_code, json.loads(response.content)


def _failing(body: dict[str, str]) -> dict[str, str]:
    return {check: state for check, state in body.items() if state != "OK"}


@pytest.mark.django_db
def test_live_answers_without_touching_the_database(client, django_assert_num_queries):
    with django_assert_num_queries(0):
        response = client.get("/health/live", secure=True)
    assert response.status_code == 200 and response.json() == {"status": "ok"}


@pytest.mark.django_db(transaction=True)
def test_ready_when_every_part_is_alive(client):
    heartbeat(BEAT)
    heartbeat(WORKER)
    status, body = _ready(client)
    assert status == 200, body
    assert set(body) == {
        "Database(alias='default')",
        "Cache(alias='default')",
        "Broker()",
        "Worker()",
        "Beat()",
    }
    assert _failing(body) == {}


@pytest.mark.django_db(transaction=True)
def test_ready_names_a_silent_beat_and_a_worker_never_seen(client, settings):
    settings.HEALTH_BEAT_MAX_AGE = 60
    heartbeat(BEAT)
    Heartbeat.objects.filter(name=BEAT).update(at=timezone.now() - timedelta(seconds=300))
    status, body = _ready(client)
    assert status == 500
    failing = _failing(body)
    assert set(failing) == {"Beat()", "Worker()"}
    assert failing["Beat()"].startswith("Unavailable: celery beat silent for 300 s")
    assert failing["Worker()"] == "Unavailable: celery worker (heartbeat task) never reported"


@pytest.mark.services
@pytest.mark.django_db(transaction=True)
def test_ready_names_the_broker_and_the_cache_while_redis_is_down(client):
    heartbeat(BEAT)
    heartbeat(WORKER)
    stop_redis()
    try:
        status, body = _ready(client)
    finally:
        start_redis()
    assert status == 500
    failing = _failing(body)
    assert set(failing) == {"Broker()", "Cache(alias='default')"}, body
    assert failing["Broker()"].startswith("Unavailable: broker unreachable")
    assert _ready(client)[0] == 200


def test_health_routes_are_not_redirected_to_https(client, settings):
    settings.SECURE_SSL_REDIRECT = True
    assert client.get("/health/live").status_code == 200


@pytest.mark.services
@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_killing_beat_turns_ready_red(settings):
    """A real beat and worker: ready turns green once both report; after beat is killed with
    SIGKILL, ready names beat as silent within its limit."""
    settings.HEALTH_BEAT_MAX_AGE = 4
    settings.HEALTH_WORKER_MAX_AGE = 30
    fast = {"HEARTBEAT_INTERVAL": "1"}
    client = Client()
    try:
        with celery_worker(concurrency=1, **fast), celery_beat(**fast) as beat:
            wait_for(lambda: _ready(client)[0] == 200, timeout=60)
            os.killpg(beat.pid, signal.SIGKILL)
            beat.wait(timeout=10)
            _, body = wait_for(lambda: (r := _ready(client))[0] == 500 and r, timeout=30)
            failing = _failing(body)
            assert list(failing) == ["Beat()"], body
            assert failing["Beat()"].startswith("Unavailable: celery beat silent for")
    finally:
        connection.close()
