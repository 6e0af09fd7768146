"""The M-Pesa accounts' admin: a new account's URLs shown once, registration with Daraja (its
refusals turned into what to do), the registration kept on the account."""

import base64
import hashlib
import re

import pytest

from payments.accounts import account_create
from payments.models import MpesaAccount

pytestmark = pytest.mark.django_db

CHANGELIST = "/admin/payments/mpesaaccount/"


def test_a_new_account_shows_its_urls_once(admin_client):
    response = admin_client.post(
        f"{CHANGELIST}add/",
        {
            "name": "Till",
            "shortcode": "5123456",
            "kind": "till",
            "enabled": "on",
            "response_type": "Completed",
            "account_pattern": "",
            "known_references-TOTAL_FORMS": "0",
            "known_references-INITIAL_FORMS": "0",
        },
        follow=True,
    )
    page = response.content.decode()
    account = MpesaAccount.objects.get(shortcode="5123456")
    (token,) = set(re.findall(r"/c2b/([A-Za-z0-9_-]{43})/validation/", page))
    assert hashlib.sha256(token.encode()).hexdigest() == account.url_token_hash
    assert token not in admin_client.get(f"{CHANGELIST}{account.pk}/change/").content.decode()


def test_registering_records_it_and_a_refusal_says_what_to_do(admin_client, daraja):
    account, _ = account_create(name="Shop", shortcode="600984")
    route = daraja.post("/mpesa/c2b/v2/registerurl")
    route.respond(
        200,
        json={
            "OriginatorCoversationID": "x",
            "ResponseCode": "0",
            "ResponseDescription": "Success",
        },
    )
    admin_client.post(CHANGELIST, {"action": "register_urls", "_selected_action": [account.pk]})
    account.refresh_from_db()
    assert account.urls_registered_version == "v2" and account.urls_registered_at is not None
    sent = route.calls.last.request
    assert b'"ShortCode": "600984"' in sent.content or b'"ShortCode":"600984"' in sent.content

    route.respond(
        401,
        json={
            "requestId": "1",
            "errorCode": "401.003.01",
            "errorMessage": "Error Occurred - Invalid Access Token - Invalid API call as no apiproduct match found",
        },
    )
    before = account.url_token_hash
    page = admin_client.post(
        CHANGELIST, {"action": "register_urls", "_selected_action": [account.pk]}, follow=True
    ).content.decode()
    assert "Register with the other version" in page
    account.refresh_from_db()
    assert account.url_token_hash == before  # the registered URLs keep working


# --- An account's own Daraja app -----------------------------------------------------------------


def test_an_accounts_own_credentials_are_stored_encrypted_and_used_for_its_calls(
    daraja, monkeypatch, capsys
):
    from django.core.management import call_command

    from core.crypto import decrypt
    from payments.accounts import account_client

    account, _ = account_create(name="Shop", shortcode="600984")
    monkeypatch.setenv("SHOP_CONSUMER_KEY", "shop-key")
    monkeypatch.setenv("SHOP_CONSUMER_SECRET", "shop-secret-value")
    call_command("mpesa_account", "credentials", "600984", "--from-env", "SHOP")
    assert "own Daraja app" in capsys.readouterr().out
    account.refresh_from_db()
    stored = account.consumer_secret_encrypted
    assert "shop-secret-value" not in stored and decrypt(stored) == "shop-secret-value"
    assert account.has_credentials and account.passkey_encrypted == ""

    # Register URL authenticates with the account's own app, not MPESA_*.
    oauth = daraja.get("/oauth/v1/generate").respond(
        200, json={"access_token": "shop-token", "expires_in": "3599"}
    )
    route = daraja.post("/mpesa/c2b/v2/registerurl").respond(
        200, json={"ResponseCode": "0", "ResponseDescription": "Success"}
    )
    client = account_client(account)
    assert (client.config.consumer_key, client.config.shortcode) == ("shop-key", "600984")
    call_command("mpesa_account", "register", "600984")
    basic = oauth.calls.last.request.headers["Authorization"]
    assert basic == "Basic " + base64.b64encode(b"shop-key:shop-secret-value").decode()
    assert route.calls.last.request.headers["Authorization"] == "Bearer shop-token"

    call_command("mpesa_account", "credentials", "600984", "--clear")
    account.refresh_from_db()
    assert not account.has_credentials
    assert account_client(account).config.consumer_key != "shop-key"


def test_credentials_are_refused_when_half_given(monkeypatch):
    from django.core.management import CommandError, call_command

    account_create(name="Shop", shortcode="600984")
    monkeypatch.setenv("HALF_CONSUMER_KEY", "k")
    monkeypatch.delenv("HALF_CONSUMER_SECRET", raising=False)
    with pytest.raises(CommandError, match="HALF_CONSUMER_SECRET"):
        call_command("mpesa_account", "credentials", "600984", "--from-env", "HALF")


def test_rotating_the_encryption_key_re_encrypts_account_credentials(settings, monkeypatch):
    from cryptography.fernet import Fernet
    from django.core.management import call_command

    from core.crypto import decrypt
    from payments.accounts import account_set_credentials

    old = Fernet.generate_key().decode()
    settings.ENCRYPTION_KEYS = [old]
    account, _ = account_create(name="Shop", shortcode="600984")
    other, _ = account_create(name="Plain", shortcode="600985")  # no credentials: skipped
    account_set_credentials(account, consumer_key="k", consumer_secret="s", passkey="p")
    new = Fernet.generate_key().decode()
    settings.ENCRYPTION_KEYS = [new, old]
    call_command("rotate_encryption_key")
    settings.ENCRYPTION_KEYS = [new]
    account.refresh_from_db()
    assert decrypt(account.consumer_secret_encrypted) == "s"
    assert decrypt(account.passkey_encrypted) == "p"
    other.refresh_from_db()
    assert other.consumer_key_encrypted == ""
