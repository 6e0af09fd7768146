import json
import socket
import threading
import time

import httpx
import pytest
from django.db import connection
from rest_framework.test import APIClient

from callbacks.models import InboundCallback
from callbacks.tasks import process_callback
from core.db import in_transaction
from core.services import api_client_create, api_client_revoke
from payments.models import Payment, PaymentEvent, PaymentStatus
from testsupport import stk_accepted, stk_success_body

pytestmark = pytest.mark.django_db

VALID = {
    "phone_number": "0712345678",
    "amount": 100,
    "account_reference": "ORDER1",
    "description": "Test",
}


def stk_route(daraja, checkout=None):
    """Daraja accepting pushes, each with a new CheckoutRequestID (or the one given)."""
    counter = iter(range(1, 10_000))

    def answer(request):
        return httpx.Response(
            200, json=stk_accepted(checkout or f"ws_CO_2711202610300012{next(counter):04d}")
        )

    return daraja.post("/mpesa/stkpush/v1/processrequest").mock(side_effect=answer)


def test_stk_push_creates_a_pending_payment_with_daraja_ids(api, daraja):
    route = stk_route(daraja)
    response = api.post("/payments/stk-push/", VALID, format="json")
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["status"] == "PENDING"
    assert body["amount"] == "100.00"
    assert body["phone_number"] == "254712345678"
    assert body["checkout_request_id"] == "ws_CO_27112026103000120001"
    sent = json.loads(route.calls.last.request.content)
    assert sent["CallBackURL"].startswith("http") and sent["CallBackURL"].endswith("/")
    payment = Payment.objects.get(pk=body["id"])
    events = list(payment.events.values_list("kind", "from_status", "to_status", "source"))
    assert events == [
        ("created", "", "INITIATED", "api"),
        ("transition", "INITIATED", "PENDING", "daraja"),
    ]


def test_a_checkout_id_daraja_already_gave_another_payment_is_not_a_500(api, daraja):
    stk_route(daraja, "ws_CO_SAME")
    assert api.post("/payments/stk-push/", VALID, format="json").json()["status"] == "PENDING"
    second = api.post("/payments/stk-push/", VALID, format="json")
    assert second.status_code == 202
    assert second.json()["status"] == "INITIATED"


def test_payment_is_committed_initiated_before_daraja_is_called(api, daraja):
    seen = {}

    def answer(request):
        # What the database holds while Daraja is being called.
        seen["statuses"] = list(Payment.objects.values_list("status", flat=True))
        seen["in_atomic"] = in_transaction()
        return httpx.Response(200, json=stk_accepted())

    daraja.post("/mpesa/stkpush/v1/processrequest").mock(side_effect=answer)
    assert api.post("/payments/stk-push/", VALID, format="json").status_code == 201
    assert seen == {"statuses": ["INITIATED"], "in_atomic": False}


def test_refused_push_fails_the_payment_with_daraja_error(api, daraja):
    daraja.post("/mpesa/stkpush/v1/processrequest").respond(
        500,
        json={
            "requestId": "1",
            "errorCode": "500.001.1001",
            "errorMessage": "Unable to lock subscriber, a transaction is already in process for the current subscriber",
        },
    )
    response = api.post("/payments/stk-push/", VALID, format="json")
    assert response.status_code == 201
    body = response.json()
    assert body["status"] == "FAILED"
    assert body["result_code"] == "500.001.1001"
    assert "Unable to lock subscriber" in body["result_desc"]


def test_push_with_lost_answer_stays_initiated_and_says_so(api, daraja):
    daraja.post("/mpesa/stkpush/v1/processrequest").mock(side_effect=httpx.ReadTimeout("slow"))
    response = api.post("/payments/stk-push/", VALID, format="json")
    assert response.status_code == 202
    payment = Payment.objects.get(pk=response.json()["id"])
    assert payment.status == PaymentStatus.INITIATED
    assert payment.events.filter(kind="note", reason__contains="outcome unknown").exists()


