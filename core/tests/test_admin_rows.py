"""The quick list rows (core.admin_rows) are Django's rows, cell for cell: the payments and
breaks lists, unfiltered, filtered and searched (the filters carried on each row's link),
with every kind of cell (checkbox, link, display method, foreign key, date, empty value)."""

from datetime import timedelta

import pytest
from django.contrib.admin.templatetags import admin_list
from django.test.html import parse_html
from django.urls import reverse
from django.utils import timezone

from core import admin_rows
from payments.models import Payment, PaymentStatus
from reconciliation.imports import statement_import
from reconciliation.tests.builders import Preamble, g2_csv, make_payment, pay_row
from testsupport.factories import PaymentFactory

pytestmark = pytest.mark.django_db

PAYMENTS = reverse("admin:payments_payment_changelist")
BREAKS = reverse("admin:reconciliation_break_changelist")


def assert_same_rows(changelist):
    djangos = [[parse_html(cell) for cell in row] for row in admin_list.results(changelist)]
    ours = [[parse_html(cell) for cell in row] for row in admin_rows.rows(changelist)]
    assert djangos, "the list has rows to compare"
    assert ours == djangos


@pytest.fixture
def payments():
    made = [
        PaymentFactory(success=True, receipt="UKR1ROWS01", account_reference="INV-1"),
        PaymentFactory(failed=True, account_reference="INV-2"),
        PaymentFactory(initiated=True, account_reference="  "),
    ]
    Payment.objects.filter(pk=made[1].pk).update(needs_review=True)
    Payment.objects.filter(pk=made[2].pk).update(created_at=timezone.now() - timedelta(days=40))
    return made


@pytest.mark.parametrize(
    "query",
    [{}, {"status__exact": "FAILED"}, {"q": "INV"}, {"needs_review__exact": "1", "o": "3"}],
)
def test_the_payment_rows_are_djangos(admin_client, payments, query):
    response = admin_client.get(PAYMENTS, query)

    assert response.status_code == 200
    assert_same_rows(response.context["cl"])
    if query:
        assert "_changelist_filters=" in response.content.decode()


@pytest.mark.parametrize("query", [{}, {"status__exact": "open"}, {"kind__exact": "not_success"}])
def test_the_break_rows_are_djangos(admin_client, query):
    make_payment(amount=300, status=PaymentStatus.FAILED)
    rows = [
        pay_row("TK5XA1BC2D", 300, "05-11-2025 10:00:30"),
        pay_row("TK5XA1BC2E", 5, "05-11-2025 11:00:00"),
    ]
    statement_import(data=g2_csv(rows, preamble=Preamble()), file_name="nov.csv")

    response = admin_client.get(BREAKS, query)

    assert response.status_code == 200
    assert_same_rows(response.context["cl"])


def test_the_page_shows_the_quick_rows(admin_client, payments):
    page = admin_client.get(PAYMENTS, {"status__exact": "FAILED"}).content.decode()

    assert page.count('name="_selected_action"') == 1
    assert f'value="{payments[1].pk}"' in page
    assert "?_changelist_filters=status__exact%3DFAILED" in page
