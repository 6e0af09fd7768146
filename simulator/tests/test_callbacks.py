"""Callback bodies: the real envelope, success metadata forms, failures, receipts."""

from __future__ import annotations

import json
import random
import re
import time
from datetime import UTC, date, datetime
from decimal import Decimal

import pytest

from simulator.callbacks import stk_callback_text
from simulator.ids import EAT, IdFactory, receipt_date, receipt_prefix
from simulator.tests.helpers import fresh_phone

RECEIPT = re.compile(r"^[A-Z0-9]{10}$")


def _callback(sim, receiver, **script):
    phone = fresh_phone()
    if script:
        sim.script(phone=phone, **script)
    accepted = sim.accepted(phone, Amount=10)
    (received,) = receiver.wait_for(1, checkout_id=accepted["CheckoutRequestID"])
    return accepted, phone, received


def test_success_shape(sim, receiver):
    before = datetime.now(EAT).replace(microsecond=0)
    accepted, phone, received = _callback(sim, receiver, amount_form="int", balance_form="no_value")
    after = datetime.now(EAT)
    assert received.headers["Content-Type"] == "application/json"
    assert received.path == "/mpesa/callback"
    body = received.json()
    assert list(body) == ["Body"] and list(body["Body"]) == ["stkCallback"]
    callback = body["Body"]["stkCallback"]
    assert list(callback) == [
        "MerchantRequestID",
        "CheckoutRequestID",
        "ResultCode",
        "ResultDesc",
        "CallbackMetadata",
    ]
    assert callback["MerchantRequestID"] == accepted["MerchantRequestID"]
    assert callback["CheckoutRequestID"] == accepted["CheckoutRequestID"]
    assert callback["ResultCode"] == 0 and isinstance(callback["ResultCode"], int)
    assert callback["ResultDesc"] == "The service request is processed successfully."
    items = callback["CallbackMetadata"]["Item"]
    assert [item["Name"] for item in items] == [
        "Amount",
        "MpesaReceiptNumber",
        "Balance",
        "TransactionDate",
        "PhoneNumber",
    ]
    values = {item["Name"]: item.get("Value") for item in items}
    assert values["Amount"] == 10 and isinstance(values["Amount"], int)
    assert items[2] == {"Name": "Balance"}
    receipt = values["MpesaReceiptNumber"]
    assert RECEIPT.match(receipt)
    tx_date = values["TransactionDate"]
    assert isinstance(tx_date, int) and len(str(tx_date)) == 14
    completed = datetime.strptime(str(tx_date), "%Y%m%d%H%M%S").replace(tzinfo=EAT)
    assert before <= completed <= after  # EAT wall time, however slow the callback
    assert receipt_date(receipt) == completed.date()
    assert values["PhoneNumber"] == int(phone)
    record = sim.record(accepted["CheckoutRequestID"])
    assert record["receipt"] == receipt
    assert record["transaction_date"] == str(tx_date)


def test_decimal_amount_is_raw_json_text(sim, receiver):
    _, _, received = _callback(sim, receiver, amount_form="decimal")
    assert '{"Name":"Amount","Value":10.00}' in received.text
    parsed = json.loads(received.raw, parse_float=Decimal)
    amount = parsed["Body"]["stkCallback"]["CallbackMetadata"]["Item"][0]["Value"]
    assert amount == Decimal("10.00") and str(amount) == "10.00"


@pytest.mark.parametrize(
    ("form", "expected"),
    [
        ("no_value", [{"Name": "Balance"}]),
        ("zero", [{"Name": "Balance", "Value": 0}]),
        ("absent", []),
    ],
)
def test_balance_forms(sim, receiver, form, expected):
    _, _, received = _callback(sim, receiver, balance_form=form)
    items = received.json()["Body"]["stkCallback"]["CallbackMetadata"]["Item"]
    assert [i for i in items if i["Name"] == "Balance"] == expected
    assert len(items) == 4 + len(expected)


def test_default_forms_vary_deterministically_with_the_seed(make_sim):
    def forms(sim):
        checkouts = [sim.accepted()["CheckoutRequestID"] for _ in range(16)]
        records = [sim.record(c) for c in checkouts]
        return [(r["amount_form"], r["balance_form"]) for r in records]

    a = forms(make_sim(seed=77))
    b = forms(make_sim(seed=77))
    assert a == b
    assert {f for f, _ in a} == {"int", "decimal"}
    assert len({f for _, f in a}) >= 2


