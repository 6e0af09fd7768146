"""STK Query: unknown ids, both pending generations, and the final answer with a string code."""

from __future__ import annotations

import pytest

from simulator.tests.helpers import fresh_phone

FINAL_KEYS = [
    "ResponseCode",
    "ResponseDescription",
    "MerchantRequestID",
    "CheckoutRequestID",
    "ResultCode",
    "ResultDesc",
]


def test_unknown_checkout_request_id(sim):
    response = sim.query("ws_CO_01012026000000000708374149")
    assert response.status_code == 400
    body = response.json()
    assert body["errorCode"] == "400.002.02"
    assert body["errorMessage"] == "Bad Request - Invalid CheckoutRequestID"
    missing = sim.query("")
    assert missing.json()["errorMessage"] == "Bad Request - Invalid CheckoutRequestID"


def test_query_checks_credentials_and_content_type(sim):
    accepted = sim.accepted()
    wrong = sim.query(accepted["CheckoutRequestID"], Password="bm9wZQ==")
    assert wrong.status_code == 500
    assert wrong.json()["errorMessage"] == "Wrong credentials"
    response = sim.http.post(
        "/mpesa/stkpushquery/v1/query",
        content="BusinessShortCode=174379",
        headers={"Authorization": f"Bearer {sim.token}", "Content-Type": "text/plain"},
    )
    assert response.status_code == 400
    assert response.json()["errorMessage"] == "Bad Request - Invalid BusinessShortCode"


def test_pending_legacy_generation(make_sim):
    sim = make_sim(query_pending="legacy", callback_delay=0.3)
    checkout = sim.accepted()["CheckoutRequestID"]
    response = sim.query(checkout)
    assert response.status_code == 500
    assert response.json() == {
        "requestId": checkout,  # the older generation echoes the CheckoutRequestID
        "errorCode": "500.001.1001",
        "errorMessage": "The transaction is being processed",
    }


def test_pending_modern_generation(make_sim):
    sim = make_sim(query_pending="modern", callback_delay=0.3)
    accepted = sim.accepted()
    response = sim.query(accepted["CheckoutRequestID"])
    assert response.status_code == 200
    body = response.json()
    assert list(body) == FINAL_KEYS
    assert body["ResponseCode"] == "0"
    assert body["ResponseDescription"] == "The service request has been accepted successfully"
    assert body["MerchantRequestID"] == accepted["MerchantRequestID"]
    assert (body["ResultCode"], body["ResultDesc"]) == (
        "4999",
        "The transaction is still under processing",
    )


def test_mixed_mode_picks_a_generation_per_transaction(make_sim):
    sim = make_sim(callback_delay=1.0)
    styles = []
    for _ in range(12):
        checkout = sim.accepted()["CheckoutRequestID"]
        styles.append("legacy" if sim.query(checkout).status_code == 500 else "modern")
    assert set(styles) == {"legacy", "modern"}
    # Deterministic for a seed: the records name the same choice.
    records = sim.http.get("/simulator/transactions").json()["transactions"]
    assert [r["pending_style"] for r in records] == styles


@pytest.mark.parametrize("generation", ["legacy", "modern"])
def test_script_chooses_the_generation_then_final(sim, generation):
    phone = fresh_phone()
    sim.script(phone=phone, result_code="1032", delay=0.25, pending=generation)
    accepted = sim.accepted(phone)
    checkout = accepted["CheckoutRequestID"]
    pending = sim.query(checkout)
    assert pending.status_code == (500 if generation == "legacy" else 200)
    sim.wait_answered(checkout)
    final = sim.query(checkout)
    assert final.status_code == 200
    assert final.json() == {
        "ResponseCode": "0",
        "ResponseDescription": "The service request has been accepted successfully",
        "MerchantRequestID": accepted["MerchantRequestID"],
        "CheckoutRequestID": checkout,
        "ResultCode": "1032",  # a string in queries, unlike the callback's number
        "ResultDesc": "Request Cancelled by user.",
    }


def test_final_success_is_string_zero(sim, receiver):
    checkout = sim.accepted()["CheckoutRequestID"]
    receiver.wait_for(1, checkout_id=checkout)
    body = sim.query(checkout).json()
    assert (body["ResultCode"], body["ResultDesc"]) == (
        "0",
        "The service request is processed successfully.",
    )
    record = sim.record(checkout)
    assert [q["answer"] for q in record["queries"]] == ["final"]


def test_customer_delay_separate_from_callback_delay(make_sim, receiver):
    sim = make_sim(callback_delay=0.05, customer_delay=0.3)
    checkout = sim.accepted()["CheckoutRequestID"]
    # The callback never precedes the answer, so it comes at the customer delay.
    pending = sim.query(checkout)
    assert pending.status_code == 500 or pending.json()["ResultCode"] == "4999"
    assert receiver.for_checkout(checkout) == []
    receiver.wait_for(1, checkout_id=checkout)
    assert sim.query(checkout).json()["ResultCode"] == "0"
