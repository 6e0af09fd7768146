import json
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from daraja.parsing import (
    PayloadError,
    parse_stk_callback,
    parse_stk_query_response,
)
from testsupport import REAL_PAYLOADS, real_payloads, stk_failure_body, stk_success_body

CHECKOUT = "ws_CO_27112026103000123712345678"


@pytest.mark.parametrize(
    ("raw", "expected"), [("10", "10"), ("1.00", "1.00"), ("1.0", "1.0"), ('"450"', "450")]
)
def test_success_amount_in_every_observed_form_is_read_exactly(raw, expected):
    parsed = parse_stk_callback(stk_success_body(checkout_request_id=CHECKOUT, amount=raw))
    assert parsed.is_success
    assert parsed.amount == Decimal(expected)
    assert isinstance(parsed.amount, Decimal)


@pytest.mark.parametrize("balance", ["no_value", "zero", "absent"])
def test_balance_item_present_without_value_with_zero_or_absent(balance):
    parsed = parse_stk_callback(stk_success_body(checkout_request_id=CHECKOUT, balance=balance))
    assert parsed.receipt_number == "UKR1ABCDEF"
    assert parsed.balance == (Decimal("0") if balance == "zero" else None)


def test_transaction_date_is_east_africa_time_converted_to_utc():
    parsed = parse_stk_callback(
        stk_success_body(checkout_request_id=CHECKOUT, transaction_date=20260601193604)
    )
    assert parsed.transaction_date == datetime(2026, 6, 1, 16, 36, 4, tzinfo=UTC)


def test_inner_object_without_envelope_is_accepted():
    parsed = parse_stk_callback(stk_success_body(checkout_request_id=CHECKOUT, envelope=False))
    assert parsed.checkout_request_id == CHECKOUT and parsed.is_success


def test_items_in_any_order_and_phone_as_string():
    body = {
        "Body": {
            "stkCallback": {
                "CheckoutRequestID": CHECKOUT,
                "MerchantRequestID": "1",
                "ResultDesc": "ok",
                "ResultCode": 0,
                "CallbackMetadata": {
                    "Item": [
                        {"Name": "PhoneNumber", "Value": "<redacted>"},
                        {"Name": "TransactionDate", "Value": 20261006095233},
                        {"Name": "MpesaReceiptNumber", "Value": "<redacted>"},
                        {"Name": "Amount", "Value": 1},
                    ]
                },
            }
        }
    }
    parsed = parse_stk_callback(json.dumps(body))
    assert parsed.amount == Decimal(1) and parsed.phone_number == "<redacted>"


