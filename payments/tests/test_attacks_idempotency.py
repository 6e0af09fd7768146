"""Attacks on Idempotency-Key: a request killed mid-push, a write failing after Daraja
accepted, keys kept forever. Each checks what a retrying merchant sees and how many STK
Pushes reached Daraja: never two for one key."""

from __future__ import annotations

import json
import signal
import threading
from collections.abc import Iterator
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
from django.conf import settings
from django.db import OperationalError, connection
from django.utils import timezone

from core.models import IdempotencyKey
from core.tasks import purge_idempotency_keys
from mpesa_project.celery import app as celery_app
from payments import services as payment_services
from payments.models import EventKind, Payment, PaymentStatus
from payments.services import initiation
from testsupport import stk_accepted, stop_process, wait_for, web_server

pytestmark = pytest.mark.django_db

VALID = {
    "phone_number": "0712345678",
    "amount": 100,
    "account_reference": "ORDER1",
    "description": "Test",
}


def stk_route(daraja: Any) -> Any:
    counter = iter(range(1, 10_000))
    return daraja.post("/mpesa/stkpush/v1/processrequest").mock(
        side_effect=lambda request: httpx.Response(
            200, json=stk_accepted(f"ws_CO_IDEM{next(counter):04d}")
        )
    )


def push(api: Any, key: str) -> Any:
    return api.post("/payments/stk-push/", VALID, format="json", HTTP_IDEMPOTENCY_KEY=key)


def end_leases() -> None:
    """Time passes beyond IDEMPOTENCY_LEASE_SECONDS for every key in progress."""
    IdempotencyKey.objects.update(lease_expires_at=timezone.now() - timedelta(seconds=1))


class WorkerKilled(BaseException):
    """What a killed process looks like from inside: nothing after it runs, no `except
    Exception` handler included."""


# --- (a) a request that dies mid-push ------------------------------------------------------


def test_a_key_whose_request_died_mid_push_answers_with_its_payment_after_the_lease(api, daraja):
    pushes = []

    def dies(request: Any) -> httpx.Response:
        pushes.append(request)
        raise WorkerKilled

    daraja.post("/mpesa/stkpush/v1/processrequest").mock(side_effect=dies)
    with pytest.raises(WorkerKilled):
        push(api, "order-killed")
    assert len(pushes) == 1
    payment = Payment.objects.get()

    within = push(api, "order-killed")
    assert within.status_code == 409
    assert within.json()["error"]["code"] == "idempotency_key_in_progress"

    end_leases()
    after = push(api, "order-killed")
    assert after.status_code == 202, after.content
    assert after.json()["id"] == str(payment.pk)
    assert after.json()["status"] == "INITIATED"
    assert after["Idempotent-Replayed"] == "true"
    again = push(api, "order-killed")
    assert (again.status_code, again.json()) == (202, after.json())
    assert len(pushes) == 1 and Payment.objects.count() == 1
    payment.refresh_from_db()
    assert payment.initiation_unknown
    notes = payment.events.filter(kind=EventKind.NOTE).values_list("reason", flat=True)
    assert [reason for reason in notes if "outcome unknown" in reason]


def test_a_key_whose_request_died_before_making_a_payment_is_taken_again(api, daraja):
    route = stk_route(daraja)

    def dies(**kwargs: Any) -> Any:
        raise WorkerKilled

    # The request claimed the key, then its process died before the payment was written.
    with pytest.MonkeyPatch.context() as patch, pytest.raises(WorkerKilled):
        patch.setattr(initiation, "payment_create", dies)
        push(api, "order-early")
    assert Payment.objects.count() == 0
    assert push(api, "order-early").status_code == 409
    assert route.call_count == 0

    end_leases()
    taken = push(api, "order-early")
    assert taken.status_code == 201, taken.content
    assert taken.json()["status"] == "PENDING"
    replay = push(api, "order-early")
    assert replay["Idempotent-Replayed"] == "true" and replay.json() == taken.json()
    assert route.call_count == 1 and Payment.objects.count() == 1


def test_a_pending_payment_whose_key_was_never_completed_is_answered_as_it_stands(api, daraja):
    """The request recorded PENDING, then died before completing the key."""
    route = stk_route(daraja)
    original = payment_services.payment_initiate

    def initiate_then_die(**kwargs: Any) -> Payment:
        original(**kwargs)
        raise WorkerKilled

    with (
        pytest.MonkeyPatch.context() as patch,
        pytest.raises(WorkerKilled),
    ):
        patch.setattr("payments.api.payment_initiate", initiate_then_die)
        push(api, "order-late")
    end_leases()
    after = push(api, "order-late")
    assert after.status_code == 201 and after.json()["status"] == "PENDING"
    assert route.call_count == 1
    assert not Payment.objects.get().initiation_unknown