def test_push_when_daraja_cannot_be_reached_fails_at_once_and_says_how_to_fix_it(api, settings):
    # A port nothing listens on: the connection is refused, so no prompt can have been sent.
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    settings.MPESA_BASE_URL = f"http://127.0.0.1:{port}"
    response = api.post("/payments/stk-push/", VALID, format="json")
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["status"] == "FAILED"
    assert body["result_code"] == "daraja_unreachable"
    assert f"could not connect to Daraja at http://127.0.0.1:{port}" in body["result_desc"]
    assert f"python -m simulator --port {port}" in body["result_desc"]
    payment = Payment.objects.get(pk=body["id"])
    assert payment.failure_final and not payment.initiation_unknown
    assert payment.events.filter(to_status="FAILED", reason__contains="not sent").exists()


def test_push_whose_connection_times_out_fails_without_a_simulator_hint_outside_it(
    api, daraja, settings
):
    settings.MPESA_ENV = "sandbox"
    daraja.post("/mpesa/stkpush/v1/processrequest").mock(side_effect=httpx.ConnectTimeout("slow"))
    body = api.post("/payments/stk-push/", VALID, format="json").json()
    assert body["status"] == "FAILED" and body["result_code"] == "daraja_unreachable"
    assert "ConnectTimeout" in body["result_desc"] and "simulator" not in body["result_desc"]


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("phone_number", "0812345678", "Kenyan mobile"),
        ("phone_number", "", "required"),
        ("amount", "10.50", "whole number"),
        ("amount", 0, "between"),
        ("amount", 250001, "between"),
        ("amount", "ten", "not a number"),
        ("amount", True, "not a number"),
        ("amount", None, "null"),
        ("account_reference", "A" * 13, "12"),
        ("account_reference", "", "blank"),
        ("account_reference", "ORDER<1>", "letters"),
        ("description", "D" * 14, "13"),
    ],
)
def test_each_invalid_field_is_a_400_naming_it(api, daraja, field, value, message):
    route = stk_route(daraja)
    response = api.post("/payments/stk-push/", {**VALID, field: value}, format="json")
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "validation_error"
    assert list(error["fields"]) == [field]
    assert message in str(error["fields"][field])
    assert not route.called and not Payment.objects.exists()


def test_fractional_json_number_amount_is_refused_not_rounded(api, daraja):
    response = api.post(
        "/payments/stk-push/",
        b'{"phone_number": "0712345678", "amount": 10.5, "account_reference": "A", "description": "B"}',
        content_type="application/json",
    )
    assert response.status_code == 400
    assert "amount" in response.json()["error"]["fields"]


def test_missing_fields_and_unknown_fields_are_named(api, daraja):
    response = api.post("/payments/stk-push/", {"amount": 10, "colour": "red"}, format="json")
    assert response.status_code == 400
    # The unknown field is named with the missing ones, in the same 400.
    assert set(response.json()["error"]["fields"]) == {
        "phone_number",
        "account_reference",
        "description",
        "colour",
    }
    response = api.post("/payments/stk-push/", {**VALID, "colour": "red"}, format="json")
    assert response.json()["error"]["fields"] == {"colour": "Unknown field."}


def test_malformed_json_is_a_clear_400(api):
    response = api.post("/payments/stk-push/", b"{not json", content_type="application/json")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "malformed_request"


def test_wrong_content_type_is_415(api):
    response = api.post("/payments/stk-push/", b"phone=1", content_type="text/plain")
    assert response.status_code == 415
    assert response.json()["error"]["code"] == "unsupported_media_type"


@pytest.mark.parametrize(
    ("header", "code"),
    [
        (None, "not_authenticated"),
        ("Bearer nope", "invalid_api_key"),
        ("Token abc", "invalid_auth_scheme"),
        ("Bearer mpk_ffffffff_x", "invalid_api_key"),
    ],
)
def test_requests_without_a_valid_key_are_401(header, code, db):
    client = APIClient()
    if header:
        client.credentials(HTTP_AUTHORIZATION=header)
    response = client.get("/payments/")
    assert response.status_code == 401
    assert response.json()["error"]["code"] == code


def test_revoked_key_is_refused(api_key):
    api_client_revoke(client=api_key.client)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {api_key.key}")
    response = client.get("/payments/")
    assert response.status_code == 401 and response.json()["error"]["code"] == "revoked_api_key"


# --- Idempotency-Key (Stripe's semantics) -------------------------------------------------


