"""STK Push: the accepted response and every validation rule with its exact error."""

from __future__ import annotations

import base64
import json
import re
from datetime import datetime

import pytest

from simulator.codes import PENDING_RESULT_CODE
from simulator.config import SANDBOX_PASSKEY
from simulator.ids import EAT, stk_password
from simulator.tests.helpers import fresh_phone, wait_until

MERCHANT_REQUEST_ID = re.compile(r"^[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}\d+$")
REQUEST_ID = re.compile(r"^\d{4,5}-\d{7,8}-1$")


def _error(response, status: int, code: str, message: str) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"requestId", "errorCode", "errorMessage"}
    assert (body["errorCode"], body["errorMessage"]) == (code, message)
    assert REQUEST_ID.match(body["requestId"])


def test_accepted_response(sim):
    phone = fresh_phone()
    before = datetime.now(EAT).replace(microsecond=0)
    response = sim.push(phone)
    after = datetime.now(EAT)
    assert response.status_code == 200
    body = response.json()
    assert list(body) == [
        "MerchantRequestID",
        "CheckoutRequestID",
        "ResponseCode",
        "ResponseDescription",
        "CustomerMessage",
    ]
    assert body["ResponseCode"] == "0"
    assert body["ResponseDescription"] == "Success. Request accepted for processing"
    assert body["CustomerMessage"] == "Success. Request accepted for processing"
    assert MERCHANT_REQUEST_ID.match(body["MerchantRequestID"]), body["MerchantRequestID"]
    checkout = body["CheckoutRequestID"]
    match = re.fullmatch(r"ws_CO_(\d{14})(\d{1,3})(\d{9})", checkout)
    assert match, checkout
    assert match.group(3) == phone[-9:]
    embedded = datetime.strptime(match.group(1), "%d%m%Y%H%M%S").replace(tzinfo=EAT)
    assert before <= embedded <= after  # EAT, not UTC (hours off), however slow the push


def test_ids_are_unique_and_merchant_ids_count_up(sim):
    first = sim.accepted()
    second = sim.accepted()
    assert first["CheckoutRequestID"] != second["CheckoutRequestID"]
    a, b = first["MerchantRequestID"], second["MerchantRequestID"]
    assert a[:27] == b[:27]  # same gateway node
    assert int(b[27:]) == int(a[27:]) + 1


def test_numbers_may_be_strings_and_strings_numbers(sim):
    phone = fresh_phone()
    body = sim.push_body(
        phone,
        BusinessShortCode="174379",
        Amount="1",
        PartyA=phone,
        PartyB="174379",
        PhoneNumber=phone,
        AccountReference=12345,
    )
    assert sim.push(body=body).status_code == 200


def test_boundaries_are_accepted(sim):
    assert sim.push(Amount=1).status_code == 200
    assert sim.push(Amount=250_000).status_code == 200
    assert sim.push(AccountReference="A" * 12, TransactionDesc="D" * 13).status_code == 200
    assert sim.push(fresh_phone().replace("2547", "2541", 1)).status_code == 200
    assert sim.push(CallBackURL="https://example.co.ke/cb?x=1").status_code == 200


def test_password_is_base64_of_plain_concatenation():
    # The portal sample: shortcode 174379, the sandbox passkey, timestamp 20160216165627.
    password = stk_password("174379", SANDBOX_PASSKEY, "20160216165627")
    assert (
        password
        == base64.b64encode(("174379" + SANDBOX_PASSKEY + "20160216165627").encode()).decode()
    )
    assert password.startswith("MTc0Mzc5YmZi") and password.endswith("MTY1NjI3")


BAD = "Bad Request - Invalid "


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"BusinessShortCode": None}, "BusinessShortCode"),
        ({"BusinessShortCode": "17437x"}, "BusinessShortCode"),
        ({"Password": None}, "Password"),
        ({"Timestamp": None}, "Timestamp"),
        ({"Timestamp": "2026-06-01 10:00:00"}, "Timestamp"),
        ({"Timestamp": "20261341000000"}, "Timestamp"),
        ({"TransactionType": "CustomerPayBill"}, "TransactionType"),
        ({"TransactionType": None}, "TransactionType"),
        ({"Amount": 0}, "Amount"),
        ({"Amount": 250_001}, "Amount"),
        ({"Amount": "10.00"}, "Amount"),
        ({"Amount": 10.5}, "Amount"),
        ({"Amount": 10.0}, "Amount"),
        ({"Amount": "ten"}, "Amount"),
        ({"Amount": None}, "Amount"),
        ({"Amount": True}, "Amount"),
        ({"PhoneNumber": "0708374149"}, "PhoneNumber"),
        ({"PhoneNumber": 25470837414}, "PhoneNumber"),
        ({"PhoneNumber": "+254708374149"}, "PhoneNumber"),
        ({"PhoneNumber": None}, "PhoneNumber"),
        ({"PartyA": "254808374149"}, "PartyA"),
        ({"PartyA": None}, "PartyA"),
        # Both bad: Daraja names PhoneNumber first.
        ({"PartyA": "0708374149", "PhoneNumber": "0708374149"}, "PhoneNumber"),
        ({"PartyB": "abc"}, "PartyB"),
        ({"PartyB": None}, "PartyB"),
        ({"CallBackURL": "ftp://example.com/cb"}, "CallBackURL"),
        ({"CallBackURL": "example.com/cb"}, "CallBackURL"),
        ({"CallBackURL": "https://"}, "CallBackURL"),
        ({"CallBackURL": "https://exa mple.com/cb"}, "CallBackURL"),
        ({"CallBackURL": None}, "CallBackURL"),
        ({"AccountReference": None}, "AccountReference"),
        ({"AccountReference": ""}, "AccountReference"),
        ({"AccountReference": "A" * 13}, "AccountReference"),
        ({"TransactionDesc": None}, "Remarks"),
        ({"TransactionDesc": ""}, "Remarks"),
        ({"TransactionDesc": "D" * 14}, "Remarks"),
    ],
)
def test_gateway_validation(sim, changes, message):
    body = sim.push_body()
    for key, value in changes.items():
        if value is None:
            del body[key]
        else:
            body[key] = value
    _error(sim.push(body=body), 400, "400.002.02", BAD + message)