# --- (b) an error after Daraja accepted ----------------------------------------------------


def test_a_failed_pending_write_after_daraja_accepted_is_not_pushed_again(api, daraja):
    route = stk_route(daraja)
    original = payment_services.payment_transition

    def failing_pending(**kwargs: Any) -> Any:
        if kwargs["to_status"] == PaymentStatus.PENDING:
            raise OperationalError("server closed the connection unexpectedly")
        return original(**kwargs)

    api.raise_request_exception = False
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(initiation, "payment_transition", failing_pending)
        first = push(api, "order-db-error")
    assert first.status_code == 500
    assert route.call_count == 1

    retry = push(api, "order-db-error")
    assert retry.status_code == 202, retry.content
    assert retry["Idempotent-Replayed"] == "true"
    payment = Payment.objects.get()
    assert retry.json()["id"] == str(payment.pk)
    assert payment.status == PaymentStatus.INITIATED and payment.initiation_unknown
    assert route.call_count == 1, "a retry with the same key sent a second STK Push"


def test_a_database_trigger_failing_the_pending_write_on_postgresql(api, daraja):
    """The same through the database itself: a trigger refuses the PENDING update."""
    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL (a PL/pgSQL trigger)")
    route = stk_route(daraja)
    with connection.cursor() as cursor:
        cursor.execute(
            """
            CREATE FUNCTION test_refuse_pending() RETURNS trigger AS $$
            BEGIN
                IF NEW.status = 'PENDING' THEN RAISE EXCEPTION 'injected failure'; END IF;
                RETURN NEW;
            END $$ LANGUAGE plpgsql;
            CREATE TRIGGER test_refuse_pending BEFORE UPDATE ON payments_payment
                FOR EACH ROW EXECUTE FUNCTION test_refuse_pending();
            """
        )
    api.raise_request_exception = False
    assert push(api, "order-trigger").status_code == 500
    with connection.cursor() as cursor:
        cursor.execute("DROP TRIGGER test_refuse_pending ON payments_payment")
    retry = push(api, "order-trigger")
    assert retry.status_code == 202 and retry.json()["status"] == "INITIATED"
    assert route.call_count == 1 and Payment.objects.count() == 1


def test_an_error_before_any_payment_releases_the_key(api, daraja):
    route = stk_route(daraja)

    def no_payment(**kwargs: Any) -> Any:
        raise OperationalError("could not connect to server")

    api.raise_request_exception = False
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(initiation, "payment_create", no_payment)
        assert push(api, "order-early-error").status_code == 500
    assert route.call_count == 0
    assert push(api, "order-early-error").status_code == 201
    assert route.call_count == 1


# --- (c) old keys are purged ---------------------------------------------------------------


def test_keys_older_than_the_retention_are_purged_by_the_beat_task(api, daraja, settings):
    route = stk_route(daraja)
    push(api, "old")
    push(api, "recent")
    push(api, "old-still-leased")
    old = timezone.now() - timedelta(seconds=settings.IDEMPOTENCY_KEY_RETENTION_SECONDS + 60)
    IdempotencyKey.objects.filter(key__startswith="old").update(created_at=old)
    IdempotencyKey.objects.filter(key="old-still-leased").update(
        state=IdempotencyKey.State.IN_PROGRESS,
        lease_expires_at=timezone.now() + timedelta(seconds=30),
    )

    schedule = {entry["task"] for entry in settings.CELERY_BEAT_SCHEDULE.values()}
    assert "core.tasks.purge_idempotency_keys" in schedule
    assert "core.tasks.purge_idempotency_keys" in celery_app.tasks
    assert purge_idempotency_keys.delay().get() == 1

    assert sorted(IdempotencyKey.objects.values_list("key", flat=True)) == [
        "old-still-leased",
        "recent",
    ]
    assert push(api, "recent")["Idempotent-Replayed"] == "true"
    # Past the retention a key is forgotten: the same key is a new request.
    assert push(api, "old").status_code == 201
    assert route.call_count == 4


