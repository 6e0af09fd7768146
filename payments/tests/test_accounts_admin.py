"""The M-Pesa accounts' admin: a new account's URLs shown once, registration with Daraja (its
refusals turned into what to do), the registration kept on the account."""

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
