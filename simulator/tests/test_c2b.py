"""C2B in the simulator: Register URL's rules, simulate → validation → confirmation, the
MSISDN and name forms, duplicate and dropped confirmations, and the statement's C2B lines."""

from __future__ import annotations

import csv
import hashlib
import io
import json

import pytest

from simulator.tests.helpers import wait_until

SHORTCODE = "600984"
PHONE = "254712345678"


def register(sim, receiver, version="v2", response_type="Completed", **overrides):
    body = {
        "ShortCode": SHORTCODE,
        "ResponseType": response_type,
        "ConfirmationURL": receiver.url.replace("/mpesa/callback", "/c2b/t/confirmation/"),
        "ValidationURL": receiver.url.replace("/mpesa/callback", "/c2b/t/validation/"),
        **overrides,
    }
    return sim.http.post(
        f"/mpesa/c2b/{version}/registerurl",
        json=body,
        headers={"Authorization": f"Bearer {sim.token}"},
    )


def simulate(sim, version="v2", **overrides):
    body = {
        "ShortCode": int(SHORTCODE),
        "CommandID": "CustomerPayBillOnline",
        "Amount": 250,
        "Msisdn": int(PHONE),
        "BillRefNumber": "INV-1001",
        **overrides,
    }
    return sim.http.post(
        f"/mpesa/c2b/{version}/simulate",
        json=body,
        headers={"Authorization": f"Bearer {sim.token}"},
    )


def _by_path(receiver, part):
    return [r for r in receiver.received if part in r.path]


def test_register_url_answers_as_daraja(sim, receiver):
    response = register(sim, receiver)
    assert response.status_code == 200
    body = response.json()
    assert body["ResponseCode"] == "0" and body["ResponseDescription"] == "Success"
    assert "OriginatorCoversationID" in body  # Daraja's spelling


@pytest.mark.parametrize(
    "overrides",
    [
        {"ConfirmationURL": "https://example.com/mpesa/confirm"},
        {"ValidationURL": "https://example.com/SQL/validate"},
        {"ConfirmationURL": "https://example.com/Query/confirm"},
        {"ConfirmationURL": "ftp://example.com/confirm"},
        {"ResponseType": "completed"},
        {"ShortCode": "abc"},
    ],
)
def test_register_url_refuses_what_daraja_refuses(sim, receiver, overrides):
    response = register(sim, receiver, **overrides)
    assert response.status_code == 400
    assert response.json()["errorCode"] == "400.002.02"


def test_simulate_validates_then_confirms(sim, receiver):
    register(sim, receiver)
    response = simulate(sim)
    assert response.status_code == 200
    assert response.json()["ResponseDescription"] == "Accept the service request successfully."
    receiver.wait_for(2)
    validation, confirmation = receiver.received
    assert "/validation/" in validation.path and "/confirmation/" in confirmation.path
    asked, told = validation.json(), confirmation.json()
    assert asked["TransactionType"] == "" and asked["OrgAccountBalance"] == ""
    assert told["TransactionType"] == "Pay Bill"
    assert told["TransID"] == asked["TransID"]
    assert told["TransAmount"] == "250.00"
    assert told["BusinessShortCode"] == SHORTCODE
    assert told["BillRefNumber"] == "INV-1001"
    assert told["MSISDN"] == "2547 ***** 678"  # v2: masked
    assert all(isinstance(value, str) for value in told.values())


def test_v1_sends_the_msisdn_hashed(sim, receiver):
    register(sim, receiver, version="v1")
    simulate(sim, version="v1")
    receiver.wait_for(2)
    assert receiver.received[1].json()["MSISDN"] == hashlib.sha256(PHONE.encode()).hexdigest()


def test_options_plain_msisdn_first_name_only_and_three_confirmations(sim, receiver):
    register(sim, receiver)
    options = sim.http.post(
        "/simulator/c2b", json={"msisdn": "plain", "names": "first_only", "confirmations": 3}
    )
    assert options.status_code == 200
    simulate(sim)
    receiver.wait_for(4)
    confirmations = _by_path(receiver, "/confirmation/")
    assert len(confirmations) == 3
    assert len({c.raw for c in confirmations}) == 1  # the same body three times
    body = confirmations[0].json()
    assert body["MSISDN"] == PHONE
    assert "MiddleName" not in body and "LastName" not in body


def test_a_dropped_confirmation_still_completes_the_payment(sim, receiver):
    register(sim, receiver)
    sim.http.post("/simulator/c2b", json={"confirmations": 0})
    simulate(sim)
    payments = wait_until(
        lambda: [
            p
            for p in sim.http.get("/simulator/c2b/payments").json()["payments"]
            if p["status"] == "completed"
        ]
    )
    assert payments[0]["confirmations"] == []
    assert _by_path(receiver, "/confirmation/") == []


def test_a_rejecting_validation_stops_the_payment(sim, receiver):
    register(sim, receiver)
    receiver.reply = b'{"ResultCode": "C2B00012", "ResultDesc": "Rejected"}'
    simulate(sim)
    wait_until(
        lambda: (
            sim.http.get("/simulator/c2b/payments").json()["payments"][0]["status"] == "rejected"
        )
    )
    assert _by_path(receiver, "/confirmation/") == []


@pytest.mark.parametrize(
    ("response_type", "status"), [("Completed", "completed"), ("Cancelled", "cancelled")]
)
def test_an_unanswered_validation_follows_the_response_type(
    make_sim, receiver, response_type, status
):
    sim = make_sim(c2b_validation_timeout=0.2)
    register(sim, receiver, response_type=response_type)
    receiver.answer_together = 99  # the receiver holds every answer: validation times out
    simulate(sim)
    wait_until(
        lambda: sim.http.get("/simulator/c2b/payments").json()["payments"][0]["status"] == status,
        timeout=10,
    )


def test_simulate_refuses_a_bad_amount_or_command(sim, receiver):
    register(sim, receiver)
    assert simulate(sim, Amount="ten").status_code == 400
    assert simulate(sim, Amount=10.5).status_code == 400
    assert simulate(sim, CommandID="CustomerPay").status_code == 400


def test_completed_paybill_payments_are_in_the_statement(sim, receiver):
    register(sim, receiver)
    simulate(sim)
    simulate(sim, CommandID="CustomerBuyGoodsOnline", BillRefNumber=None)
    wait_until(
        lambda: (
            all(
                p["status"] == "completed"
                for p in sim.http.get("/simulator/c2b/payments").json()["payments"]
            )
            and len(sim.http.get("/simulator/c2b/payments").json()["payments"]) == 2
        )
    )
    paybill = sim.http.get("/simulator/c2b/payments").json()["payments"][0]
    rows = list(csv.reader(io.StringIO(sim.http.get("/simulator/statement.csv").text)))
    lines = rows[7:]
    assert [line[0] for line in lines] == [paybill["trans_id"]]  # till money lands elsewhere
    assert lines[0][5] == "250.00"
    assert lines[0][12] == " INV-1001"
    assert json.dumps(paybill)  # the listing is JSON