def test_the_lease_must_outlast_daraja_timeouts():
    import subprocess
    import sys

    from testsupport import REPO_ROOT, subprocess_env

    result = subprocess.run(
        [sys.executable, "-c", "import django; django.setup()"],
        env=subprocess_env(
            DJANGO_SETTINGS_MODULE="mpesa_project.settings",
            MPESA_CONNECT_TIMEOUT="5",
            MPESA_READ_TIMEOUT="30",
            IDEMPOTENCY_LEASE_SECONDS="60",
        ),
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "IDEMPOTENCY_LEASE_SECONDS=60 must be longer" in result.stderr


# --- (a) with a real process: SIGKILL while Daraja holds the push -------------------------


class HangingDaraja(ThreadingHTTPServer):
    """A Daraja stand-in: OAuth answers; every STK Push is counted and held until released."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _HangingHandler)
        self.pushes: list[dict[str, Any]] = []
        self.release = threading.Event()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _HangingHandler(BaseHTTPRequestHandler):
    server: HangingDaraja

    def log_message(self, *args: Any) -> None:
        pass

    def _json(self, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        self._json({"access_token": "stand-in-token", "expires_in": "3599"})

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", "0"))
        self.server.pushes.append(json.loads(self.rfile.read(length)))
        self.server.release.wait(timeout=60)
        self._json(stk_accepted(f"ws_CO_HANG{len(self.server.pushes):04d}"))


@pytest.fixture
def hanging_daraja() -> Iterator[HangingDaraja]:
    server = HangingDaraja()
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    yield server
    server.release.set()
    server.shutdown()
    thread.join(timeout=10)


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_a_web_process_killed_during_the_push(api_key, hanging_daraja):
    lease = 15.0
    env = {
        "MPESA_BASE_URL": hanging_daraja.base_url,
        # A lease longer than 4 x (connect + read), as the settings require.
        "MPESA_CONNECT_TIMEOUT": "0.2",
        "MPESA_READ_TIMEOUT": "0.7",
        "IDEMPOTENCY_LEASE_SECONDS": str(lease),
        "CACHE_URL": "locmem://",
        "MPESA_CALLBACK_URL": "http://127.0.0.1:9/payments/callback/",
    }
    headers = {"Authorization": f"Bearer {api_key.key}", "Idempotency-Key": "order-sigkill"}
    with web_server(**env) as first:
        sent = threading.Thread(
            target=lambda: _post_ignoring_errors(first.url, headers), daemon=True
        )
        sent.start()
        wait_for(lambda: len(hanging_daraja.pushes) == 1, timeout=30)
        stop_process(first.process, signal.SIGKILL)
        sent.join(timeout=10)
    hanging_daraja.release.set()  # later pushes, if any, are answered at once

    payment = Payment.objects.get()
    assert payment.status == PaymentStatus.INITIATED
    with web_server(**env) as second, httpx.Client(base_url=second.url, timeout=30) as client:
        # Within the lease the key is still the dead request's (checked only when the new
        # server started well within it: on a busy machine it may not have).
        lease_ends = IdempotencyKey.objects.get().lease_expires_at
        assert lease_ends is not None
        if timezone.now() < lease_ends - timedelta(seconds=3):
            busy = client.post("/payments/stk-push/", json=VALID, headers=headers)
            assert busy.status_code == 409, busy.text

        def answered() -> httpx.Response | None:
            response = client.post("/payments/stk-push/", json=VALID, headers=headers)
            return response if response.status_code != 409 else None

        retry = wait_for(answered, timeout=lease + 30, interval=0.5)
    assert retry.status_code == 202, retry.text
    assert retry.json()["id"] == str(payment.pk) and retry.json()["status"] == "INITIATED"
    assert len(hanging_daraja.pushes) == 1, "the retry sent a second STK Push"
    payment.refresh_from_db()
    assert payment.initiation_unknown


def _post_ignoring_errors(url: str, headers: dict[str, str]) -> None:
    try:
        httpx.post(f"{url}/payments/stk-push/", json=VALID, headers=headers, timeout=30)
    except httpx.HTTPError:
        pass  # the server was killed under it


def test_settings_default_lease_outlasts_the_slowest_push():
    slowest = 4 * (settings.MPESA_CONNECT_TIMEOUT + settings.MPESA_READ_TIMEOUT)
    assert settings.IDEMPOTENCY_LEASE_SECONDS > slowest
    assert settings.IDEMPOTENCY_KEY_RETENTION_SECONDS == 24 * 3600
