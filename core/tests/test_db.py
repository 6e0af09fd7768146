"""update_rows: many rows, each with its own values, in one statement on PostgreSQL."""

from datetime import UTC, datetime
from decimal import Decimal

import pytest
from django.db import DataError, connection, transaction

from core.db import update_rows
from payments.models import Payment, PaymentStatus
from payments.services import payment_create

pytestmark = pytest.mark.django_db
S = PaymentStatus


def _payments(count):
    return [
        payment_create(
            client=None,
            phone_number="254712345678",
            amount=Decimal(10 + n),
            account_reference="A",
            description="B",
        )[0]
        for n in range(count)
    ]


def test_each_row_gets_its_own_values_and_only_matching_rows_change():
    first, second, third = _payments(3)
    Payment.objects.filter(pk=third.pk).update(status=S.PENDING)
    when = datetime(2026, 11, 27, 7, 30, 5, tzinfo=UTC)
    changed = update_rows(
        Payment,
        set_fields=["status", "paid_amount", "mpesa_receipt_number", "transaction_date"],
        match_fields=["status"],
        rows=[
            [first.pk, S.INITIATED, S.SUCCESS, Decimal("10.00"), "UKR1AAAAAA", when],
            [second.pk, S.INITIATED, S.FAILED, None, None, None],
            # Its status is no longer the one read: left alone.
            [third.pk, S.INITIATED, S.SUCCESS, Decimal("12.00"), "UKR1CCCCCC", when],
        ],
    )
    assert changed == 2
    rows = {
        p.pk: (p.status, p.paid_amount, p.mpesa_receipt_number, p.transaction_date)
        for p in Payment.objects.all()
    }
    assert rows[first.pk] == (S.SUCCESS, Decimal("10.00"), "UKR1AAAAAA", when)
    assert rows[second.pk] == (S.FAILED, None, None, None)
    assert rows[third.pk] == (S.PENDING, None, None, None)


def test_no_rows_is_no_statement():
    assert update_rows(Payment, set_fields=["status"], rows=[]) == 0


def test_rows_of_the_wrong_width_are_refused():
    (payment,) = _payments(1)
    with pytest.raises(ValueError, match="3 values"):
        update_rows(Payment, set_fields=["status", "result_code"], rows=[[payment.pk, S.FAILED]])


def test_a_value_too_long_for_its_column_is_never_truncated():
    (payment,) = _payments(1)
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
