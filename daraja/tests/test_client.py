import base64
import json
import threading
import time
from datetime import datetime, timedelta
from decimal import Decimal

import httpx
import pytest
import respx
from django.core.cache.backends.locmem import LocMemCache

from daraja.client import PAYBILL, TILL, DarajaClient, DarajaConfig, daraja_timestamp, stk_password
from daraja.errors import (
    DarajaConfigurationError,
    DarajaInvalidTokenError,
    DarajaPendingError,
    DarajaProtocolError,
    DarajaRejectedError,
    DarajaServerError,
    DarajaSubscriberLockedError,
    DarajaThrottledError,
    DarajaTransportError,
    DarajaValidationError,
)
from daraja.parsing import NAIROBI

BASE = "https://daraja.test"
PASSKEY = "bfb279f9aa9bdbcf158e97dd71a467cd2e0c893059b10f78e6b72ada1ed2c919"
ACCEPTED = {
    "MerchantRequestID": "ac7b-470b-8df7-23ab3cef38271071873",
    "CheckoutRequestID": "ws_CO_170820261404032708374149",
    "ResponseCode": "0",
    "ResponseDescription": "Success. Request accepted for processing",
    "CustomerMessage": "Success. Request accepted for processing",
}


def make_client(transaction_type=PAYBILL, party_b="174379", cache=None, timeout=1.0):
    config = DarajaConfig(
        base_url=BASE,
        consumer_key="key",
        consumer_secret="secret",
        shortcode="174379",
        passkey=PASSKEY,
        transaction_type=transaction_type,
        party_b=party_b,
        connect_timeout=timeout,
        read_timeout=timeout,
        token_refresh_margin=60,
    )
    return DarajaClient(config, token_cache=cache or LocMemCache(f"t{time.monotonic_ns()}", {}))


def push(client):
    return client.stk_push(
        phone_number="254712345678",
        amount=Decimal("10.00"),
        account_reference="ORDER1",
        description="Test",
        callback_url="https://shop.test/payments/callback/tok/",
    )


@pytest.fixture
def router():
    with respx.mock(base_url=BASE, assert_all_called=False) as mock:
        mock.get("/oauth/v1/generate").respond(
            200, json={"access_token": "T1", "expires_in": "3599"}
        )
        yield mock


def test_password_is_base64_of_shortcode_passkey_timestamp():
    # The portal's published sample for shortcode 174379 at 20160216165627.
    expected = base64.b64encode(f"174379{PASSKEY}20160216165627".encode()).decode()
    assert stk_password("174379", PASSKEY, "20160216165627") == expected
    assert expected.startswith("MTc0Mzc5YmZi") and expected.endswith("MTY1NjI3")


def test_timestamp_is_nairobi_time_whatever_the_input_zone():
    moment = datetime(2026, 11, 27, 21, 30, 5, tzinfo=NAIROBI) - timedelta(hours=0)
    assert daraja_timestamp(moment.astimezone(NAIROBI)) == "20261127213005"
    utc_moment = datetime.fromisoformat("2026-11-27T18:30:05+00:00")
    assert daraja_timestamp(utc_moment) == "20261127213005"


def test_stk_push_sends_the_documented_request_and_reads_acceptance(router):
    route = router.post("/mpesa/stkpush/v1/processrequest").respond(200, json=ACCEPTED)
    accepted = push(make_client())
    assert accepted.checkout_request_id == ACCEPTED["CheckoutRequestID"]
    request = route.calls.last.request
    body = json.loads(request.content)
    assert request.headers["Authorization"] == "Bearer T1"
    assert body["TransactionType"] == "CustomerPayBillOnline"
    assert body["Amount"] == 10 and body["PartyB"] == "174379"
    assert body["PartyA"] == body["PhoneNumber"] == "254712345678"
    assert body["Password"] == stk_password("174379", PASSKEY, body["Timestamp"])
    now_nairobi = datetime.now(NAIROBI).strftime("%Y%m%d%H%M")
    assert body["Timestamp"][:12] in {
        now_nairobi,
        (datetime.now(NAIROBI) - timedelta(minutes=1)).strftime("%Y%m%d%H%M"),
    }


def test_till_pushes_use_buy_goods_and_the_till_as_party_b(router):
    route = router.post("/mpesa/stkpush/v1/processrequest").respond(200, json=ACCEPTED)
    push(make_client(transaction_type=TILL, party_b="5123456"))
    body = json.loads(route.calls.last.request.content)
    assert body["TransactionType"] == "CustomerBuyGoodsOnline" and body["PartyB"] == "5123456"


def test_token_is_cached_and_shared_between_clients_using_one_cache(router):
    router.post("/mpesa/stkpush/v1/processrequest").respond(200, json=ACCEPTED)
    cache = LocMemCache("shared-token", {})
    push(make_client(cache=cache))
    push(make_client(cache=cache))
    assert router.routes[0].call_count == 1


def test_numeric_expires_in_is_accepted(router):
    router.routes[0].respond(200, json={"access_token": "T9", "expires_in": 3599})
    assert make_client().access_token() == "T9"


def test_invalid_token_is_refreshed_and_the_call_retried_once(router):
    tokens = iter(["OLD", "NEW"])
    router.routes[0].mock(
        side_effect=lambda request: httpx.Response(
            200, json={"access_token": next(tokens), "expires_in": "3599"}
        )
    )
    invalid = {
        "requestId": "10219-2484793-1",
        "errorCode": "404.001.03",
        "errorMessage": "Invalid Access Token",
    }

    def answer(request):
        if request.headers["Authorization"] == "Bearer OLD":
            return httpx.Response(404, json=invalid)
        return httpx.Response(200, json=ACCEPTED)

    router.post("/mpesa/stkpush/v1/processrequest").mock(side_effect=answer)
    assert push(make_client()).checkout_request_id == ACCEPTED["CheckoutRequestID"]
    assert router.routes[0].call_count == 2


