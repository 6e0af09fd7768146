"""C2B confirmations under faults, with real workers: Redis stopped while they arrive, then a
worker killed with SIGKILL in the middle of draining them. Every confirmation is stored,
answered, and becomes exactly one payment."""

import os
import signal
import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.db import connection
from django.test import Client

from callbacks.models import CallbackState, InboundCallback
from core.ops import find_violations
from payments.accounts import account_create, c2b_urls
from payments.models import Channel, Payment
from testsupport import c2b_body, celery_beat, celery_worker, start_redis, stop_redis, wait_for

from .test_faults import FAST

pytestmark = [
    pytest.mark.services,
    pytest.mark.faults,
    pytest.mark.worker,
    pytest.mark.django_db(transaction=True),
]


@pytest.fixture(autouse=True)
def _services_restored():
    yield
    start_redis()
    connection.close()


def confirm_all(path: str, trans_ids: list[str], threads: int = 4) -> Counter[int]:
    statuses: Counter[int] = Counter()
    lock = threading.Lock()

    def post(trans_id: str) -> None:
        try:
            response = Client().post(
                path, data=c2b_body(trans_id=trans_id), content_type="application/json"
            )
        finally:
            connection.close()
        with lock:
            statuses[response.status_code] += 1

    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(post, trans_ids))
    return statuses


def waiting() -> int:
    return InboundCallback.objects.filter(state=CallbackState.RECEIVED).count()


def test_redis_down_then_a_worker_killed_mid_drain_loses_no_confirmation():
    _, token = account_create(name="Shop", shortcode="600984")
    path = "/" + c2b_urls(token).confirmation.split("/", 3)[3]
    before, during = 300, 1500
    trans_ids = [f"UL5F{n:06d}" for n in range(before + during)]
    try:
        with celery_beat(**FAST), celery_worker(concurrency=2, supervised=True, **FAST):
            assert confirm_all(path, trans_ids[:before]) == Counter({200: before})
            wait_for(lambda: waiting() == 0, timeout=120, interval=0.2)
            stop_redis()
            # Stored while the broker is down: nothing can be woken, nothing is lost.
            assert confirm_all(path, trans_ids[before:]) == Counter({200: during})
            assert InboundCallback.objects.count() == before + during
    finally:
        start_redis()  # the workers were stopped first: the backlog waits for the next ones
    assert waiting() == during
    # Redis is back; a worker drains the backlog and is killed in the middle of it.
    with celery_beat(**FAST), celery_worker(concurrency=2, **FAST) as worker:
        wait_for(lambda: Payment.objects.count() >= before + 50, timeout=120, interval=0.05)
        os.killpg(worker.pid, signal.SIGKILL)
        left_at_kill = waiting()
    assert left_at_kill > 0, "the kill landed after the drain: not a mid-drain kill"
    with celery_beat(**FAST), celery_worker(concurrency=2, log_path=None, **FAST):
        wait_for(lambda: waiting() == 0, timeout=180, interval=0.5)
    connection.close()
    receipts = Counter(Payment.objects.values_list("mpesa_receipt_number", flat=True))
    assert set(receipts) == set(trans_ids)
    assert set(receipts.values()) == {1}
    assert set(Payment.objects.values_list("channel", flat=True)) == {Channel.PAYBILL}
    states = Counter(InboundCallback.objects.values_list("state", flat=True))
    assert states == Counter({CallbackState.PROCESSED: before + during})
    assert [str(v) for v in find_violations(settled=True)] == []
