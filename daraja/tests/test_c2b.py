import hashlib
import json
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from daraja.c2b import MsisdnForm, parse_c2b_notification
from daraja.parsing import PayloadError
from testsupport import OMIT, c2b_body, real_payloads


def test_a_confirmation_is_read_whole():
    parsed = parse_c2b_notification(c2b_body())
    assert parsed.trans_id == "UL5C2B7QXA"
    assert parsed.amount == Decimal("250.00")
    assert isinstance(parsed.amount, Decimal)
    assert parsed.shortcode == "600984"
    assert parsed.bill_ref_number == "INV-1001"
    assert parsed.transaction_type == "Pay Bill"
    assert parsed.channel == "paybill"
    # 14:30:15 East Africa Time is 11:30:15 UTC.
    assert parsed.trans_time == datetime(2026, 12, 5, 11, 30, 15, tzinfo=UTC)
    assert parsed.org_account_balance == Decimal("18250.00")
    assert parsed.msisdn == "254712345678"
    assert parsed.msisdn_form == MsisdnForm.PLAIN
    assert parsed.payer_name == "Wanjiru Kamau"
    assert parsed.warnings == ()


@pytest.mark.parametrize(
    ("raw", "expected"), [("4000.00", "4000.00"), ("10", "10"), ("1.0", "1.0")]
)
def test_amount_in_every_observed_form(raw, expected):
    assert parse_c2b_notification(c2b_body(amount=raw)).amount == Decimal(expected)


def test_amount_as_a_json_number_is_read_exactly():
    body = c2b_body().replace(b'"TransAmount": "250.00"', b'"TransAmount": 1.10')
    parsed = parse_c2b_notification(body)  # the JSON number is read as Decimal, never float
    assert parsed.amount == Decimal("1.1")


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("", "TransAmount: amount is empty"),
        ("abc", "not a number"),
        ("1,000.00", "not a number"),
        ("-5.00", "must be positive"),
        ("0.00", "must be positive"),
        ("10.005", "more than two decimal places"),
        ("1e9", "not a number"),
        ("999999999999", "larger than any M-Pesa transaction"),
    ],
)
def test_a_malformed_amount_is_refused_never_read_as_zero(raw, message):
    with pytest.raises(PayloadError, match=message):
        parse_c2b_notification(c2b_body(amount=raw))


def test_a_missing_amount_is_refused():
    body = json.loads(c2b_body())
    del body["TransAmount"]
    with pytest.raises(PayloadError, match="TransAmount is missing"):
        parse_c2b_notification(json.dumps(body))


@pytest.mark.parametrize(
    ("msisdn", "form"),
    [
        ("254712345678", MsisdnForm.PLAIN),
        ("2******9", MsisdnForm.MASKED),
        ("25471****678", MsisdnForm.MASKED),
        ("2547 ***** 126", MsisdnForm.MASKED),
        (hashlib.sha256(b"254712345678").hexdigest(), MsisdnForm.HASHED),
        ("", MsisdnForm.NONE),
    ],
)
def test_msisdn_plain_masked_or_hashed_is_kept_as_sent(msisdn, form):
    parsed = parse_c2b_notification(c2b_body(msisdn=msisdn))
    assert parsed.msisdn == msisdn
    assert parsed.msisdn_form == form


def test_names_masked_empty_or_missing():
    masked = parse_c2b_notification(
        c2b_body(first_name="NJERI", middle_name="******", last_name="")
    )
    assert masked.payer_name == "NJERI"
    only_first = parse_c2b_notification(
        c2b_body(first_name="XXXXXX", middle_name=OMIT, last_name=OMIT)
    )
    assert only_first.payer_name == ""
    assert only_first.middle_name == only_first.last_name == ""


def test_null_or_missing_optional_ids_and_the_data_envelope():
    parsed = parse_c2b_notification(
        c2b_body(invoice_number=None, third_party_trans_id=OMIT, envelope="data")
    )
    assert parsed.invoice_number == parsed.third_party_trans_id == ""
    assert parsed.trans_id == "UL5C2B7QXA"


def test_a_validation_request_with_an_empty_type_and_balance():
    parsed = parse_c2b_notification(c2b_body(transaction_type="", balance=""))
    assert parsed.transaction_type == ""
    assert parsed.channel == "paybill"
    assert parsed.org_account_balance is None


def test_buy_goods_is_a_till_payment():
    assert parse_c2b_notification(c2b_body(transaction_type="Buy Goods")).channel == "till"


def test_an_unreadable_time_is_a_warning_not_a_refusal():
    parsed = parse_c2b_notification(c2b_body(trans_time="2026-12-05"))
    assert parsed.trans_time is None
    assert parsed.warnings and "TransTime" in parsed.warnings[0]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"", "not valid JSON"),
        (b"[]", "must be a JSON object"),
        (b'{"Body": {"stkCallback": {}}}', "TransID is missing"),
        (c2b_body(trans_id=""), "TransID is empty"),
        (c2b_body(trans_id="UL5 C2B'--"), "not an M-Pesa receipt"),
        (c2b_body(shortcode="abc"), "not a shortcode"),
        (c2b_body(bill_ref="x" * 101), "BillRefNumber is longer than 100"),
        (c2b_body(bill_ref="a\x00b"), "NUL"),
    ],
)
def test_what_cannot_be_a_c2b_notification_is_refused_by_name(body, message):
    with pytest.raises(PayloadError, match=message):
        parse_c2b_notification(body)


# --- Every captured real C2B notification ---------------------------------------------------


def _real_notifications() -> list[tuple[str, dict]]:
    found = []
    for path in real_payloads("c2b_confirmation_*.json") + real_payloads("c2b_validation_*.json"):
        data = json.loads(path.read_text())
        # A capture of several deliveries is a list of them.
        for number, body in enumerate(data if isinstance(data, list) else [data]):
            found.append((f"{path.name}[{number}]", body))
    return found


@pytest.mark.parametrize(("name", "body"), _real_notifications() or [("none", None)])
def test_every_real_c2b_notification_parses(name, body):
    if body is None:
        pytest.skip("the captured payloads are not on this machine")
    data = body.get("data", body)
    parsed = parse_c2b_notification(json.dumps(body).encode())
    assert parsed.trans_id == data["TransID"]
    assert parsed.amount == Decimal(data["TransAmount"])
    assert parsed.shortcode == data["BusinessShortCode"]
    assert parsed.bill_ref_number == data["BillRefNumber"]
    assert parsed.msisdn == data["MSISDN"]
    assert parsed.trans_time is not None
    assert parsed.warnings == ()
