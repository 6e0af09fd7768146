"""Attack: Redis (the cache and the broker) goes away. The database is the truth and Redis a
wake-up call, so the merchant API keeps answering: throttles fail open (logged, counted), the
Daraja token is fetched by the process itself, and wake-ups that cannot be published are left
to the beat drain.

The first tests point the cache at a port where nothing listens; the last one runs real
processes (a web server, a Celery worker and beat, the Daraja simulator) against a private
redis-server that it stops and starts again (never the shared one).
"""

from __future__ import annotations

import re
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from django.db import connection
from django.urls import URLPattern, URLResolver, get_resolver
from rest_framework.views import APIView

from callbacks.models import CallbackState, InboundCallback
from core.models import Scope
from core.services import api_client_create
from daraja.client import DarajaClient, DarajaConfig
from payments.models import Payment, PaymentStatus
from testsupport import (
    celery_beat,
    celery_worker,
    free_port,
    private_redis,
    stk_accepted,
    wait_for,
    web_server,
)

pytestmark = pytest.mark.django_db

VALID = {
    "phone_number": "0712345678",
    "amount": 100,
    "account_reference": "ORDER1",
    "description": "Test",
}


@pytest.fixture
def cache_unreachable(settings: Any) -> str:
    """The shared cache points at a Redis port where nothing listens (connection refused)."""
    url = f"redis://127.0.0.1:{free_port()}/0"
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": url,
            "OPTIONS": {"socket_timeout": 2, "socket_connect_timeout": 2},
        }
    }
    return url