def test_fields_are_checked_in_order(sim):
    body = sim.push_body(Amount=0, CallBackURL="nope", TransactionDesc="")
    _error(sim.push(body=body), 400, "400.002.02", BAD + "Amount")


def test_body_must_be_json_with_json_content_type(sim):
    auth = {"Authorization": f"Bearer {sim.token}"}
    path = "/mpesa/stkpush/v1/processrequest"
    text = json.dumps(sim.push_body())
    cases = [
        (text, {"Content-Type": "text/plain"}),
        (text, {"Content-Type": "application/x-www-form-urlencoded"}),
        ("{not json", {"Content-Type": "application/json"}),
        ("[1, 2]", {"Content-Type": "application/json"}),
        ("", {"Content-Type": "application/json"}),
    ]
    for content, headers in cases:
        response = sim.http.post(path, content=content, headers={**auth, **headers})
        _error(response, 400, "400.002.02", BAD + "BusinessShortCode")
    ok = sim.http.post(
        path, content=text, headers={**auth, "Content-Type": "application/json; charset=utf-8"}
    )
    assert ok.status_code == 200


def test_wrong_password_is_wrong_credentials(sim):
    _error(sim.push(Password="d3Jvbmc="), 500, "500.001.1001", "Wrong credentials")
    # A valid password for a different timestamp than the one sent.
    other = sim.credentials("20260101000000")["Password"]
    _error(sim.push(Password=other), 500, "500.001.1001", "Wrong credentials")
    wrong_key = stk_password("174379", "not-the-passkey", sim.credentials()["Timestamp"])
    body = sim.push_body()
    body["Password"] = stk_password("174379", "not-the-passkey", body["Timestamp"])
    assert wrong_key  # computed from the same formula, but with the wrong passkey
    _error(sim.push(body=body), 500, "500.001.1001", "Wrong credentials")


def test_other_shortcode_is_unknown_merchant(sim):
    body = sim.push_body(BusinessShortCode=600000)
    body["Password"] = stk_password("600000", SANDBOX_PASSKEY, body["Timestamp"])
    _error(sim.push(body=body), 500, "500.001.1001", "Merchant does not exist")


def test_configured_shortcode_and_passkey(make_sim):
    sim = make_sim(shortcode="600100", passkey="secret-passkey")
    body = sim.push_body()
    assert body["BusinessShortCode"] == 600100
    assert sim.push(body=body).status_code == 200


def test_second_push_while_in_flight_locks_subscriber(sim):
    phone = fresh_phone()
    sim.script(phone=phone, delay=0.3)
    first = sim.accepted(phone)
    response = sim.push(phone)
    _error(
        response,
        500,
        "500.001.1001",
        "Unable to lock subscriber, a transaction is already in process for the current subscriber",
    )
    assert sim.push().status_code == 200  # other phones are not affected
    sim.wait_answered(first["CheckoutRequestID"])
    assert sim.push(phone).status_code == 200  # free again once the customer answered


def test_subscriber_lock_test_number_always_refuses(sim):
    for _ in range(2):
        _error(
            sim.push("254711000099"),
            500,
            "500.001.1001",
            "Unable to lock subscriber, a transaction is already in process for the current "
            "subscriber",
        )
    records = sim.http.get("/simulator/transactions").json()
    assert records["count"] == 0  # refused pushes are not transactions


def test_buy_goods_to_the_till(sim, receiver):
    accepted = sim.accepted(TransactionType="CustomerBuyGoodsOnline", PartyB=174380)
    (callback,) = receiver.wait_for(1, checkout_id=accepted["CheckoutRequestID"])
    assert callback.json()["Body"]["stkCallback"]["ResultCode"] == 0


@pytest.mark.parametrize(
    ("transaction_type", "party_b"),
    [("CustomerBuyGoodsOnline", 174379), ("CustomerPayBillOnline", 174380)],
)
def test_wrong_type_and_party_b_fails_in_the_callback(sim, receiver, transaction_type, party_b):
    response = sim.push(TransactionType=transaction_type, PartyB=party_b)
    assert response.status_code == 200  # accepted synchronously, as in real life
    checkout = response.json()["CheckoutRequestID"]
    (callback,) = receiver.wait_for(1, checkout_id=checkout)
    assert callback.json()["Body"]["stkCallback"] == {
        "MerchantRequestID": response.json()["MerchantRequestID"],
        "CheckoutRequestID": checkout,
        "ResultCode": "SFC_IC0003",
        "ResultDesc": "The operator does not exist.",
    }
    # The record may be settled a moment after its callback went out: wait for the final answer.
    final = wait_until(
        lambda: (
            (answer := sim.query(checkout).json()).get("ResultCode") != PENDING_RESULT_CODE
            and answer
        )
    )
    assert (final["ResultCode"], final["ResultDesc"]) == (
        "SFC_IC0003",
        "The operator does not exist.",
    )