@pytest.mark.parametrize(
    ("code", "desc"),
    [
        (1032, "Request Cancelled by user."),
        (1037, "DS timeout user cannot be reached"),
        (1, "The balance is insufficient for the transaction."),
        (2001, "The initiator information is invalid."),
        (17, "Rule limited."),
        ("SFC_IC0003", "The operator does not exist."),
        (1032, "[STK_CB - ]Request cancelled by user"),
    ],
)
def test_failures_keep_their_code_as_a_string(code, desc):
    parsed = parse_stk_callback(
        stk_failure_body(checkout_request_id=CHECKOUT, result_code=code, result_desc=desc)
    )
    assert not parsed.is_success
    assert parsed.result_code == str(code)
    assert parsed.result_desc == desc
    assert parsed.amount is None


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"", "not valid JSON"),
        (b"{}", "not an STK callback"),
        (b"[]", "must be a JSON object"),
        (b'{"Body": {}}', "Body.stkCallback"),
        (b'{"Body": {"stkCallback": {"ResultCode": 0}}}', "CheckoutRequestID is missing"),
        (b'{"Body": {"stkCallback": {"CheckoutRequestID": "x"}}}', "ResultCode is missing"),
        (
            b'{"Body": {"stkCallback": {"CheckoutRequestID": "x", "ResultCode": true}}}',
            "ResultCode",
        ),
        (
            b'{"Body": {"stkCallback": {"CheckoutRequestID": "x", "ResultCode": 0}}}',
            "without CallbackMetadata Amount",
        ),
        (
            b'{"Body":{"stkCallback":{"CheckoutRequestID":"x","ResultCode":0,"CallbackMetadata":{"Item":[{"Name":"Amount","Value":"ten"},{"Name":"MpesaReceiptNumber","Value":"A"}]}}}}',
            "Amount",
        ),
        (
            b'{"Body":{"stkCallback":{"CheckoutRequestID":"x","ResultCode":0,"CallbackMetadata":{"Item":[{"Name":"Amount","Value":-5},{"Name":"MpesaReceiptNumber","Value":"A"}]}}}}',
            "positive",
        ),
        (
            b'{"Body":{"stkCallback":{"CheckoutRequestID":"x","ResultCode":0,"CallbackMetadata":{"Item":[{"Name":"Amount","Value":1e400},{"Name":"MpesaReceiptNumber","Value":"A"}]}}}}',
            "Amount",
        ),
        (
            b'{"Body":{"stkCallback":{"CheckoutRequestID":"x","ResultCode":0,"CallbackMetadata":{"Item":[{"Name":"Amount","Value":10}]}}}}',
            "MpesaReceiptNumber",
        ),
        (
            b'{"Body":{"stkCallback":{"CheckoutRequestID":"x","ResultCode":0,"CallbackMetadata":{"Item":[{"Name":"Amount","Value":10},{"Name":"Amount","Value":20},{"Name":"MpesaReceiptNumber","Value":"A"}]}}}}',
            "more than once",
        ),
        (b'{"a":' * 5000 + b"1" + b"}" * 5000, "nested too deeply"),
    ],
)
def test_unusable_payloads_raise_an_error_naming_the_problem(body, message):
    with pytest.raises(PayloadError) as error:
        parse_stk_callback(body)
    assert message in str(error.value)


def test_amount_is_never_read_as_zero_when_malformed():
    body = stk_success_body(checkout_request_id=CHECKOUT, amount='""')
    with pytest.raises(PayloadError):
        parse_stk_callback(body)


def test_query_answers_pending_4999_and_final_string_code():
    pending = parse_stk_query_response(
        {"ResultCode": "4999", "ResultDesc": "The transaction is still under processing"}
    )
    assert pending.pending and pending.result_code is None
    final = parse_stk_query_response(
        {
            "ResponseCode": "0",
            "ResultCode": "1037",
            "ResultDesc": "No response from user.",
            "CheckoutRequestID": CHECKOUT,
        }
    )
    assert not final.pending and final.result_code == "1037" and not final.is_success
    assert parse_stk_query_response({"ResultCode": "0", "ResultDesc": "ok"}).is_success


# --- The real captured payloads (kept outside the repository, in the project's shared folder).
REAL_CALLBACKS = real_payloads("stk_callback_*.json")


@pytest.mark.skipif(not REAL_CALLBACKS, reason=f"real payloads not found in {REAL_PAYLOADS}")
@pytest.mark.parametrize("path", REAL_CALLBACKS, ids=lambda p: p.name)
def test_every_real_stk_callback_payload_parses(path):
    parsed = parse_stk_callback(path.read_bytes())
    raw = json.loads(path.read_text())
    inner = raw.get("Body", {}).get("stkCallback", raw)
    assert parsed.checkout_request_id == inner["CheckoutRequestID"]
    assert parsed.result_code == str(inner["ResultCode"])
    if parsed.is_success:
        items = {item["Name"]: item.get("Value") for item in inner["CallbackMetadata"]["Item"]}
        assert parsed.amount == Decimal(str(items["Amount"]))
        assert parsed.receipt_number == items["MpesaReceiptNumber"]
    else:
        assert parsed.amount is None


REAL_QUERIES = real_payloads("stkquery_response_*.json")


@pytest.mark.skipif(not REAL_QUERIES, reason=f"real payloads not found in {REAL_PAYLOADS}")
@pytest.mark.parametrize("path", REAL_QUERIES, ids=lambda p: p.name)
def test_every_real_stk_query_answer_parses(path):
    raw = json.loads(path.read_text())
    data = raw.get("response", raw)
    result = parse_stk_query_response(data)
    assert result.pending == (data["ResultCode"] == "4999")
