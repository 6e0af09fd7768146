"""PostgreSQL stopped for 60 s while Daraja keeps sending C2B confirmations to a real web
process: every request is answered as usual, and every one is in the inbox afterwards, once,
and becomes its payment."""

import threading
import time
from collections import Counter
from pathlib import Path

import httpx
import pytest
from django.db import connection

from callbacks.models import CallbackKind, InboundCallback
from callbacks.services import callbacks_drain_batch
from payments.accounts import account_create, c2b_urls
from payments.models import Payment
from testsupport import c2b_body, start_postgres, stop_postgres, wait_for, web_server

pytestmark = [pytest.mark.services, pytest.mark.faults, pytest.mark.django_db(transaction=True)]

OUTAGE = 60.0


def test_postgresql_stopped_for_a_minute_under_confirmations_loses_nothing(tmp_path: Path):
    _, token = account_create(name="Shop", shortcode="600984")
    path = "/" + c2b_urls(token).confirmation.split("/", 3)[3]
    folder = tmp_path / "journal"
    answers: Counter[int] = Counter()
    sent: list[str] = []
    done = threading.Event()

    with web_server(CALLBACK_JOURNAL_DIR=str(folder)) as web:

        def daraja(worker: int) -> None:
            with httpx.Client(base_url=web.url, timeout=10) as http:
                n = 0
                while not done.is_set():
                    trans_id = f"UL5J{worker}{n:05d}"
                    response = http.post(
                        path,
                        content=c2b_body(trans_id=trans_id),
                        headers={"Content-Type": "application/json"},
                    )
                    answers[response.status_code] += 1
                    assert response.json() == {"ResultCode": 0, "ResultDesc": "Success"}
                    sent.append(trans_id)
                    n += 1
                    time.sleep(0.05)

        senders = [threading.Thread(target=daraja, args=(w,)) for w in range(4)]
        for sender in senders:
            sender.start()
        try:
            time.sleep(3)
            connection.close()
            stop_postgres()
            try:
                time.sleep(OUTAGE)
            finally:
                start_postgres()
            time.sleep(5)  # confirmations after the outage drain the journal
        finally:
            done.set()
            for sender in senders:
                sender.join()

        def all_in_the_inbox() -> bool:
            connection.close()
            return InboundCallback.objects.filter(
                kind=CallbackKind.C2B_CONFIRMATION
            ).count() >= len(sent)

        wait_for(all_in_the_inbox, timeout=60)

    assert answers == Counter({200: len(sent)})
    journaled = InboundCallback.objects.filter(journal_id__isnull=False).count()
    assert journaled > 100  # the outage's share came through the journal
    print(f"\n{len(sent)} confirmations, {journaled} through the journal, all answered 200")
    stored = list(
        InboundCallback.objects.filter(kind=CallbackKind.C2B_CONFIRMATION).values_list(
            "dedupe_key", flat=True
        )
    )
    assert len(stored) == len(set(stored)) == len(sent)  # each once
    while callbacks_drain_batch().processed:
        pass
    assert set(Payment.objects.values_list("mpesa_receipt_number", flat=True)) == set(sent)
    assert not any(folder.glob("callbacks.journal*[!k]"))  # drained: only the lock file is left
