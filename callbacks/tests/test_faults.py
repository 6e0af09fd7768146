"""Fault injection against real PostgreSQL, Redis and worker processes (issue: nothing lost,
nothing double-counted). Each scenario ends with the invariant checker and exact counts.

These tests stop Redis and restart PostgreSQL on this machine: they are marked ``faults``
(run them alone with ``pytest -m faults``) and ``services``.
"""

from __future__ import annotations

import json
import os
import random
import signal
import threading
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from django.db import connection
from django.test import Client

from callbacks.models import CallbackState, InboundCallback
from core.models import hash_secret
from core.ops import find_violations
from payments.models import EventKind, EventSource, Payment, PaymentEvent, PaymentStatus
from testsupport import (
    celery_beat,
    celery_worker,
    restart_postgres,
    start_redis,
    stk_accepted,
    stk_success_body,
    stop_redis,
    wait_for,
)

pytestmark = [pytest.mark.services, pytest.mark.faults, pytest.mark.django_db(transaction=True)]

# Short intervals so recovery happens within the test's patience.
FAST = {
    "CALLBACK_REDRIVE_AFTER": "1",
    "CALLBACK_REDRIVE_INTERVAL": "1",
    "CALLBACK_DRAIN_INTERVAL": "1",
    "PAYMENTS_SWEEP_INTERVAL": "1",
    "CALLBACK_BATCH_SIZE": "25",
    "CALLBACK_ORPHAN_RETRY_DELAY": "0.5",
}


@pytest.fixture(autouse=True)
def _fast_settings(settings):
    """The test process (the web side here) uses the same short intervals as the workers."""
    settings.CALLBACK_REDRIVE_AFTER = 1.0
    settings.CALLBACK_REDRIVE_INTERVAL = 1.0
    settings.CALLBACK_BATCH_SIZE = 25
    settings.CALLBACK_ORPHAN_RETRY_DELAY = 0.5
    settings.CALLBACK_WAKEUP_INTERVAL = 0.1


@pytest.fixture(autouse=True)
def _services_restored():
    yield
    start_redis()
    connection.close()


def pending_payments(count: int, amount: int = 10) -> list[tuple[Payment, str]]:
    """``count`` PENDING payments with their callback tokens, with the events the transition
    function would have written (created in bulk: the scenarios need thousands)."""
    rows, tokens = [], []
    for n in range(count):
        token = uuid.uuid4().hex + uuid.uuid4().hex
        tokens.append(token)
        rows.append(
            Payment(
                amount=amount,
                phone_number="254712345678",
                account_reference=f"F{n}",
                description="fault",
                transaction_type="CustomerPayBillOnline",
                status=PaymentStatus.PENDING,
                checkout_request_id=f"ws_CO_FAULT_{uuid.uuid4().hex}",
                callback_token_hash=hash_secret(token),
            )
        )
    Payment.objects.bulk_create(rows, batch_size=1000)
    events = []
    for payment in rows:
        events.append(
            PaymentEvent(
                payment=payment,
                kind=EventKind.CREATED,
                to_status=PaymentStatus.INITIATED,
                source=EventSource.API,
            )
        )
        events.append(
            PaymentEvent(
                payment=payment,
                kind=EventKind.TRANSITION,
                from_status=PaymentStatus.INITIATED,
                to_status=PaymentStatus.PENDING,
                source=EventSource.DARAJA,
            )
        )
    PaymentEvent.objects.bulk_create(events, batch_size=2000)
    return list(zip(rows, tokens, strict=True))


def success_for(payment: Payment, n: int) -> bytes:
    return stk_success_body(
        checkout_request_id=payment.checkout_request_id,
        amount=int(payment.amount),
        receipt=f"UK{n:08d}",
    )


def fire(
    requests: list[tuple[str, bytes]], threads: int = 4, latencies: list[float] | None = None
) -> Counter[int]:
    """POST callbacks concurrently through Django's full request stack."""
    statuses: Counter[int] = Counter()
    lock = threading.Lock()

    def post(item: tuple[str, bytes]) -> None:
        token, body = item
        started = time.monotonic()
        try:
            status = (
                Client()
                .post(f"/payments/callback/{token}/", data=body, content_type="application/json")
                .status_code
            )
        finally:
            connection.close()
        with lock:
            statuses[status] += 1
            if latencies is not None:
                latencies.append(time.monotonic() - started)

    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(post, requests))
    return statuses