def test_same_key_and_body_replays_the_first_response_without_a_second_push(api, daraja):
    route = stk_route(daraja)
    first = api.post("/payments/stk-push/", VALID, format="json", HTTP_IDEMPOTENCY_KEY="order-1")
    second = api.post("/payments/stk-push/", VALID, format="json", HTTP_IDEMPOTENCY_KEY="order-1")
    assert first.status_code == second.status_code == 201
    assert first.json() == second.json()
    assert second["Idempotent-Replayed"] == "true"
    assert route.call_count == 1 and Payment.objects.count() == 1


def test_same_key_different_body_is_refused(api, daraja):
    stk_route(daraja)
    api.post("/payments/stk-push/", VALID, format="json", HTTP_IDEMPOTENCY_KEY="order-2")
    response = api.post(
        "/payments/stk-push/",
        {**VALID, "amount": 101},
        format="json",
        HTTP_IDEMPOTENCY_KEY="order-2",
    )
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "idempotency_key_reused"


def test_equivalent_bodies_share_a_key(api, daraja):
    route = stk_route(daraja)
    api.post("/payments/stk-push/", VALID, format="json", HTTP_IDEMPOTENCY_KEY="k")
    same = {**VALID, "phone_number": "+254 712 345 678", "amount": "100"}
    assert (
        api.post("/payments/stk-push/", same, format="json", HTTP_IDEMPOTENCY_KEY="k").status_code
        == 201
    )
    assert route.call_count == 1


def test_keys_are_per_client(api, daraja):
    route = stk_route(daraja)
    other = APIClient()
    other.credentials(HTTP_AUTHORIZATION=f"Bearer {api_client_create(name='other').key}")
    api.post("/payments/stk-push/", VALID, format="json", HTTP_IDEMPOTENCY_KEY="same")
    other.post("/payments/stk-push/", VALID, format="json", HTTP_IDEMPOTENCY_KEY="same")
    assert route.call_count == 2


def test_validation_errors_do_not_burn_the_key(api, daraja):
    stk_route(daraja)
    bad = api.post(
        "/payments/stk-push/", {**VALID, "amount": "x"}, format="json", HTTP_IDEMPOTENCY_KEY="k2"
    )
    assert bad.status_code == 400
    good = api.post("/payments/stk-push/", VALID, format="json", HTTP_IDEMPOTENCY_KEY="k2")
    assert good.status_code == 201


def test_invalid_idempotency_key_is_a_400(api, daraja):
    response = api.post("/payments/stk-push/", VALID, format="json", HTTP_IDEMPOTENCY_KEY="x" * 256)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_idempotency_key"


@pytest.mark.django_db(transaction=True)
def test_concurrent_duplicates_never_send_two_pushes(api_key, daraja):
    calls = []

    def slow_answer(request):
        calls.append(1)
        time.sleep(0.3)
        return httpx.Response(200, json=stk_accepted())

    daraja.post("/mpesa/stkpush/v1/processrequest").mock(side_effect=slow_answer)
    answers = []

    def fire(delay=0.0):
        time.sleep(delay)
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {api_key.key}")
        try:
            response = client.post(
                "/payments/stk-push/", VALID, format="json", HTTP_IDEMPOTENCY_KEY="race"
            )
            replayed = response.headers.get("Idempotent-Replayed") == "true"
            answers.append((response.status_code, replayed, response.json().get("id")))
        finally:
            connection.close()

    # Five at once, and one that should arrive after the first has finished.
    threads = [threading.Thread(target=fire) for _ in range(5)]
    threads.append(threading.Thread(target=fire, kwargs={"delay": 1.0}))
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(calls) == 1
    # One push answered 201; the others, while it ran, 409 in progress; one that arrives
    # after it finished (a slow thread start on a busy machine) gets the first answer again.
    first = [answer for answer in answers if answer[:2] == (201, False)]
    assert len(first) == 1
    for status_code, replayed, payment_id in answers:
        if (status_code, replayed) != (201, False):
            assert status_code == 409 or (replayed and payment_id == first[0][2])
    assert Payment.objects.count() == 1


# --- Reads -------------------------------------------------------------------------------


