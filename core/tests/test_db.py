"""update_rows and insert_rows: many rows, each with its own values, in one statement on
PostgreSQL."""

from datetime import UTC, datetime
from decimal import Decimal

import pytest
from django.db import DataError, connection, transaction

from core.db import insert_rows, update_rows
from payments.models import Payment, PaymentStatus
from testsupport.factories import ApiClientFactory, PaymentFactory

pytestmark = pytest.mark.django_db


def test_each_row_gets_its_own_values_and_only_matching_rows_change():
    first, second, third = (PaymentFactory(initiated=True, amount=10 + n) for n in range(3))
    Payment.objects.filter(pk=third.pk).update(status=PaymentStatus.PENDING)
    when = datetime(2026, 11, 27, 7, 30, 5, tzinfo=UTC)
    changed = update_rows(
        Payment,
        set_fields=["status", "paid_amount", "mpesa_receipt_number", "transaction_date"],
        match_fields=["status"],
        rows=[
            [
                first.pk,
                PaymentStatus.INITIATED,
                PaymentStatus.SUCCESS,
                Decimal("10.00"),
                "UKR1AAAAAA",
                when,
            ],
            [second.pk, PaymentStatus.INITIATED, PaymentStatus.FAILED, None, None, None],
            # Its status is no longer the one read: left alone.
            [
                third.pk,
                PaymentStatus.INITIATED,
                PaymentStatus.SUCCESS,
                Decimal("12.00"),
                "UKR1CCCCCC",
                when,
            ],
        ],
    )
    assert changed == 2
    rows = {
        p.pk: (p.status, p.paid_amount, p.mpesa_receipt_number, p.transaction_date)
        for p in Payment.objects.all()
    }
    assert rows[first.pk] == (PaymentStatus.SUCCESS, Decimal("10.00"), "UKR1AAAAAA", when)
    assert rows[second.pk] == (PaymentStatus.FAILED, None, None, None)
    assert rows[third.pk] == (PaymentStatus.PENDING, None, None, None)


def test_no_rows_is_no_statement():
    assert update_rows(Payment, set_fields=["status"], rows=[]) == 0


def test_rows_of_the_wrong_width_are_refused():
    payment = PaymentFactory(initiated=True)
    with pytest.raises(ValueError, match="3 values"):
        update_rows(
            Payment, set_fields=["status", "result_code"], rows=[[payment.pk, PaymentStatus.FAILED]]
        )


def test_a_value_too_long_for_its_column_is_never_truncated():
    payment = PaymentFactory(initiated=True)
    too_long = "X" * 40  # mpesa_receipt_number is varchar(32)
    try:
        with transaction.atomic():
            update_rows(Payment, set_fields=["mpesa_receipt_number"], rows=[[payment.pk, too_long]])
    except DataError:
        assert connection.vendor == "postgresql"  # refused, as a plain UPDATE would be
        payment.refresh_from_db()
        assert payment.mpesa_receipt_number is None
        return
    assert connection.vendor != "postgresql"  # SQLite does not enforce lengths: stored whole
    payment.refresh_from_db()
    assert payment.mpesa_receipt_number == too_long


def _attempt_rows(delivery_id, count, when):
    return [(delivery_id, when, 200 + n, f"error {n}", n, f"body {n}") for n in range(count)]


ATTEMPT_FIELDS = ("delivery", "started_at", "status_code", "error", "latency_ms", "response_body")


@pytest.fixture
def delivery():
    from events.services import NewEvent, events_emit
    from webhooks.models import Delivery, Endpoint

    client = ApiClientFactory()
    with transaction.atomic():
        (event,) = events_emit([NewEvent("webhook.test", {"n": 1}, client.pk)])
    endpoint = Endpoint.objects.create(client=client, url="https://hooks.example.com/")
    return Delivery.objects.create(event=event, endpoint=endpoint)


def test_insert_rows_writes_every_row_with_its_values(delivery):
    from webhooks.models import Attempt

    when = datetime(2026, 12, 5, 9, 0, 1, 123456, tzinfo=UTC)
    rows = _attempt_rows(delivery.pk, 2500, when)

    assert insert_rows(Attempt, fields=ATTEMPT_FIELDS, rows=rows) == 2500

    stored = sorted(
        Attempt.objects.values_list(
            "delivery_id", "started_at", "status_code", "error", "latency_ms", "response_body"
        ),
        key=lambda row: row[4],
    )
    assert stored == rows


def test_insert_rows_refuses_rows_of_the_wrong_width_and_writes_nothing_for_none(delivery):
    from webhooks.models import Attempt

    assert insert_rows(Attempt, fields=ATTEMPT_FIELDS, rows=[]) == 0
    with pytest.raises(ValueError, match="6 values"):
        insert_rows(Attempt, fields=ATTEMPT_FIELDS, rows=[(delivery.pk, None)])
    assert not Attempt.objects.exists()


def test_insert_rows_never_truncates_a_value_too_long_for_its_column(delivery):
    from webhooks.models import Attempt

    too_long = "E" * 600  # error is varchar(500)
    row = (delivery.pk, datetime(2026, 12, 5, tzinfo=UTC), None, too_long, 1, "")
    try:
        with transaction.atomic():
            insert_rows(Attempt, fields=ATTEMPT_FIELDS, rows=[row])
    except DataError:
        assert connection.vendor == "postgresql"
        assert not Attempt.objects.exists()
        return
    assert connection.vendor != "postgresql"  # SQLite does not enforce lengths: stored whole
    assert Attempt.objects.get().error == too_long
