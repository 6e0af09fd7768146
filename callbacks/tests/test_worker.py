"""Integration: real Celery worker processes against the configured database and broker.

Run on both stacks: the embedded one (SQLite file + filesystem broker) and, in CI,
PostgreSQL + Redis. Nothing here runs tasks eagerly: the callback view publishes after
commit, a separate worker process consumes, exactly as in production.
"""

import json
import threading

import pytest
from django.db import connection
from django.test import Client

from callbacks.models import CallbackState, InboundCallback
from callbacks.services import callback_process
from payments.models import EventKind, Payment, PaymentStatus
from testsupport import celery_worker, stk_accepted, stk_failure_body, stk_success_body, wait_for

VALID = {
    "phone_number": "0712345678",
    "amount": 250,
    "account_reference": "INV42",
    "description": "Order 42",
}


def start_payment(api, daraja, checkout):
    route = daraja.post("/mpesa/stkpush/v1/processrequest").respond(
        200, json=stk_accepted(checkout)
    )
    response = api.post("/payments/stk-push/", VALID, format="json")
    assert response.status_code == 201, response.content
    callback_url = json.loads(route.calls.last.request.content)["CallBackURL"]
    token = callback_url.rstrip("/").rsplit("/", 1)[-1]
    return response.json()["id"], token


def status_of(payment_id):
    return Payment.objects.get(pk=payment_id).status


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_stk_push_to_success_and_to_failed_through_a_real_worker(api, daraja):
    paid_id, paid_token = start_payment(api, daraja, "ws_CO_27112026110000001712345678")
    failed_id, failed_token = start_payment(api, daraja, "ws_CO_27112026110000002712345678")
    web = Client()
    with celery_worker():
        ok = web.post(
            f"/payments/callback/{paid_token}/",
            data=stk_success_body(
                checkout_request_id="ws_CO_27112026110000001712345678",
                amount="250.00",
                receipt="UKR1WORKER",
            ),
            content_type="application/json",
        )
        cancelled = web.post(
            f"/payments/callback/{failed_token}/",
            data=stk_failure_body(
                checkout_request_id="ws_CO_27112026110000002712345678", result_code=1032
            ),
            content_type="application/json",
        )
        assert ok.status_code == cancelled.status_code == 200
        wait_for(
            lambda: (
                status_of(paid_id) == PaymentStatus.SUCCESS
                and status_of(failed_id) == PaymentStatus.FAILED
            ),
            timeout=60,
        )

    paid = Payment.objects.get(pk=paid_id)
    assert paid.mpesa_receipt_number == "UKR1WORKER"
    assert [(e.from_status, e.to_status, e.source) for e in paid.events.all()] == [
        ("", "INITIATED", "api"),
        ("INITIATED", "PENDING", "daraja"),
        ("PENDING", "SUCCESS", "callback"),
    ]
    failed = Payment.objects.get(pk=failed_id)
    assert failed.result_code == "1032"
    assert set(InboundCallback.objects.values_list("state", flat=True)) == {CallbackState.PROCESSED}


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_twenty_identical_callbacks_in_parallel_credit_once(api, daraja):
    checkout = "ws_CO_27112026110000003712345678"
    payment_id, token = start_payment(api, daraja, checkout)
    body = stk_success_body(checkout_request_id=checkout, amount=250, receipt="UKR1STORMM")
    barrier = threading.Barrier(20)
    statuses = []

    def fire():
        try:
            barrier.wait()
            statuses.append(
                Client()
                .post(f"/payments/callback/{token}/", data=body, content_type="application/json")
                .status_code
            )
        finally:
            connection.close()

    with celery_worker(concurrency=4):
        threads = [threading.Thread(target=fire) for _ in range(20)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert statuses == [200] * 20
        wait_for(
            lambda: not InboundCallback.objects.filter(state=CallbackState.RECEIVED).exists(),
            timeout=90,
        )

    payment = Payment.objects.get(pk=payment_id)
    assert payment.status == PaymentStatus.SUCCESS
    assert (
        payment.events.filter(kind=EventKind.TRANSITION, to_status=PaymentStatus.SUCCESS).count()
        == 1
    )
    states = list(InboundCallback.objects.values_list("state", flat=True))
    assert states.count(CallbackState.PROCESSED) == 1
    assert states.count(CallbackState.DUPLICATE) == 19


@pytest.mark.services
@pytest.mark.django_db(transaction=True)
def test_twenty_processors_racing_on_postgresql_make_exactly_one_transition(api, daraja):
    """The harshest race: 20 threads, 20 connections, processing 20 copies at the same instant."""
    checkout = "ws_CO_27112026110000004712345678"
    payment_id, token = start_payment(api, daraja, checkout)
    body = stk_success_body(checkout_request_id=checkout, amount=250, receipt="UKR1RACEEE")
    for _ in range(20):
        Client().post(f"/payments/callback/{token}/", data=body, content_type="application/json")
    ids = list(InboundCallback.objects.values_list("pk", flat=True))
    barrier = threading.Barrier(len(ids))
    outcomes, errors = [], []

    def run(callback_id):
        try:
            barrier.wait()
            outcomes.append(callback_process(callback_id=callback_id).state)
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(repr(exc))
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(callback_id,)) for callback_id in ids]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert sorted(outcomes) == sorted([CallbackState.PROCESSED] + [CallbackState.DUPLICATE] * 19)
    payment = Payment.objects.get(pk=payment_id)
    assert payment.status == PaymentStatus.SUCCESS
    assert (
        payment.events.filter(kind=EventKind.TRANSITION, to_status=PaymentStatus.SUCCESS).count()
        == 1
    )


def _sessions_opened() -> int:
    """Connections ever opened to the test database (PostgreSQL's statistics)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_stat_clear_snapshot()")
        cursor.execute("SELECT sessions FROM pg_stat_database WHERE datname = current_database()")
        (sessions,) = cursor.fetchone()
    return int(sessions)


@pytest.mark.services
@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(("max_age", "reused"), [("600", True), ("0", False)])
def test_worker_tasks_keep_their_database_connection_for_db_conn_max_age(
    api, daraja, settings, max_age, reused
):
    """One task per callback: with DB_CONN_MAX_AGE set the worker keeps its connection from
    task to task, as gunicorn does from request to request; with 0, each task opens its own."""
    settings.CALLBACK_PROCESSING = "task"
    started = [
        (
            f"ws_CO_271120261200{n:04d}712345678",
            *start_payment(api, daraja, f"ws_CO_271120261200{n:04d}712345678"),
        )
        for n in range(12)
    ]
    before = _sessions_opened()
    with celery_worker(concurrency=1, CALLBACK_PROCESSING="task", DB_CONN_MAX_AGE=max_age):
        for n, (checkout, _, token) in enumerate(started):
            answer = Client().post(
                f"/payments/callback/{token}/",
                data=stk_success_body(
                    checkout_request_id=checkout, amount=250, receipt=f"UKR2REUSE{n:X}"
                ),
                content_type="application/json",
            )
            assert answer.status_code == 200
        wait_for(
            lambda: Payment.objects.filter(status=PaymentStatus.SUCCESS).count() == len(started),
            timeout=90,
        )
    # The worker has exited: its sessions are all counted.
    opened = wait_for(lambda: _sessions_opened() - before, timeout=10)
    if reused:
        assert opened <= 3, f"{opened} connections for {len(started)} tasks"
    else:
        assert opened >= len(started), f"{opened} connections for {len(started)} tasks"
