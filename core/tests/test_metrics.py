"""/metrics through prometheus_client: what each part of the system counts as it happens,
the gauges read at scrape time, and what a scrape may cost (no unbounded query, no token)."""

import re

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from callbacks.models import InboundCallback
from core.health import BEAT, heartbeat
from payments.accounts import account_create, c2b_urls
from payments.models import Payment
from testsupport import c2b_body, stk_accepted, stk_success_body
from testsupport.factories import PaymentFactory

pytestmark = pytest.mark.django_db

TOKEN = "metrics-token"


@pytest.fixture
def scrape(client, settings):
    settings.METRICS_TOKEN = TOKEN

    def _scrape() -> str:
        response = client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}", secure=True)
        assert response.status_code == 200
        assert response["Content-Type"].startswith("text/plain")
        return response.content.decode()

    return _scrape


def value(text: str, sample: str) -> float:
    found = re.search(rf"^{re.escape(sample)} (\S+)$", text, re.M)
    return float(found.group(1)) if found else 0.0


def test_a_payment_flow_is_counted_where_it_happens(
    api, daraja, scrape, client, django_capture_on_commit_callbacks
):
    push = 'mpesa_daraja_request_duration_seconds_count{endpoint="/mpesa/stkpush/v1/processrequest",outcome="200"}'
    http = 'mpesa_http_request_duration_seconds_count{method="POST",route="payments/stk-push/",status="201"}'
    stored = 'mpesa_callbacks_received_total{outcome="stored",route="stk"}'
    success = 'mpesa_payment_outcomes_total{channel="stk",result_code="0",status="SUCCESS"}'
    delay = 'mpesa_callback_processing_delay_seconds_count{kind="stk",state="processed"}'
    before = scrape()

    daraja.post("/mpesa/stkpush/v1/processrequest").respond(200, json=stk_accepted("ws_CO_M1"))
    response = api.post(
        "/payments/stk-push/",
        {"phone_number": "0712345678", "amount": 10, "account_reference": "A", "description": "B"},
        format="json",
    )
    assert response.status_code == 201
    after_push = scrape()
    assert value(after_push, push) == value(before, push) + 1
    assert value(after_push, http) == value(before, http) + 1

    _, callback_token = PaymentFactory.with_token(checkout_request_id="ws_CO_M2", amount="10.00")
    with django_capture_on_commit_callbacks(execute=True):
        client.post(
            f"/payments/callback/{callback_token}/",
            data=stk_success_body(checkout_request_id="ws_CO_M2", amount=10, receipt="UKRM000002"),
            content_type="application/json",
            secure=True,
        )
    after = scrape()
    assert value(after, stored) == value(before, stored) + 1
    assert value(after, success) >= value(before, success) + 1
    assert value(after, delay) == value(before, delay) + 1
    assert callback_token not in after


def test_c2b_requests_are_counted_by_route(client, scrape):
    _, url_token = account_create(name="Shop", shortcode="600984")
    path = "/" + c2b_urls(url_token).confirmation.split("/", 3)[3]
    sample = 'mpesa_callbacks_received_total{outcome="stored",route="c2b_confirmation"}'
    before = value(scrape(), sample)
    assert client.post(path, c2b_body(), content_type="application/json").status_code == 200
    text = scrape()
    assert value(text, sample) == before + 1
    assert url_token not in text
    route = 'route="c2b/<str:token>/confirmation/"'
    assert route in text


def test_scrape_time_gauges_read_the_database(scrape):
    PaymentFactory.with_token(checkout_request_id="ws_CO_G1")
    InboundCallback.objects.create(body=b"{}", dedupe_key="x", token_hash="")
    InboundCallback.objects.create(body=b"{}", dedupe_key="y", token_hash="")
    Payment.objects.update(needs_review=True)
    text = scrape()
    assert value(text, "mpesa_inbox_backlog") == 2
    assert value(text, "mpesa_payments_needs_review") == 1
    assert value(text, "mpesa_inbox_oldest_waiting_seconds") >= 0
    assert value(text, 'mpesa_heartbeat_age_seconds{process="worker"}') == -1
    heartbeat(BEAT)
    assert 0 <= value(scrape(), 'mpesa_heartbeat_age_seconds{process="beat"}') < 5


def test_a_scrape_runs_only_bounded_queries(scrape):
    """A scrape never counts a whole table: every query it makes is LIMITed (the backlog
    counts stop at 10,001, the oldest rows are read through their indexes)."""
    with CaptureQueriesContext(connection) as queries:
        scrape()
    selects = [q["sql"] for q in queries.captured_queries if q["sql"].lstrip().startswith("SELECT")]
    assert selects
    unbounded = [sql for sql in selects if "LIMIT" not in sql.upper()]
    assert unbounded == []


def test_a_scrape_answers_with_what_was_counted_while_the_database_is_down(scrape, monkeypatch):
    from django.db import OperationalError

    from core import metrics

    def database_down():
        raise OperationalError("connection refused")

    monkeypatch.setitem(metrics._gauge_sources, "callbacks", database_down)
    scrape()  # a request is counted, whatever the database
    text = scrape()
    assert "mpesa_inbox_backlog" not in text
    assert "mpesa_payments_needs_review" in text  # the other apps' gauges are still read
    assert "mpesa_http_request_duration_seconds_count" in text
    assert 'mpesa_degraded_total{what="metrics"}' in text


def test_daraja_errors_are_counted_by_their_code(api, daraja, scrape):
    sample = (
        'mpesa_daraja_errors_total{endpoint="/mpesa/stkpush/v1/processrequest",'
        'error_code="400.002.02"}'
    )
    before = value(scrape(), sample)
    daraja.post("/mpesa/stkpush/v1/processrequest").respond(
        400,
        json={"requestId": "1", "errorCode": "400.002.02", "errorMessage": "Bad Request"},
    )
    response = api.post(
        "/payments/stk-push/",
        {"phone_number": "0712345678", "amount": 10, "account_reference": "A", "description": "B"},
        format="json",
    )
    assert response.json()["status"] == "FAILED"
    assert value(scrape(), sample) == before + 1