def test_get_list_filters_and_events(api, daraja):
    stk_route(daraja)
    first = api.post("/payments/stk-push/", VALID, format="json").json()
    api.post("/payments/stk-push/", {**VALID, "phone_number": "0112345678"}, format="json")

    assert api.get(f"/payments/{first['id']}/").json()["id"] == first["id"]
    listing = api.get("/payments/").json()
    assert listing["count"] == 2 and len(listing["results"]) == 2
    assert api.get("/payments/", {"phone": "0112 345 678"}).json()["count"] == 1
    assert api.get("/payments/", {"status": "PENDING"}).json()["count"] == 2
    assert api.get("/payments/", {"status": "SUCCESS"}).json()["count"] == 0
    assert api.get("/payments/", {"created_after": "2000-01-01T00:00:00Z"}).json()["count"] == 2
    assert api.get("/payments/", {"created_before": "2000-01-01T00:00:00Z"}).json()["count"] == 0
    assert api.get("/payments/", {"page_size": 1}).json()["next"] is not None
    events = api.get(f"/payments/{first['id']}/events/").json()
    assert [e["to_status"] for e in events] == ["INITIATED", "PENDING"]
    for page_size in ["AAA", "0", "501", "\u00b2", "1" * 5000]:
        refused = api.get("/payments/", {"page_size": page_size})
        assert refused.status_code == 400, page_size
        assert list(refused.json()["error"]["fields"]) == ["page_size"]


def test_bad_filters_are_400_not_500(api):
    assert api.get("/payments/", {"status": "PAID"}).status_code == 400
    assert api.get("/payments/", {"phone": "12"}).status_code == 400
    assert api.get("/payments/", {"created_after": "yesterday"}).status_code == 400
    assert api.get("/payments/not-a-uuid/").status_code == 404


@pytest.mark.parametrize(
    "query",
    [
        "created_after=",
        "created_before=%20",
        "status=",
        "status=PENDING&status=",
        "phone=",
        "needs_review=",
    ],
)
def test_a_filter_given_with_an_empty_value_is_refused_naming_it(api, query):
    response = api.get(f"/payments/?{query}")

    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "validation_error"
    name = query.split("=")[0]
    assert list(error["fields"]) == [name]
    assert "empty value" in error["fields"][name]


def test_a_client_cannot_read_another_clients_payments(api, daraja):
    stk_route(daraja)
    mine = api.post("/payments/stk-push/", VALID, format="json").json()
    other = APIClient()
    other.credentials(HTTP_AUTHORIZATION=f"Bearer {api_client_create(name='other').key}")
    assert other.get(f"/payments/{mine['id']}/").status_code == 404
    assert other.get(f"/payments/{mine['id']}/events/").status_code == 404
    assert other.get("/payments/").json()["count"] == 0


def test_events_are_append_only(api, daraja):
    stk_route(daraja)
    payment_id = api.post("/payments/stk-push/", VALID, format="json").json()["id"]
    event = PaymentEvent.objects.filter(payment_id=payment_id).first()
    with pytest.raises(TypeError):
        event.save()
    with pytest.raises(TypeError):
        PaymentEvent.objects.filter(payment_id=payment_id).update(reason="x")
    with pytest.raises(TypeError):
        PaymentEvent.objects.filter(payment_id=payment_id).delete()


def test_openapi_schema_and_docs_are_served(client):
    assert client.get("/api/schema/").status_code == 200
    assert client.get("/api/docs/").status_code == 200


def _paid_callback(api, daraja, client, amount):
    """A payment of 100 made through the API, and a success callback for ``amount`` sent to
    the callback URL given to Daraja (stored, not processed yet)."""
    route = stk_route(daraja)
    payment = api.post("/payments/stk-push/", VALID, format="json").json()
    callback_url = json.loads(route.calls.last.request.content)["CallBackURL"]
    client.post(
        "/" + callback_url.split("/", 3)[3],
        data=stk_success_body(checkout_request_id=payment["checkout_request_id"], amount=amount),
        content_type="application/json",
    )
    return payment, InboundCallback.objects.get()


def _failed_callback(api, daraja, client, monkeypatch):
    """A payment made through the API and a success callback for it whose processing failed
    (a bug in processing, as the inbox parks it)."""
    payment, callback = _paid_callback(api, daraja, client, amount=100)

    def boom(**kwargs):
        raise RuntimeError("bug in processing")

    with monkeypatch.context() as patched:
        patched.setattr("payments.outcomes.payment_decide", boom)
        assert process_callback.apply(args=(callback.pk,)).get() == "failed"
    return payment, callback