def waiting() -> int:
    return InboundCallback.objects.filter(state=CallbackState.RECEIVED).count()


def assert_books(expected: dict[str, int], callbacks: dict[str, int]) -> None:
    connection.close()
    statuses = Counter(Payment.objects.values_list("status", flat=True))
    assert dict(statuses) == expected
    states = Counter(InboundCallback.objects.values_list("state", flat=True))
    assert dict(states) == callbacks
    per_payment = Counter(
        PaymentEvent.objects.filter(
            kind=EventKind.TRANSITION, to_status=PaymentStatus.SUCCESS
        ).values_list("payment_id", flat=True)
    )
    assert all(count == 1 for count in per_payment.values())
    assert [str(v) for v in find_violations(settled=True)] == []


def test_worker_killed_with_sigkill_in_the_middle_of_a_burst():
    count = 1500
    payments = pending_payments(count)
    requests = [(token, success_for(payment, n)) for n, (payment, token) in enumerate(payments)]
    with celery_beat(**FAST), celery_worker(concurrency=2, **FAST) as worker:
        sender = threading.Thread(target=fire, args=(requests,))
        sender.start()
        wait_for(
            lambda: (
                InboundCallback.objects.exclude(state=CallbackState.RECEIVED).count() >= count // 5
            ),
            timeout=120,
        )
        os.killpg(worker.pid, signal.SIGKILL)
        done_at_kill = InboundCallback.objects.exclude(state=CallbackState.RECEIVED).count()
        sender.join()
        assert done_at_kill < count, "the kill landed after the burst: not a mid-burst kill"
        with celery_worker(concurrency=2, log_path=None, **FAST):
            wait_for(lambda: waiting() == 0, timeout=180, interval=0.5)
    assert_books({PaymentStatus.SUCCESS: count}, {CallbackState.PROCESSED: count})


def test_redis_stopped_while_callbacks_arrive_then_started_again():
    before, during = 200, 300
    payments = pending_payments(before + during)
    requests = [(token, success_for(payment, n)) for n, (payment, token) in enumerate(payments)]
    latencies: list[float] = []
    with celery_beat(**FAST), celery_worker(concurrency=2, supervised=True, **FAST):
        assert fire(requests[:before]) == Counter({200: before})
        stop_redis()
        try:
            assert fire(requests[before:], latencies=latencies) == Counter({200: during})
            assert (
                InboundCallback.objects.count() == before + during
            )  # all stored while Redis was down
        finally:
            start_redis()
        wait_for(lambda: waiting() == 0, timeout=180, interval=0.5)
    latencies.sort()
    assert latencies[len(latencies) // 2] < 1.0, (
        f"median callback answer {latencies[len(latencies) // 2]:.3f}s with Redis down"
    )
    assert_books(
        {PaymentStatus.SUCCESS: before + during}, {CallbackState.PROCESSED: before + during}
    )


def test_postgresql_restarted_while_workers_are_processing():
    count = 1500
    payments = pending_payments(count)
    requests = [(token, success_for(payment, n)) for n, (payment, token) in enumerate(payments)]
    with celery_beat(**FAST), celery_worker(concurrency=2, **FAST):
        assert fire(requests) == Counter({200: count})
        wait_for(
            lambda: InboundCallback.objects.exclude(state=CallbackState.RECEIVED).count() >= 50,
            timeout=60,
            interval=0.05,
        )
        connection.close()
        restart_postgres()
        connection.close()
        wait_for(lambda: waiting() == 0, timeout=180, interval=0.5)
    assert_books({PaymentStatus.SUCCESS: count}, {CallbackState.PROCESSED: count})


def test_a_storm_of_identical_callbacks_for_many_payments():
    payments_count, copies = 100, 10
    payments = pending_payments(payments_count)
    requests = [
        (token, success_for(payment, n))
        for n, (payment, token) in enumerate(payments)
        for _ in range(copies)
    ]
    random.Random(7).shuffle(requests)
    with celery_beat(**FAST), celery_worker(concurrency=2, **FAST):
        assert fire(requests, threads=8) == Counter({200: payments_count * copies})
        wait_for(lambda: waiting() == 0, timeout=120, interval=0.5)
    assert_books(
        {PaymentStatus.SUCCESS: payments_count},
        {
            CallbackState.PROCESSED: payments_count,
            CallbackState.DUPLICATE: payments_count * (copies - 1),
        },
    )