def test_invalid_token_twice_raises_instead_of_looping(router):
    router.post("/mpesa/stkpush/v1/processrequest").respond(
        404,
        json={"requestId": "1", "errorCode": "404.001.03", "errorMessage": "Invalid Access Token"},
    )
    with pytest.raises(DarajaInvalidTokenError):
        push(make_client())
    assert router.routes[1].call_count == 2


def test_only_one_process_fetches_the_token_at_a_time(router):
    def slow_token(request):
        time.sleep(0.3)
        return httpx.Response(200, json={"access_token": "SLOW", "expires_in": "3599"})

    router.routes[0].mock(side_effect=slow_token)
    cache = LocMemCache("lock-test", {})
    results = []
    threads = [
        # A waiter gives up after the connect + read timeouts: ten seconds each, so eight threads
        # on a busy machine wait for the one fetch instead of timing out behind it.
        threading.Thread(
            target=lambda: results.append(make_client(cache=cache, timeout=10).access_token())
        )
        for _ in range(8)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == ["SLOW"] * 8
    assert router.routes[0].call_count == 1


@pytest.mark.parametrize(
    ("status", "body", "error_type", "code"),
    [
        (
            400,
            {
                "requestId": "9458-79414631-1",
                "errorCode": "400.002.02",
                "errorMessage": "Bad Request - Invalid PhoneNumber",
            },
            DarajaValidationError,
            "400.002.02",
        ),
        (
            400,
            {"errorCode": "400.002.02", "errorMessage": "Bad Request - Invalid CallBackURL"},
            DarajaValidationError,
            "400.002.02",
        ),
        (
            500,
            {
                "requestId": "1",
                "errorCode": "500.001.1001",
                "errorMessage": "Unable to lock subscriber, a transaction is already in process for the current subscriber",
            },
            DarajaSubscriberLockedError,
            "500.001.1001",
        ),
        (
            500,
            {"requestId": "1", "errorCode": "500.001.1001", "errorMessage": "Wrong credentials"},
            DarajaRejectedError,
            "500.001.1001",
        ),
        (
            500,
            {"requestId": "1", "errorCode": "500.003.02", "errorMessage": "System is busy"},
            DarajaThrottledError,
            "500.003.02",
        ),
        (
            500,
            {"requestId": "1", "errorCode": "500.003.03", "errorMessage": "Quota Violation"},
            DarajaThrottledError,
            "500.003.03",
        ),
        (
            500,
            {
                "requestId": "1",
                "errorCode": "500.003.1001",
                "errorMessage": "Internal Server Error",
            },
            DarajaServerError,
            "500.003.1001",
        ),
        (
            404,
            {
                "requestId": "1",
                "errorCode": "404.001.04",
                "errorMessage": "Invalid Authentication Header",
            },
            DarajaConfigurationError,
            "404.001.04",
        ),
        (502, "<html>bad gateway</html>", DarajaServerError, ""),
    ],
)
def test_every_daraja_error_becomes_a_typed_error_with_its_code(
    router, status, body, error_type, code
):
    kwargs = {"json": body} if isinstance(body, dict) else {"text": body}
    router.post("/mpesa/stkpush/v1/processrequest").respond(status, **kwargs)
    with pytest.raises(error_type) as error:
        push(make_client())
    assert error.value.error_code == code
    assert error.value.http_status == status
    if code:
        assert error.value.meaning != "Unknown Daraja error"


def test_timeouts_and_refused_connections_are_transport_errors(router):
    router.post("/mpesa/stkpush/v1/processrequest").mock(side_effect=httpx.ReadTimeout("slow"))
    with pytest.raises(DarajaTransportError):
        push(make_client())


def test_a_non_json_success_answer_is_a_protocol_error(router):
    router.post("/mpesa/stkpush/v1/processrequest").respond(200, text="<html>ok</html>")
    with pytest.raises(DarajaProtocolError):
        push(make_client())


def test_oauth_refusal_with_empty_body_names_the_credentials(router):
    router.routes[0].respond(400, content=b"")
    with pytest.raises(DarajaConfigurationError) as error:
        make_client().access_token()
    assert "MPESA_CONSUMER_KEY" in str(error.value)


def test_stk_query_pending_in_both_generations_and_final(router):
    route = router.post("/mpesa/stkpushquery/v1/query")
    client = make_client()
    route.respond(
        500,
        json={
            "requestId": "ws_CO_1",
            "errorCode": "500.001.1001",
            "errorMessage": "The transaction is being processed",
        },
    )
    with pytest.raises(DarajaPendingError):
        client.stk_query(checkout_request_id="ws_CO_1")
    route.respond(
        200, json={"ResultCode": "4999", "ResultDesc": "The transaction is still under processing"}
    )
    assert client.stk_query(checkout_request_id="ws_CO_1").pending
    route.respond(
        200,
        json={
            "ResponseCode": "0",
            "ResultCode": "1032",
            "ResultDesc": "Request cancelled by user",
            "CheckoutRequestID": "ws_CO_1",
        },
    )
    final = client.stk_query(checkout_request_id="ws_CO_1")
    assert not final.pending and final.result_code == "1032"
