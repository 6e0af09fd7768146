"""The merchant's M-Pesa accounts and known account numbers in the API: a key sees and
changes only its own merchant's; what validation then answers follows what was set."""

from decimal import Decimal

import pytest
from rest_framework.test import APIClient

from core.services import api_client_create
from daraja.c2b import parse_c2b_notification
from payments.accounts import account_create
from payments.c2b import c2b_validate
from payments.models import KnownReference
from testsupport import c2b_body

pytestmark = pytest.mark.django_db


@pytest.fixture
def shop(api_key):
    account, _ = account_create(
        name="Shop", shortcode="600984", client=api_key.client, require_known_reference=True
    )
    return account


def test_the_accounts_list_shows_only_the_merchants_own(api, shop):
    other = api_client_create(name="other").client
    account_create(name="Theirs", shortcode="600985", client=other)
    response = api.get("/payments/accounts/")
    assert response.status_code == 200
    (listed,) = response.json()
    assert listed["shortcode"] == "600984"
    assert listed["require_known_reference"] is True
    assert "url_token_hash" not in listed


def test_known_references_are_added_changed_and_removed_and_validation_follows(api, shop):
    url = "/payments/accounts/600984/references/"
    validate = lambda **body: c2b_validate(shop, parse_c2b_notification(c2b_body(**body))).code  # noqa: E731
    assert validate(bill_ref="INV-1001") == "C2B00012"

    created = api.post(url, {"reference": " INV-1001 ", "amount": "250.00"}, format="json")
    assert created.status_code == 201, created.content
    item = created.json()
    assert (item["reference"], item["amount"], item["active"]) == ("INV-1001", "250.00", True)
    assert validate(bill_ref="inv-1001", amount="250.00") == "0"
    assert validate(bill_ref="INV-1001", amount="300.00") == "C2B00013"

    changed = api.patch(f"{url}{item['id']}/", {"amount": None}, format="json")
    assert changed.status_code == 200 and changed.json()["amount"] is None
    assert validate(bill_ref="INV-1001", amount="300.00") == "0"

    assert api.get(url).json() == [changed.json()]
    assert api.delete(f"{url}{item['id']}/").status_code == 204
    assert validate(bill_ref="INV-1001") == "C2B00012"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"reference": ""}, "reference"),
        ({"reference": "   "}, "reference"),
        ({"reference": "x" * 101}, "reference"),
        ({"reference": "A", "amount": "abc"}, "amount"),
        ({"reference": "A", "amount": "-5"}, "amount"),
        ({"reference": "A", "amount": "1.005"}, "amount"),
    ],
)
def test_a_bad_reference_is_refused_naming_the_field(api, shop, body, field):
    response = api.post("/payments/accounts/600984/references/", body, format="json")
    assert response.status_code == 400
    assert field in response.json()["error"]["fields"]
    assert KnownReference.objects.count() == 0


def test_the_same_reference_twice_is_refused_clearly(api, shop):
    url = "/payments/accounts/600984/references/"
    assert api.post(url, {"reference": "INV-1"}, format="json").status_code == 201
    again = api.post(url, {"reference": "inv-1"}, format="json")
    assert again.status_code == 400
    assert "already known" in str(again.json()["error"]["fields"]["reference"])


def test_another_merchants_account_is_not_found(api, shop):
    other = api_client_create(name="other").client
    theirs, _ = account_create(name="Theirs", shortcode="600985", client=other)
    reference = KnownReference.objects.create(account=theirs, reference="SECRET", amount=Decimal(1))
    assert api.get("/payments/accounts/600985/references/").status_code == 404
    assert (
        api.post(
            "/payments/accounts/600985/references/", {"reference": "X"}, format="json"
        ).status_code
        == 404
    )
    assert api.delete(f"/payments/accounts/600985/references/{reference.pk}/").status_code == 404
    assert api.get(f"/payments/accounts/600984/references/{reference.pk}/").status_code == 404
    assert KnownReference.objects.filter(pk=reference.pk).exists()


def test_without_a_key_nothing_is_shown(shop):
    assert APIClient().get("/payments/accounts/").status_code == 401