def test_callback_arriving_before_the_initiating_request_committed(api, daraja):
    web = Client()

    def daraja_calls_back_before_answering(request):
        # Daraja's callback reaches us while our STK Push request is still waiting for its
        # answer, so the payment is INITIATED with no CheckoutRequestID yet.
        payload = json.loads(request.content)
        token = payload["CallBackURL"].rstrip("/").rsplit("/", 1)[-1]
        body = stk_success_body(
            checkout_request_id="ws_CO_EARLY_BIRD", amount=payload["Amount"], receipt="UKEARLY001"
        )
        assert (
            web.post(
                f"/payments/callback/{token}/", data=body, content_type="application/json"
            ).status_code
            == 200
        )
        time.sleep(1.0)  # the worker sees the payment still INITIATED
        return httpx.Response(200, json=stk_accepted("ws_CO_EARLY_BIRD"))

    daraja.post("/mpesa/stkpush/v1/processrequest").mock(
        side_effect=daraja_calls_back_before_answering
    )
    with celery_beat(**FAST), celery_worker(concurrency=2, **FAST):
        created = api.post(
            "/payments/stk-push/",
            {
                "phone_number": "0712345678",
                "amount": 40,
                "account_reference": "E1",
                "description": "early",
            },
            format="json",
        )
        assert created.status_code == 201 and created.json()["status"] in {"PENDING", "SUCCESS"}
        wait_for(lambda: waiting() == 0, timeout=60)
    callback = InboundCallback.objects.get()
    assert callback.attempts >= 1
    assert_books({PaymentStatus.SUCCESS: 1}, {CallbackState.PROCESSED: 1})


def test_callbacks_that_never_arrive_are_resolved_by_the_sweeper_against_the_simulator(
    api, settings, live_server
):
    """Real processes: the web side, the simulator, a worker and beat. The simulator takes the
    payments but never calls back; the beat's sweeper asks with STK Query and settles them."""
    from simulator import SimulatorConfig, start_in_thread

    server, base_url = start_in_thread(
        port=0, config=SimulatorConfig(callback_delay=0.2, seed=7, log_requests=False)
    )
    settings.MPESA_BASE_URL = base_url
    settings.MPESA_CALLBACK_URL = f"{live_server.url}/payments/callback/"
    sweeper = {
        **FAST,
        "MPESA_BASE_URL": base_url,
        "PAYMENTS_QUERY_AFTER": "1",
        "PAYMENTS_QUERY_BACKOFF_BASE": "0.5",
        "PAYMENTS_QUERY_BACKOFF_MAX": "2",
    }
    try:
        # Paid but never called back (…40); cancelled, but its callback is lost by scripting.
        server.simulator.add_script(
            {"phone": "254711000032", "result_code": "1032", "deliver": False}
        )
        with celery_beat(**sweeper), celery_worker(concurrency=2, **sweeper):
            paid = api.post(
                "/payments/stk-push/",
                {
                    "phone_number": "254711000040",
                    "amount": 30,
                    "account_reference": "N1",
                    "description": "never",
                },
                format="json",
            ).json()
            lost = api.post(
                "/payments/stk-push/",
                {
                    "phone_number": "254711000032",
                    "amount": 31,
                    "account_reference": "N2",
                    "description": "never",
                },
                format="json",
            ).json()
            assert paid["status"] == lost["status"] == "PENDING"
            wait_for(
                lambda: (
                    connection.close()
                    or Payment.objects.filter(status=PaymentStatus.PENDING).count() == 0
                ),
                timeout=90,
                interval=0.5,
            )
    finally:
        server.shutdown()
    assert Payment.objects.get(pk=paid["id"]).status == PaymentStatus.SUCCESS
    failed = Payment.objects.get(pk=lost["id"])
    assert failed.status == PaymentStatus.FAILED and failed.result_code == "1032"
    for payment in Payment.objects.all():
        assert payment.events.filter(kind=EventKind.TRANSITION).last().source == "query"
    assert InboundCallback.objects.count() == 0
    assert [str(v) for v in find_violations(settled=True)] == []