def metric(api: Any, name: str) -> float:
    text = api.get("/metrics").content.decode()
    found = re.search(rf"^{re.escape(name)} (\S+)$", text, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


def test_throttles_fail_open_when_the_cache_is_unreachable(api, cache_unreachable, settings):
    settings.DEBUG = True  # /metrics without a token
    before = metric(api, 'mpesa_degraded_total{what="throttle"}')
    for _ in range(3):
        response = api.get("/payments/")
        assert response.status_code == 200, response.content
    after = metric(api, 'mpesa_degraded_total{what="throttle"}')
    assert after >= before + 3


def test_stk_push_works_with_the_token_cache_unreachable(api, cache_unreachable, daraja):
    oauth = daraja.get("/oauth/v1/generate").respond(
        200, json={"access_token": "test-token", "expires_in": "3599"}
    )
    counter = iter(range(1, 100))
    push = daraja.post("/mpesa/stkpush/v1/processrequest").mock(
        side_effect=lambda request: httpx.Response(
            200, json=stk_accepted(f"ws_CO_NOREDIS{next(counter):04d}")
        )
    )
    for _ in range(3):
        response = api.post("/payments/stk-push/", VALID, format="json")
        assert response.status_code == 201, response.content
        assert response.json()["status"] == "PENDING"
    assert push.call_count == 3
    # The process keeps the token it fetched: one OAuth call, not one per push.
    assert oauth.call_count == 1
    assert push.calls.last.request.headers["Authorization"] == "Bearer test-token"


def test_one_token_fetch_per_process_while_the_cache_is_unreachable(cache_unreachable, daraja):
    def slow_token(request: Any) -> httpx.Response:
        time.sleep(0.3)
        return httpx.Response(200, json={"access_token": "slow-token", "expires_in": "3599"})

    oauth = daraja.get("/oauth/v1/generate").mock(side_effect=slow_token)
    client = DarajaClient(DarajaConfig.from_settings())
    tokens: list[str] = []
    threads = [
        threading.Thread(target=lambda: tokens.append(client.access_token())) for _ in range(6)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert tokens == ["slow-token"] * 6
    assert oauth.call_count == 1


def test_a_rejected_token_is_dropped_from_the_process_too(cache_unreachable, daraja):
    tokens = iter(["first-token", "second-token"])
    daraja.get("/oauth/v1/generate").mock(
        side_effect=lambda request: httpx.Response(
            200, json={"access_token": next(tokens), "expires_in": "3599"}
        )
    )
    seen: list[str] = []

    def answer(request: Any) -> httpx.Response:
        seen.append(request.headers["Authorization"])
        if len(seen) == 1:
            return httpx.Response(
                404, json={"requestId": "r", "errorCode": "404.001.03", "errorMessage": "Invalid"}
            )
        return httpx.Response(200, json=stk_accepted())

    daraja.post("/mpesa/stkpush/v1/processrequest").mock(side_effect=answer)
    client = DarajaClient(DarajaConfig.from_settings())
    client.stk_push(
        phone_number="254712345678",
        amount=10,  # type: ignore[arg-type]
        account_reference="A",
        description="B",
        callback_url="https://example.com/cb/x/",
    )
    assert seen == ["Bearer first-token", "Bearer second-token"]


# --- Real processes, a private Redis stopped and started again ------------------------------


def api_routes() -> list[tuple[str, list[str]]]:
    """Every DRF route of the project (path pattern with its parameters, and methods), read
    from the URL resolver so that a route added later is attacked too."""
    found: list[tuple[str, list[str]]] = []

    def walk(patterns: list[Any], prefix: str) -> None:
        for entry in patterns:
            text = prefix + str(entry.pattern)
            if isinstance(entry, URLResolver):
                walk(entry.url_patterns, text)
            elif isinstance(entry, URLPattern):
                view = getattr(entry.callback, "cls", None)
                if view is None or not issubclass(view, APIView):
                    continue
                actions = getattr(entry.callback, "actions", None)
                methods = (
                    sorted(actions)
                    if actions
                    else [m for m in ("get", "post", "put", "patch", "delete") if hasattr(view, m)]
                )
                found.append((text, methods))

    walk(get_resolver().url_patterns, "")
    return found


def concrete_path(pattern: str, values: dict[str, str]) -> str:
    """A path for a route pattern (``<converter:name>`` or regex groups), with real ids."""
    path = re.sub(r"\(\?P<(\w+)>[^)]*\)", lambda m: values.get(m.group(1), "1"), pattern)
    path = re.sub(r"<(?:\w+:)?(\w+)>", lambda m: values.get(m.group(1), "1"), path)
    return "/" + path.replace("^", "").replace("$", "").replace("\\", "")


@pytest.fixture
def simulator_server() -> Iterator[Any]:
    from simulator import SimulatorConfig, start_in_thread

    server, _ = start_in_thread(
        port=0, config=SimulatorConfig(callback_delay=0.5, seed=20261204, log_requests=False)
    )
    yield server
    server.shutdown()


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_the_api_answers_through_a_redis_outage_and_payments_complete_after(
    simulator_server, tmp_path: Path
):
    # Every scope, so that every route reaches its view.
    api_key = api_client_create(name="shop", scopes=[scope.value for scope in Scope])
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with private_redis(tmp_path / "redis") as redis:
        env = {
            "CELERY_BROKER_URL": redis.url(0),
            "CACHE_URL": redis.url(1),
            "MPESA_BASE_URL": simulator_server.base_url,
            "MPESA_CALLBACK_URL": f"{base}/payments/callback/",
            "CALLBACK_DRAIN_INTERVAL": "1",
            "CALLBACK_REDRIVE_INTERVAL": "2",
            "CALLBACK_REDRIVE_AFTER": "2",
            "METRICS_TOKEN": "outage-metrics-token",
        }
        headers = {"Authorization": f"Bearer {api_key.key}"}
        with (
            web_server(port=port, **env) as web,
            celery_worker(supervised=True, **env),
            celery_beat(**env),
            httpx.Client(base_url=web.url, headers=headers, timeout=30) as http,
        ):
            # Before the outage: a payment that completes, and a callback that failed.
            before = http.post("/payments/stk-push/", json=VALID)
            assert before.status_code == 201, before.text
            paid = before.json()["id"]
            wait_for(lambda: _status(paid) == PaymentStatus.SUCCESS, timeout=60)
            failed = InboundCallback.objects.create(
                body=b"{}",
                payment_id=paid,
                dedupe_key=uuid.uuid4().hex,
                state=CallbackState.FAILED,
                last_error="Traceback: injected",
            )

            redis.stop()
            values = {
                "pk": paid,
                "id": paid,
                "payment_id": paid,
                "callback_id": str(failed.pk),
                "token": "x" * 43,
            }
            answers: dict[str, int] = {}
            for pattern, methods in api_routes():
                path = concrete_path(pattern, values)
                for method in methods:
                    body = VALID if "stk-push" in path else {}
                    response = http.request(method.upper(), path, json=body)
                    answers[f"{method.upper()} {path}"] = response.status_code
            errors = {call: code for call, code in answers.items() if code >= 500}
            assert errors == {}, f"5xx while Redis was down: {errors}"
            # The walk reached the views (real ids, not 404s), wake-up publishing included.
            assert answers["GET /payments/"] == 200
            assert answers["POST /payments/stk-push/"] == 201
            assert answers[f"GET /payments/{paid}/"] == 200
            assert answers[f"GET /payments/{paid}/events/"] == 200
            assert answers[f"POST /payments/{paid}/callbacks/{failed.pk}/replay/"] == 202
            assert answers["GET /reconciliation/runs/"] == 200

            during = http.post("/payments/stk-push/", json=VALID)
            assert during.status_code == 201, during.text
            assert during.json()["status"] == "PENDING"
            made_during = during.json()["id"]
            # The simulator's callback is stored while Redis is down; its wake-up is not sent.
            token_hash = Payment.objects.get(pk=made_during).callback_token_hash
            wait_for(lambda: _stored(token_hash), timeout=30)
            assert _status(made_during) == PaymentStatus.PENDING
            metrics = httpx.get(
                f"{web.url}/metrics",
                headers={"Authorization": "Bearer outage-metrics-token"},
                timeout=10,
            ).text
            assert re.search(r'mpesa_degraded_total\{what="throttle"\} [1-9]', metrics)

            redis.start()
            wait_for(lambda: _status(made_during) == PaymentStatus.SUCCESS, timeout=90)
            # Every API route answers normally with Redis back.
            assert http.get("/payments/").status_code == 200


def _status(payment_id: str) -> str:
    connection.close()
    return Payment.objects.get(pk=payment_id).status


def _stored(token_hash: str) -> bool:
    connection.close()
    return InboundCallback.objects.filter(token_hash=token_hash).exists()


def test_the_real_process_test_covers_every_api_route():
    """The route walk finds the merchant API's routes (a guard against a walk that finds
    nothing and so attacks nothing)."""
    patterns = [pattern for pattern, _ in api_routes()]
    assert any("stk-push" in pattern for pattern in patterns)
    assert any("replay" in pattern for pattern in patterns)
    assert any(pattern.startswith("reconciliation/") for pattern in patterns)