def test_a_failed_callback_is_listed_and_replayed_through_the_api(api, daraja, client, monkeypatch):
    payment, callback = _failed_callback(api, daraja, client, monkeypatch)

    listed = api.get(f"/payments/{payment['id']}/callbacks/").json()
    # The traceback stays with the operators (it can name hosts, users, rows).
    assert [(c["id"], c["state"], c["error"]) for c in listed] == [
        (callback.pk, "failed", "processing failed; the error is kept for the operators")
    ]

    response = api.post(f"/payments/{payment['id']}/callbacks/{callback.pk}/replay/")

    assert response.status_code == 202, response.content
    body = response.json()
    assert (body["state"], body["error"], body["processed_at"]) == ("received", "", None)
    process_callback.apply(args=(callback.pk,))
    after = api.get(f"/payments/{payment['id']}/").json()
    assert after["status"] == "SUCCESS"
    notes = [e for e in api.get(f"/payments/{payment['id']}/events/").json() if e["kind"] == "note"]
    assert [(e["actor"], e["callback"]) for e in notes] == [("api:shop", callback.pk)]
    assert "bug in processing" not in notes[0]["reason"]
    # Processed now: a second replay would change nothing and is refused.
    again = api.post(f"/payments/{payment['id']}/callbacks/{callback.pk}/replay/")
    assert again.status_code == 409
    assert again.json()["error"]["code"] == "not_replayable"


def test_only_the_payments_own_callbacks_can_be_replayed(api, daraja, client, monkeypatch):
    payment, callback = _failed_callback(api, daraja, client, monkeypatch)
    other_payment = api.post("/payments/stk-push/", VALID, format="json").json()
    other = APIClient()
    other.credentials(HTTP_AUTHORIZATION=f"Bearer {api_client_create(name='other').key}")

    for caller, path in [
        (api, f"/payments/{other_payment['id']}/callbacks/{callback.pk}/replay/"),
        (api, f"/payments/{payment['id']}/callbacks/{callback.pk + 1}/replay/"),
        (api, f"/payments/{payment['id']}/callbacks/x1/replay/"),
        (api, f"/payments/{payment['id']}/callbacks/{'9' * 40}/replay/"),
        (other, f"/payments/{payment['id']}/callbacks/{callback.pk}/replay/"),
    ]:
        response = caller.post(path)
        assert response.status_code == 404, (path, response.content)
        assert "error" in response.json()
    assert other.get(f"/payments/{payment['id']}/callbacks/").status_code == 404
    callback.refresh_from_db()
    assert callback.state == "failed"


def test_a_callback_is_replayed_through_the_api_a_bounded_number_of_times(
    api, daraja, client, monkeypatch, settings
):
    settings.CALLBACK_API_REPLAY_LIMIT = 1
    payment, callback = _failed_callback(api, daraja, client, monkeypatch)
    replay = f"/payments/{payment['id']}/callbacks/{callback.pk}/replay/"
    assert api.post(replay).status_code == 202

    def boom(**kwargs):
        raise RuntimeError("still a bug")

    with monkeypatch.context() as patched:  # it fails again
        patched.setattr("payments.outcomes.payment_decide", boom)
        assert process_callback.apply(args=(callback.pk,)).get() == "failed"

    refused = api.post(replay)

    assert refused.status_code == 409
    assert refused.json()["error"]["code"] == "not_replayable"
    assert "replayed 1 times through the API already" in refused.json()["error"]["message"]
    callback.refresh_from_db()
    assert callback.state == "failed"


def test_a_callback_kept_for_review_is_listed_with_its_reason(api, daraja, client):
    payment, callback = _paid_callback(api, daraja, client, amount=99)
    process_callback.apply(args=(callback.pk,))

    (listed,) = api.get(f"/payments/{payment['id']}/callbacks/").json()

    assert listed["state"] == "review"
    assert "99" in listed["error"] and "100" in listed["error"]
    refused = api.post(f"/payments/{payment['id']}/callbacks/{listed['id']}/replay/")
    assert refused.status_code == 409  # a person's decision, not a replay
