"""`manage.py bootstrap_demo` (what `make run` runs before starting): one demo client, whose new
key each start still sees the payments made before."""

from __future__ import annotations

import re
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from rest_framework.test import APIClient

from core.models import ApiClient
from payments.tests.test_api import VALID, stk_route

pytestmark = pytest.mark.django_db


def _bootstrap() -> str:
    out = StringIO()
    call_command("bootstrap_demo", "--host", "127.0.0.1", "--port", "8000", stdout=out)
    keys = re.findall(r"API key:\s+(mpk_\S+)", out.getvalue())
    assert len(keys) == 1, out.getvalue()
    return keys[0]


def _api(key: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    return client


def test_each_start_reuses_the_demo_client_and_its_new_key_sees_earlier_payments(settings, daraja):
    settings.DEBUG = True
    stk_route(daraja)
    first = _bootstrap()
    created = _api(first).post("/payments/stk-push/", VALID, format="json")
    assert created.status_code == 201, created.content

    second = _bootstrap()
    third = _bootstrap()

    assert len({first, second, third}) == 3  # a new key each start (only hashes are stored)
    assert ApiClient.objects.count() == 1  # ...for one client, not one more client per start
    # The demo key does the books too, so that the README's statement upload works with it.
    assert ApiClient.objects.get().scopes == ["payments", "reconciliation", "webhooks"]
    listing = _api(third).get("/payments/")
    assert listing.status_code == 200
    assert [p["id"] for p in listing.json()["results"]] == [created.json()["id"]]
    # The rotated-out keys no longer work.
    assert _api(first).get("/payments/").status_code == 401
    assert _api(second).get("/payments/").status_code == 401


def test_the_printout_says_the_key_was_rotated_for_the_same_client(settings):
    settings.DEBUG = True
    out = StringIO()
    call_command("bootstrap_demo", stdout=out)
    text = out.getvalue()
    assert "new key each start, for the same client" in text
    assert "earlier keys no longer work" in text


def test_demo_page_payments_belong_to_the_client_whose_key_is_printed(settings, daraja, client):
    settings.DEBUG = True
    settings.DEMO_ENABLED = True
    stk_route(daraja)
    paid = client.post(
        "/demo/pay/",
        {"phone_number": "0712345678", "amount": "10"},
        content_type="application/json",
    )
    assert paid.status_code == 201, paid.content
    key = _bootstrap()
    listing = _api(key).get("/payments/").json()["results"]
    assert [p["id"] for p in listing] == [paid.json()["payment"]["id"]]


def test_refused_when_debug_is_off(settings):
    settings.DEBUG = False
    with pytest.raises(CommandError, match="local development"):
        call_command("bootstrap_demo", stdout=StringIO())
