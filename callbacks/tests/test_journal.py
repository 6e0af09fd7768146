"""The local journal: requests the database could not take are kept on the web host's disk,
answered as usual, and moved into the inbox once the database is back, each exactly once."""

import json
import os
from pathlib import Path

import pytest
from django.db import OperationalError

from callbacks import journal
from callbacks.journal import journal_append, journal_drain, journal_read
from callbacks.models import CallbackKind, CallbackState, InboundCallback
from callbacks.services import callbacks_drain_batch
from payments.accounts import account_create, c2b_urls
from payments.models import Payment
from testsupport import c2b_body, stk_success_body
from testsupport.factories import PaymentFactory

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def journal_dir(settings, tmp_path: Path) -> Path:
    settings.CALLBACK_JOURNAL_DIR = str(tmp_path / "journal")
    return tmp_path / "journal"


def _append(n: int) -> str:
    return journal_append(
        kind=CallbackKind.C2B_CONFIRMATION,
        token="t" * 43,
        body=c2b_body(trans_id=f"UL5C2B7Q{n:02d}"),
        content_type="application/json",
        headers={"User-Agent": "Daraja"},
        source_ip="196.201.214.200",
    )


def test_entries_are_read_back_whole_and_a_torn_one_is_skipped(journal_dir):
    first, second = _append(1), _append(2)
    path = journal_dir / journal.JOURNAL
    whole = path.stat().st_size
    _append(3)
    # A web process killed in the middle of writing the third entry: half of it is on disk.
    with open(path, "r+b") as handle:
        handle.truncate(whole + (path.stat().st_size - whole) // 2)
    fourth = _append(4)  # the next process appends after the torn entry
    entries = list(journal_read(path))
    assert [entry.id for entry in entries] == [first, second, fourth]
    assert entries[0].body == c2b_body(trans_id="UL5C2B7Q01")
    assert entries[0].headers == {"User-Agent": "Daraja"}
    assert entries[0].source_ip == "196.201.214.200"


def test_a_drain_stores_each_entry_once_even_if_it_died_before_removing_the_file(journal_dir):
    ids = {_append(n) for n in range(5)}
    saved = (journal_dir / journal.JOURNAL).read_bytes()
    assert journal_drain() == 5
    assert not (journal_dir / journal.JOURNAL).exists()
    stored = InboundCallback.objects.all()
    assert {str(row.journal_id) for row in stored} == ids
    assert {row.state for row in stored} == {CallbackState.RECEIVED}
    assert all(row.journaled_at is not None for row in stored)
    # A drain that died after inserting, before removing its file: the next one adds nothing.
    (journal_dir / journal.DRAINING).write_bytes(saved)
    assert journal_drain() == 0
    assert InboundCallback.objects.count() == 5
    assert journal_drain() == 0  # nothing left


def test_the_journal_is_bounded(settings):
    settings.CALLBACK_JOURNAL_MAX_BYTES = 1500
    _append(1)
    with pytest.raises(journal.JournalFull):
        for n in range(2, 10):
            _append(n)


def _database_down(*args, **kwargs):
    raise OperationalError("connection refused")


def test_with_the_database_down_every_route_keeps_the_request_and_answers(
    client, monkeypatch, journal_dir
):
    payment, token = PaymentFactory.with_token()
    _, account_token = account_create(name="Shop", shortcode="600984")
    urls = c2b_urls(account_token)
    monkeypatch.setattr("callbacks.api.token_payment", _database_down)
    monkeypatch.setattr("callbacks.c2b_api.account_of_token", _database_down)
    stk = stk_success_body(checkout_request_id=payment.checkout_request_id, amount="10")

    answered_stk = client.post(f"/payments/callback/{token}/", stk, content_type="application/json")
    answered_confirmation = client.post(
        "/" + urls.confirmation.split("/", 3)[3], c2b_body(), content_type="application/json"
    )
    answered_validation = client.post(
        "/" + urls.validation.split("/", 3)[3], c2b_body(), content_type="application/json"
    )

    assert answered_stk.status_code == 200
    assert answered_confirmation.json() == {"ResultCode": 0, "ResultDesc": "Success"}
    # Not answered: M-Pesa applies the account's ResponseType.
    assert answered_validation.status_code == 503
    assert InboundCallback.objects.count() == 0
    kinds = [entry.kind for entry in journal_read(journal_dir / journal.JOURNAL)]
    assert kinds == ["stk", "c2b_confirmation", "c2b_validation"]

    monkeypatch.undo()  # the database is back
    assert journal_drain() == 3
    while callbacks_drain_batch().processed:
        pass
    payment.refresh_from_db()
    assert payment.status == "SUCCESS"
    assert Payment.objects.filter(channel="paybill", mpesa_receipt_number="UL5C2B7QXA").exists()
    states = dict(InboundCallback.objects.values_list("kind", "state"))
    assert states["stk"] == states["c2b_confirmation"] == CallbackState.PROCESSED


def test_with_the_journal_unwritable_too_the_request_is_refused_not_lost_silently(
    client, monkeypatch, settings, tmp_path
):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("x")
    settings.CALLBACK_JOURNAL_DIR = str(blocker / "journal")
    monkeypatch.setattr("callbacks.api.token_payment", _database_down)
    response = client.post(
        "/payments/callback/" + "t" * 43 + "/", b"{}", content_type="application/json"
    )
    assert response.status_code == 500
    assert json.loads(response.content)["error"]["code"] == "unavailable"
    assert not os.path.exists(blocker / "journal")


def test_an_append_never_waits_for_a_drain_stuck_on_the_database(journal_dir, monkeypatch):
    import threading
    import time

    first = _append(1)
    stuck, release = threading.Event(), threading.Event()
    stored: list[list[str]] = []

    def stuck_store(entries):  # the database hangs: the drain waits inside its insert
        stuck.set()
        release.wait(10)
        stored.append([entry.id for entry in entries])
        return 0  # (nothing new to wake the workers for)

    monkeypatch.setattr(journal, "_store", stuck_store)
    drainer = threading.Thread(target=journal_drain)
    drainer.start()
    assert stuck.wait(10)
    started = time.monotonic()
    second = _append(2)  # a request arriving meanwhile
    waited = time.monotonic() - started
    release.set()
    drainer.join(10)
    assert waited < 1.0
    assert stored == [[first]]
    # The entry appended during the drain is in the new journal, for the next drain.
    assert [entry.id for entry in journal_read(journal_dir / journal.JOURNAL)] == [second]
