"""The callback intake: what is stored of each request, and where it is listed."""

import json

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.utils import timezone

from callbacks.models import InboundCallback
from callbacks.tasks import process_callback
from testsupport import stk_accepted

pytestmark = pytest.mark.django_db

VALID = {
    "phone_number": "0712345678",
    "amount": 100,
    "account_reference": "ORDER1",
    "description": "Test",
}


def _push(api, daraja):
    """A payment made through the API; returns it and the callback path Daraja was given."""
    route = daraja.post("/mpesa/stkpush/v1/processrequest").respond(
        200, json=stk_accepted("ws_CO_INTAKE")
    )
    payment = api.post("/payments/stk-push/", VALID, format="json").json()
    callback_url = json.loads(route.calls.last.request.content)["CallBackURL"]
    return payment, "/" + callback_url.split("/", 3)[3]


def test_an_invalid_callback_is_listed_with_its_payment(api, daraja, client):
    """The token in the path says whose it is even when the body cannot be read."""
    payment, path = _push(api, daraja)
    client.post(path, data=b'{"Body": {"stkCallback": "garbled', content_type="application/json")
    callback = InboundCallback.objects.get()
    assert process_callback.apply(args=(callback.pk,)).get() == "invalid"

    listed = api.get(f"/payments/{payment['id']}/callbacks/").json()

    assert [(c["id"], c["state"]) for c in listed] == [(callback.pk, "invalid")]
    assert listed[0]["error"]  # why it was found invalid


@pytest.mark.django_db(transaction=True)
def test_invalid_callbacks_stored_before_the_link_are_linked_by_their_token():
    before = [("callbacks", "0005_link_parked_callbacks")]
    executor = MigrationExecutor(connection)
    executor.migrate(before)
    apps = executor.loader.project_state(before).apps
    Payment = apps.get_model("payments", "Payment")
    Callback = apps.get_model("callbacks", "InboundCallback")
    payment = Payment.objects.create(
        amount=10,
        phone_number="254712345678",
        account_reference="A",
        description="B",
        callback_token_hash="a" * 64,
    )
    common = {"body": b"{", "dedupe_key": "d" * 64}
    invalid = Callback.objects.create(state="invalid", token_hash="a" * 64, **common)
    rejected = Callback.objects.create(state="rejected", token_hash="a" * 64, **common)
    no_token = Callback.objects.create(state="invalid", token_hash="", **common)
    unknown = Callback.objects.create(state="invalid", token_hash="b" * 64, **common)

    executor = MigrationExecutor(connection)
    executor.migrate([("callbacks", "0006_link_invalid_callbacks")])

    linked = dict(Callback.objects.values_list("pk", "payment_id"))
    assert linked == {
        invalid.pk: payment.pk,
        rejected.pk: None,
        no_token.pk: None,
        unknown.pk: None,
    }
    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes())


def test_the_retention_policy_runs_daily_on_beat(settings, client):
    from datetime import timedelta

    from callbacks.tasks import purge_callback_bodies

    scheduled = {entry["task"] for entry in settings.CELERY_BEAT_SCHEDULE.values()}
    assert "callbacks.tasks.purge_callback_bodies" in scheduled
    client.post(f"/payments/callback/{'G' * 43}/", data=b"junk", content_type="text/plain")
    InboundCallback.objects.update(received_at=timezone.now() - timedelta(days=400))

    assert purge_callback_bodies.apply().get() == 1
    assert bytes(InboundCallback.objects.get().body) == b""
    assert purge_callback_bodies.apply().get() == 0  # once


def test_the_admin_says_when_only_a_prefix_or_nothing_of_a_body_is_kept(admin_client, client):
    client.post(f"/payments/callback/{'G' * 43}/", data=b"x" * 3000, content_type="text/plain")
    refused = InboundCallback.objects.get()

    page = admin_client.get(f"/admin/callbacks/inboundcallback/{refused.pk}/change/")
    assert page.status_code == 200
    assert b"only the first 1024 bytes kept" in page.content

    InboundCallback.objects.update(body=b"", body_complete=False, body_purged_at=timezone.now())
    page = admin_client.get(f"/admin/callbacks/inboundcallback/{refused.pk}/change/")
    assert b"purged by the retention policy" in page.content
