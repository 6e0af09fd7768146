import json
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from daraja.parsing import PayloadError
from daraja.pull import page_transactions, parse_pulled
from testsupport import real_payloads

ITEM = {
    "transactionId": "UL5C2B7QXA",
    "trxDate": "2026-12-05T11:30:15Z",
    "msisdn": 72200000,
    "sender": "JOHN DOE",
    "transactiontype": "c2b-pay-bill-debit",
    "billreference": "INV-1001",
    "amount": "168.00",
    "organizationname": "ACME LTD",
}


def test_a_page_is_an_array_of_arrays_and_1001_is_no_records():
    page = {"ResponseRefID": "x", "ResponseCode": "1000", "Response": [[ITEM, ITEM]]}
    assert page_transactions(page) == [ITEM, ITEM]
    assert page_transactions({"ResponseCode": "1001", "ResponseMessage": "No records"}) == []
    assert page_transactions({"ResponseCode": "1000", "Response": "[[]]"}) == []


@pytest.mark.parametrize(
    ("page", "message"),
    [
        ({"errorCode": "401.001", "errorMessage": "Invalid"}, "Daraja error response"),
        ({"ResponseCode": "500", "ResponseMessage": "Failed"}, "reports an error: 500"),
        ({"foo": 1}, "neither ResponseCode nor Response"),
        ([], "not a JSON object"),
    ],
)
def test_what_is_not_a_page_of_transactions_is_refused(page, message):
    with pytest.raises(PayloadError, match=message):
        page_transactions(page)


def test_a_transaction_is_read_with_its_time_in_utc_or_east_africa():
    pulled = parse_pulled(ITEM)
    assert (pulled.trans_id, pulled.amount, pulled.bill_ref_number) == (
        "UL5C2B7QXA",
        Decimal("168.00"),
        "INV-1001",
    )
    assert pulled.trans_time == datetime(2026, 12, 5, 11, 30, 15, tzinfo=UTC)
    assert pulled.msisdn == "72200000" and not pulled.is_till
    eat = parse_pulled({**ITEM, "trxDate": "2026-12-05 14:30:15"})
    assert eat.trans_time == datetime(2026, 12, 5, 11, 30, 15, tzinfo=UTC)
    assert parse_pulled({**ITEM, "transactiontype": "c2b-buy-goods-debit"}).is_till


@pytest.mark.parametrize(
    "change",
    [{"amount": "abc"}, {"amount": "-5.00"}, {"amount": "1.005"}, {"transactionId": "x'; --"}],
)
def test_a_malformed_transaction_is_refused_by_name(change):
    with pytest.raises(PayloadError):
        parse_pulled({**ITEM, **change})


@pytest.mark.parametrize("path", real_payloads("pull_query_response_*.json") or [None])
def test_the_real_pull_responses_are_read(path):
    if path is None:
        pytest.skip("the captured payloads are not on this machine")
    body = json.loads(path.read_text())
    assert page_transactions(body.get("response", body)) == []
