"""The attack suite for the payments API's input: hostile or absurd values are a 400 naming
the field at fault, never a 500, and nothing is created."""

import pytest

from payments.models import Payment

pytestmark = pytest.mark.django_db

VALID = {
    "phone_number": "0712345678",
    "amount": 100,
    "account_reference": "ORDER1",
    "description": "Test",
}


def stk_push_raw(api, body: bytes):
    return api.post("/payments/stk-push/", body, content_type="application/json")


@pytest.mark.parametrize(
    "amount",
    ["1e999999999", "-1e999999999", "1E+999999999", "1e-999999999", "9" * 400 + ".0"],
)
def test_an_amount_beyond_decimal_range_is_a_400_naming_amount(api, daraja, amount):
    body = (
        '{"phone_number": "0712345678", "amount": %s, "account_reference": "A", '
        '"description": "B"}' % amount
    ).encode()
    response = stk_push_raw(api, body)

    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert error["code"] == "validation_error"
    assert list(error["fields"]) == ["amount"]
    assert not Payment.objects.exists()


def test_unknown_and_wrong_fields_are_named_in_one_400(api, daraja):
    body = {
        **VALID,
        "amount": "ten",
        "phone_number": "12",
        "colour": "red",
        "callback_url": "http://evil.example/",
    }
    response = api.post("/payments/stk-push/", body, format="json")

    assert response.status_code == 400
    fields = response.json()["error"]["fields"]
    assert set(fields) == {"amount", "phone_number", "colour", "callback_url"}
    assert fields["colour"] == fields["callback_url"] == "Unknown field."
    assert "not a number" in fields["amount"]
    message = response.json()["error"]["message"]
    assert "colour" in message and "amount" in message
    assert not Payment.objects.exists()


def test_unknown_fields_alone_are_still_refused(api, daraja):
    response = api.post("/payments/stk-push/", {**VALID, "status": "SUCCESS"}, format="json")

    assert response.status_code == 400
    assert response.json()["error"]["fields"] == {"status": "Unknown field."}
    assert not Payment.objects.exists()


@pytest.mark.parametrize(
    "query",
    [
        "created_before=9999-12-31T23:59:59-23:59",
        "created_after=9999-12-31T23:59:59-23:59",
        "created_after=0001-01-01T00:00:00%2B23:59",
        "created_before=0001-01-01T00:00:00",
    ],
)
def test_a_time_outside_the_utc_calendar_is_a_400_naming_the_filter(api, query):
    response = api.get(f"/payments/?{query}")

    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert error["code"] == "validation_error"
    assert list(error["fields"]) == [query.split("=")[0]]


@pytest.mark.parametrize(
    "query",
    [
        "starting_after=not-a-uuid",
        "ending_before=%00",
        "starting_after=" + "a" * 5000,
        "page=-1",
        "page=99999999999999999999999",
    ],
)
def test_a_bad_cursor_or_page_is_a_4xx_not_a_500(api, query):
    response = api.get(f"/payments/?{query}")

    assert response.status_code in (400, 404), response.content
    assert response.json()["error"]["code"] in ("validation_error", "not_found")
