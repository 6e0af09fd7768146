"""End to end through real processes: the web app on a real HTTP server, the Daraja simulator
on its own port, a real Celery worker process, the configured broker and database.

Each scenario is chosen by the payer's phone number from the simulator's documented table.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from django.db import connection

from callbacks.models import CallbackState, InboundCallback
from core.ops import find_violations
from events.models import Event
from payments.models import EventKind, Payment, PaymentStatus
from payments.services import payment_query
from simulator import SimulatorConfig, start_in_thread
from testsupport import celery_worker, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.worker, pytest.mark.django_db(transaction=True)]


@pytest.fixture(scope="module")
def simulator() -> Iterator[Any]:
    server, _ = start_in_thread(
        port=0,
        config=SimulatorConfig(
            callback_delay=0.3,
            late_delay=1.5,
            duplicate_gap=0.05,
            seed=20261127,
            log_requests=False,
        ),
    )
    yield server
    server.shutdown()


@pytest.fixture(scope="module")
def worker(django_db_setup: None, django_db_blocker: Any) -> Iterator[None]:
    with django_db_blocker.unblock(), celery_worker(concurrency=2):
        yield


@pytest.fixture(autouse=True)
def _quiet_worker_at_the_end() -> Iterator[None]:
    """The module's worker outlives each test: before the test's tables are emptied, let it
    finish what the test's payments started (the webhook pump fans their events out), or
    its transactions and the TRUNCATE can deadlock."""
    yield
    wait_for(lambda: not Event.objects.filter(dispatched_at__isnull=True).exists(), timeout=60)
    time.sleep(1.0)  # the pump's last queries after its fan-out


@pytest.fixture(autouse=True)
def _wired(settings: Any, live_server: Any, simulator: Any, worker: None) -> None:
    settings.MPESA_BASE_URL = simulator.base_url
    settings.MPESA_CALLBACK_URL = f"{live_server.url}/payments/callback/"
    simulator.simulator.reset()


def push(api: Any, phone: str, amount: int = 75) -> dict[str, Any]:
    response = api.post(
        "/payments/stk-push/",
        {"phone_number": phone, "amount": amount, "account_reference": "E2E", "description": "e2e"},
        format="json",
    )
    assert response.status_code in (201, 202), response.content
    return response.json()


def final(payment_id: str, timeout: float = 30) -> Payment:
    def done() -> Payment | None:
        connection.close()
        payment = Payment.objects.get(pk=payment_id)
        return payment if payment.is_final else None

    return wait_for(done, timeout=timeout, interval=0.1)


def callback_states(payment_id: str) -> list[str]:
    return sorted(
        InboundCallback.objects.filter(payment_id=payment_id).values_list("state", flat=True)
    )


def settle() -> None:
    wait_for(
        lambda: not InboundCallback.objects.filter(state=CallbackState.RECEIVED).exists(),
        timeout=30,
    )
    assert [str(v) for v in find_violations(settled=True)] == []


def test_success(api):
    created = push(api, "0711000000")
    assert created["status"] == "PENDING" and created["checkout_request_id"].startswith("ws_CO_")
    payment = final(created["id"])
    assert payment.status == PaymentStatus.SUCCESS
    assert payment.paid_amount == payment.amount
    assert len(payment.mpesa_receipt_number) == 10
    assert [e.to_status for e in payment.events.all()] == [
        PaymentStatus.INITIATED,
        PaymentStatus.PENDING,
        PaymentStatus.SUCCESS,
    ]
    settle()


@pytest.mark.parametrize(
    ("phone", "code"),
    [
        ("254711000001", "1"),
        ("254711000032", "1032"),
        ("254711000037", "1037"),
        ("254711000038", "1037"),
        ("254711000020", "2001"),
        ("254711000017", "17"),
        ("254711000003", "SFC_IC0003"),
        ("254711000019", "1019"),
        ("254711000086", "8006"),
    ],
)
def test_each_failure_class(api, phone, code):
    payment = final(push(api, phone)["id"])
    assert (
        payment.status == PaymentStatus.FAILED
        and payment.result_code == code
        and payment.failure_final
    )
    assert payment.result_desc
    settle()


def test_subscriber_locked_is_refused_at_push_time(api):
    created = push(api, "254711000099")
    assert created["status"] == "FAILED" and created["result_code"] == "500.001.1001"
    assert "Unable to lock subscriber" in created["result_desc"]


def test_duplicate_delivery_credits_once(api):
    payment = final(push(api, "254711000041")["id"])
    wait_for(lambda: len(callback_states(str(payment.pk))) == 3, timeout=20)
    settle()
    assert callback_states(str(payment.pk)) == ["duplicate", "duplicate", "processed"]
    assert (
        payment.events.filter(kind=EventKind.TRANSITION, to_status=PaymentStatus.SUCCESS).count()
        == 1
    )


def test_concurrent_duplicate_delivery_credits_once(api):
    payment = final(push(api, "254711000046")["id"])
    wait_for(lambda: len(callback_states(str(payment.pk))) == 2, timeout=20)
    settle()
    assert callback_states(str(payment.pk)) == ["duplicate", "processed"]


@pytest.mark.parametrize("phone", ["254711000050", "254711000051", "254711000052"])
def test_success_body_variants(api, phone):
    payment = final(push(api, phone)["id"])
    assert payment.status == PaymentStatus.SUCCESS and payment.paid_amount == payment.amount
    settle()


def test_no_callback_stays_pending_until_the_query_resolves_it(api, simulator):
    created = push(api, "254711000040")
    wait_for(
        lambda: simulator.simulator.transactions_json()["transactions"][0]["status"] == "completed",
        timeout=10,
    )
    assert Payment.objects.get(pk=created["id"]).status == PaymentStatus.PENDING
    assert payment_query(payment_id=created["id"]).outcome == "success"
    payment = Payment.objects.get(pk=created["id"])
    assert (
        payment.status == PaymentStatus.SUCCESS
        and payment.events.get(to_status=PaymentStatus.SUCCESS).source == "query"
    )
    settle()


def test_late_callback_after_the_query_answered_brings_the_receipt(api):
    created = push(api, "254711000042")
    wait_for(
        lambda: payment_query(payment_id=created["id"]).outcome == "success",
        timeout=10,
        interval=0.3,
    )
    wait_for(lambda: Payment.objects.get(pk=created["id"]).mpesa_receipt_number, timeout=20)
    payment = Payment.objects.get(pk=created["id"])
    assert payment.status == PaymentStatus.SUCCESS
    assert (
        payment.events.filter(kind=EventKind.TRANSITION, to_status=PaymentStatus.SUCCESS).count()
        == 1
    )
    settle()


@pytest.mark.parametrize(
    ("phone", "states"), [("254711000043", ["invalid"]), ("254711000044", ["invalid"])]
)
def test_malformed_and_empty_callbacks_are_kept_and_change_nothing(api, phone, states):
    created = push(api, phone)
    wait_for(
        lambda: (
            callback_states(created["id"]) == states
            or InboundCallback.objects.filter(state="invalid").exists()
        ),
        timeout=20,
    )
    settle()
    assert Payment.objects.get(pk=created["id"]).status == PaymentStatus.PENDING
    invalid = InboundCallback.objects.get(state="invalid")
    assert invalid.last_error


def test_empty_then_real_callback(api):
    payment = final(push(api, "254711000045")["id"])
    assert payment.status == PaymentStatus.SUCCESS
    settle()
    assert sorted(InboundCallback.objects.values_list("state", flat=True)) == [
        "invalid",
        "processed",
    ]


def test_token_expiry_in_the_middle_of_a_run(api, simulator):
    first = final(push(api, "0711000000")["id"])
    simulator.simulator.expire_tokens()
    second = final(push(api, "0711000000", amount=76)["id"])
    assert first.status == second.status == PaymentStatus.SUCCESS
    settle()
