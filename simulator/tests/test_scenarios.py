"""The test-number table: outcome and delivery chosen by the payer's phone number."""

from __future__ import annotations

import time
from datetime import datetime
from pathlib import Path

import pytest

from simulator.codes import RESULT_DESCRIPTIONS
from simulator.scenarios import TEST_NUMBERS

FAILURES = [
    (phone, entry.plan.result_code, entry.plan.result_desc)
    for phone, entry in TEST_NUMBERS.items()
    if entry.plan.result_code != "0"
]


def _metadata(received) -> dict:
    items = received.json()["Body"]["stkCallback"]["CallbackMetadata"]["Item"]
    return {item["Name"]: item.get("Value", "<no value>") for item in items}


def test_table_covers_the_brief():
    names = {entry.name for entry in TEST_NUMBERS.values()}
    assert {
        "success",
        "cancelled",
        "insufficient_funds",
        "wrong_pin",
        "timeout_no_response",
        "unreachable",
        "rule_limited",
        "operator_not_exist",
        "subscriber_locked",
        "no_callback",
        "duplicate_callback",
        "late_callback",
        "malformed_callback",
        "empty_callback",
        "concurrent_duplicate",
        "success_decimal_amount",
        "success_no_balance",
    } <= names
    assert all(phone.startswith("2547110000") and len(phone) == 12 for phone in TEST_NUMBERS)


def test_every_test_number_is_documented():
    docs = Path(__file__).resolve().parents[2] / "docs" / "simulator.md"
    text = docs.read_text(encoding="utf-8")
    for phone in TEST_NUMBERS:
        assert phone in text, f"{phone} missing from docs/simulator.md"


@pytest.mark.parametrize(("phone", "code", "desc"), FAILURES)
def test_failure_numbers(sim, receiver, phone, code, desc):
    accepted = sim.accepted(phone)
    checkout = accepted["CheckoutRequestID"]
    (received,) = receiver.wait_for(1, checkout_id=checkout)
    callback = received.json()["Body"]["stkCallback"]
    assert callback["ResultCode"] == (int(code) if code.isdigit() else code)
    assert callback["ResultDesc"] == desc
    assert "CallbackMetadata" not in callback
    query = sim.query(checkout).json()
    assert (query["ResultCode"], query["ResultDesc"]) == (code, desc)


def test_the_two_1037_texts(sim, receiver):
    texts = {}
    for phone in ("254711000037", "254711000038"):
        checkout = sim.accepted(phone)["CheckoutRequestID"]
        (received,) = receiver.wait_for(1, checkout_id=checkout)
        texts[phone] = received.json()["Body"]["stkCallback"]["ResultDesc"]
    assert texts == {
        "254711000037": "No response from user.",
        "254711000038": "DS timeout user cannot be reached.",
    }


def test_plain_success_number_and_any_other_number(sim, receiver):
    checkout = sim.accepted("254711000000")["CheckoutRequestID"]
    (received,) = receiver.wait_for(1, checkout_id=checkout)
    values = _metadata(received)
    assert values["Amount"] == 10 and values["Balance"] == "<no value>"
    other = sim.accepted("254722999888")["CheckoutRequestID"]
    (received,) = receiver.wait_for(1, checkout_id=other)
    assert received.json()["Body"]["stkCallback"]["ResultCode"] == 0


def test_success_form_numbers(sim, receiver):
    results = {}
    for phone in ("254711000050", "254711000051", "254711000052"):
        checkout = sim.accepted(phone)["CheckoutRequestID"]
        (received,) = receiver.wait_for(1, checkout_id=checkout)
        results[phone] = received
    assert '"Value":10.00}' in results["254711000050"].text
    assert "Balance" not in _metadata(results["254711000051"])
    assert _metadata(results["254711000052"])["Balance"] == 0


def test_no_callback_ever(sim, receiver):
    checkout = sim.accepted("254711000040")["CheckoutRequestID"]
    record = sim.wait_answered(checkout)
    time.sleep(0.2)
    assert receiver.for_checkout(checkout) == []
    assert record["callbacks"] == [] and record["callback_due_at"] is None
    assert record["receipt"]  # the money moved: only a query or the statement shows it
    assert sim.query(checkout).json()["ResultCode"] == "0"


def test_duplicate_callback_three_times(sim, receiver):
    checkout = sim.accepted("254711000041")["CheckoutRequestID"]
    received = receiver.wait_for(3, checkout_id=checkout)
    assert len({r.raw for r in received}) == 1  # identical bodies
    assert received[1].at - received[0].at >= 0.015
    time.sleep(0.1)
    assert len(receiver.for_checkout(checkout)) == 3


def test_late_callback_after_query_is_final(sim, receiver):
    checkout = sim.accepted("254711000042")["CheckoutRequestID"]
    record = sim.wait_answered(checkout)
    assert sim.query(checkout).json()["ResultCode"] == "0"
    assert receiver.for_checkout(checkout) == []  # not yet
    (received,) = receiver.wait_for(1, checkout_id=checkout)
    answered = datetime.fromisoformat(record["answer_at"]).timestamp()
    assert received.at - answered >= sim.config.late_delay - 0.01
    assert record["plan"]["late"] is True


def test_malformed_callback(sim, receiver):
    checkout = sim.accepted("254711000043")["CheckoutRequestID"]
    sim.wait_answered(checkout)
    received = receiver.wait_for(1)
    assert len(received) == 1
    with pytest.raises(ValueError):
        received[0].json()
    assert received[0].text.startswith('{"Body":{"stkCallback":')


def test_empty_callback_only(sim, receiver):
    sim.accepted("254711000044")
    (received,) = receiver.wait_for(1)
    assert received.raw == b"{}"
    time.sleep(0.1)
    assert len(receiver.received) == 1


def test_empty_then_real_callback(sim, receiver):
    checkout = sim.accepted("254711000045")["CheckoutRequestID"]
    first, second = receiver.wait_for(2)
    assert first.raw == b"{}"
    assert second.json()["Body"]["stkCallback"]["CheckoutRequestID"] == checkout


def test_concurrent_duplicate_delivery(sim, receiver):
    # Both POSTs are in flight at once: the receiver answers neither until both arrived, so
    # two POSTs sent one after the other would leave the first to time out. (Their arrival
    # times say nothing on a busy machine, where one thread may start 100 ms after the other.)
    receiver.answer_together = 2
    checkout = sim.accepted("254711000046")["CheckoutRequestID"]
    first, second = receiver.wait_for(2, checkout_id=checkout)
    assert first.raw == second.raw
    attempts = sim.wait_callbacks(checkout, 2)
    assert [(a["status_code"], a["error"]) for a in attempts] == [(200, None), (200, None)]


def test_descriptions_come_from_the_code_table():
    for _, code, desc in FAILURES:
        if code != "1037":
            assert RESULT_DESCRIPTIONS[code] == desc
