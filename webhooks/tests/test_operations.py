"""Operating webhooks: the management command, the admin's pages and actions, and rotating the
key that encrypts the signing secrets."""

from __future__ import annotations

from io import StringIO

import pytest
from cryptography.fernet import Fernet
from django.core.management import call_command
from django.core.management.base import CommandError

from core.crypto import DecryptionFailed, decrypt
from events.models import Event
from testsupport.factories import ApiClientFactory
from webhooks.models import Delivery, Endpoint, EndpointSecret
from webhooks.services import endpoint_create, signing_secrets

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _local_targets(settings):
    settings.WEBHOOK_ALLOW_PRIVATE_TARGETS = True


def run(*args):
    out = StringIO()
    call_command("webhook_endpoint", *args, stdout=out)
    return out.getvalue()


def test_the_command_adds_lists_tests_and_disables_endpoints():
    merchant = ApiClientFactory(scopes=["webhooks"])
    added = run("add", merchant.key_prefix, "http://127.0.0.1:9/h", "--event", "payment.succeeded")
    endpoint = Endpoint.objects.get()
    secret = added.strip().splitlines()[-1]
    assert secret.startswith("whsec_") and signing_secrets([endpoint.pk])[endpoint.pk] == [secret]
    assert "payment.succeeded" in run("list", merchant.key_prefix)
    assert "queued" in run("send-test", str(endpoint.pk))
    assert Delivery.objects.filter(endpoint=endpoint, event__type="webhook.test").count() == 1
    run("disable", str(endpoint.pk))
    assert "DISABLED" in run("list")
    new = run("rotate-secret", str(endpoint.pk)).strip().splitlines()[-1]
    assert signing_secrets([endpoint.pk])[endpoint.pk][0] == new

    with pytest.raises(CommandError, match="No API key"):
        run("add", "nope", "http://127.0.0.1:9/h")
    with pytest.raises(CommandError, match="url"):
        run("add", merchant.key_prefix, "ftp://127.0.0.1/")
    with pytest.raises(CommandError, match="No endpoint"):
        run("enable", "not-a-uuid")


def test_rotating_the_encryption_key_keeps_every_secret(settings):
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    settings.ENCRYPTION_KEYS = [old]
    endpoint, secret = endpoint_create(
        client=ApiClientFactory(scopes=["webhooks"]), url="http://127.0.0.1:9/h"
    )
    settings.ENCRYPTION_KEYS = [new, old]
    out = StringIO()
    call_command("rotate_encryption_key", stdout=out)
    assert "Re-encrypted 1 secret" in out.getvalue()
    settings.ENCRYPTION_KEYS = [new]  # the old key is gone: the secret still opens
    assert decrypt(EndpointSecret.objects.get(endpoint=endpoint).encrypted) == secret

    settings.ENCRYPTION_KEYS = [Fernet.generate_key().decode()]
    with pytest.raises(DecryptionFailed, match="ENCRYPTION_KEYS"):
        decrypt(EndpointSecret.objects.get(endpoint=endpoint).encrypted)
    with pytest.raises(CommandError, match="cannot be decrypted"):
        call_command("rotate_encryption_key", stdout=StringIO())


def test_the_admin_shows_health_and_attempts_and_never_the_secret(admin_client):
    merchant = ApiClientFactory(scopes=["webhooks"])
    endpoint, secret = endpoint_create(client=merchant, url="http://127.0.0.1:9/h")
    Endpoint.objects.filter(pk=endpoint.pk).update(enabled=False, disabled_reason="too many fails")
    page = admin_client.get("/admin/webhooks/endpoint/")
    assert page.status_code == 200
    assert "Disabled" in page.content.decode() and "too many fails" in page.content.decode()
    detail = admin_client.get(f"/admin/webhooks/endpoint/{endpoint.pk}/change/").content.decode()
    assert secret not in detail
    assert EndpointSecret.objects.get().encrypted not in detail

    admin_client.post(
        "/admin/webhooks/endpoint/",
        {"action": "send_test", "_selected_action": [str(endpoint.pk)]},
    )
    delivery = Delivery.objects.get()
    assert admin_client.get(f"/admin/webhooks/delivery/{delivery.pk}/change/").status_code == 200
    assert admin_client.get("/admin/webhooks/delivery/").status_code == 200
    assert admin_client.get("/admin/events/event/").status_code == 200
    admin_client.post(
        "/admin/webhooks/delivery/",
        {"action": "redeliver", "_selected_action": [str(delivery.pk)]},
    )
    again = Delivery.objects.exclude(pk=delivery.pk).get()
    assert again.requested_by.startswith("admin:") and again.event_id == delivery.event_id
    assert Event.objects.filter(type="webhook.test").count() == 1
