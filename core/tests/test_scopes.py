"""API key scopes: made with create_api_key --scope, shown and edited in the admin, kept at
``payments`` for the keys that existed before (the migration), and a second key of a merchant
(--for) that works on the same data."""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.urls import reverse
from rest_framework.test import APIClient

from core.models import ApiClient
from core.services import api_client_create
from testsupport.factories import PaymentFactory

pytestmark = pytest.mark.django_db


def create_key(*args: str) -> tuple[ApiClient, str]:
    out = StringIO()
    call_command("create_api_key", *args, stdout=out)
    lines = out.getvalue().splitlines()
    key = lines[lines.index("API key (shown once, store it now):") + 1]
    prefix = key.split("_")[1]
    return ApiClient.objects.get(key_prefix=prefix), out.getvalue()


def api_for(key: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    return client


def test_a_new_key_takes_payments_only():
    client, out = create_key("shop")

    assert client.scopes == ["payments"]
    assert "Scopes: payments" in out


def test_create_api_key_grants_the_scopes_asked_for():
    client, out = create_key("books", "--scope", "reconciliation", "--scope", "payments")

    assert client.scopes == ["payments", "reconciliation"]
    assert "Scopes: payments, reconciliation" in out


def test_create_api_key_refuses_an_unknown_scope():
    with pytest.raises(CommandError, match="invalid choice: 'admin'"):
        call_command("create_api_key", "shop", "--scope", "admin", stdout=StringIO())
    assert not ApiClient.objects.exists()


def test_the_scope_the_command_grants_is_the_one_the_api_checks():
    out = StringIO()
    call_command("create_api_key", "books", "--scope", "reconciliation", stdout=out)
    key = out.getvalue().splitlines()[-1]

    assert api_for(key).get("/reconciliation/runs/").status_code == 200
    refused = api_for(key).get("/payments/")
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "missing_scope"


def test_a_second_key_works_on_its_merchants_payments():
    shop = api_client_create(name="shop")
    payment = PaymentFactory(client=shop.client)
    out = StringIO()
    call_command(
        "create_api_key", "auditor", "--for", shop.client.key_prefix, "--scope", "payments",
        stdout=out,
    )  # fmt: skip
    key = out.getvalue().splitlines()[-1]

    response = api_for(key).get(f"/payments/{payment.pk}/")

    assert response.status_code == 200
    assert f"Acts for: {shop.client}" in out.getvalue()
    with pytest.raises(CommandError, match="No API key with prefix"):
        call_command("create_api_key", "x", "--for", "nope", stdout=StringIO())


def test_the_admin_shows_and_edits_a_keys_scopes(admin_client):
    client = api_client_create(name="shop").client
    url = reverse("admin:core_apiclient_change", args=[client.pk])
    page = admin_client.get(url)
    assert page.status_code == 200
    assert b'value="reconciliation"' in page.content

    response = admin_client.post(url, {"name": "shop", "scopes": ["payments", "reconciliation"]})

    assert response.status_code == 302, response.content[:2000]
    client.refresh_from_db()
    assert client.scopes == ["payments", "reconciliation"]
    listing = admin_client.get(reverse("admin:core_apiclient_changelist"))
    assert b"reconciliation" in listing.content


def test_the_admin_refuses_a_key_with_no_scope(admin_client):
    client = api_client_create(name="shop").client

    response = admin_client.post(
        reverse("admin:core_apiclient_change", args=[client.pk]), {"name": "shop"}
    )

    assert response.status_code == 200  # the form again, with the error
    client.refresh_from_db()
    assert client.scopes == ["payments"]


@pytest.mark.django_db(transaction=True)
def test_the_migration_leaves_existing_keys_with_payments_only():
    executor = MigrationExecutor(connection)
    executor.migrate([("core", "0001_initial")])
    old_apps = executor.loader.project_state([("core", "0001_initial")]).apps
    OldApiClient = old_apps.get_model("core", "ApiClient")
    OldApiClient.objects.create(name="legacy", key_prefix="legacy01", key_hash="h" * 64)

    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes())

    assert ApiClient.objects.get(key_prefix="legacy01").scopes == ["payments"]