@pytest.mark.parametrize(
    ("code", "desc"),
    [
        ("1", "The balance is insufficient for the transaction."),
        ("17", "Rule limited."),
        (
            "1001",
            "Unable to lock subscriber, a transaction is already in process for the current "
            "subscriber",
        ),
        ("1019", "Transaction has expired."),
        ("1025", "An error occurred while sending a push request."),
        ("1032", "Request Cancelled by user."),
        ("1037", "No response from user."),
        ("2001", "The initiator information is invalid."),
        ("2028", "The request is not permitted according to product assignment."),
        ("8006", "The security credential is locked."),
        ("SFC_IC0003", "The operator does not exist."),
    ],
)
def test_failure_callbacks_have_no_metadata(sim, receiver, code, desc):
    accepted, _, received = _callback(sim, receiver, result_code=code)
    assert received.json() == {
        "Body": {
            "stkCallback": {
                "MerchantRequestID": accepted["MerchantRequestID"],
                "CheckoutRequestID": accepted["CheckoutRequestID"],
                "ResultCode": int(code) if code.isdigit() else code,
                "ResultDesc": desc,
            }
        }
    }
    record = sim.record(accepted["CheckoutRequestID"])
    assert record["receipt"] is None and record["status"] == "failed"


def test_script_result_desc_override(sim, receiver):
    _, _, received = _callback(
        sim, receiver, result_code="1037", result_desc="DS timeout user cannot be reached"
    )
    assert received.json()["Body"]["stkCallback"]["ResultDesc"] == (
        "DS timeout user cannot be reached"
    )


def test_callback_text_builder_refuses_incomplete_success():
    with pytest.raises(ValueError):
        stk_callback_text(
            merchant_request_id="m", checkout_request_id="c", result_code="0", result_desc="ok"
        )


@pytest.mark.parametrize(
    ("day", "prefix"),
    [
        (date(2017, 7, 27), "LG"),  # LGR7OWQX0R, 2017 sandbox README
        (date(2025, 4, 28), "TDS"),
        (date(2026, 6, 1), "UF1"),
        (date(2023, 3, 20), "RCK"),
        (date(2025, 11, 5), "TK5"),
        (date(2022, 12, 31), "QLV"),
        (date(2025, 9, 17), "TIH"),
        (date(2027, 1, 10), "VAA"),
    ],
)
def test_receipt_date_encoding(day, prefix):
    assert receipt_prefix(day).startswith(prefix)
    assert receipt_date(receipt_prefix(day) + "ABCDEFG") == day


def test_receipts_are_unique_and_well_formed():
    factory = IdFactory(random.Random(5))
    when = datetime(2026, 6, 1, 19, 36, 4, tzinfo=EAT)
    receipts = [factory.receipt(when) for _ in range(3000)]
    assert len(set(receipts)) == 3000
    assert all(RECEIPT.match(r) and r.startswith("UF1") for r in receipts)
    # The date is the EAT date: 22:30 UTC on 31 May is already 1 June in Nairobi.
    late_utc = datetime(2026, 5, 31, 22, 30, tzinfo=UTC)
    assert factory.receipt(late_utc).startswith("UF1")


def test_receiver_status_and_body_are_recorded_without_retry(sim, receiver):
    receiver.status = 500
    receiver.reply = b"boom"
    accepted, _, _ = _callback(sim, receiver)
    sim.wait_callbacks(accepted["CheckoutRequestID"], 1)
    time.sleep(0.1)
    attempts = sim.record(accepted["CheckoutRequestID"])["callbacks"]
    assert len(attempts) == 1  # Safaricom does not retry failed callbacks
    assert attempts[0]["status_code"] == 500
    assert attempts[0]["response_body"] == "boom"


def test_unreachable_receiver_is_recorded(sim):
    accepted = sim.accepted(CallBackURL="http://127.0.0.1:9/unreachable")
    attempts = sim.wait_callbacks(accepted["CheckoutRequestID"], 1)
    assert attempts[0]["status_code"] is None
    assert "ConnectError" in attempts[0]["error"]
