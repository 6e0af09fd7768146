"""Payments admin, as a finance person reads it: statuses coloured, the review flag only where
it is set, the client, amounts aligned, times to the second in EAT, totals of the filtered
payments from one aggregate query, and a payment's statement lines and breaks linked."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from core.services import api_client_create
from payments.models import Payment, PaymentStatus
from reconciliation.imports import statement_import
from reconciliation.models import Break
from reconciliation.services import break_resolve
from reconciliation.tests.builders import Preamble, eat, g2_csv, make_payment, pay_row

pytestmark = pytest.mark.django_db
CHANGELIST = reverse("admin:payments_payment_changelist")


@pytest.fixture
def payments():
    shop = api_client_create(name="Acme School").client
    made = [
        make_payment(amount="1200.50", status=PaymentStatus.SUCCESS, receipt="TK5XA1BC2D"),
        make_payment(amount="300", status=PaymentStatus.FAILED, client=shop),
        make_payment(amount="45", status=PaymentStatus.PENDING, client=shop),
    ]
    Payment.objects.filter(pk=made[1].pk).update(needs_review=True)
    Payment.objects.filter(pk=made[0].pk).update(created_at=eat("05-11-2025 09:59:41"))
    return made


def test_the_list_shows_coloured_statuses_the_client_and_the_review_flag_only_when_set(
    admin_client, payments
):
    page = admin_client.get(CHANGELIST).content.decode()

    assert '<span class="status status-success">Success</span>' in page
    assert '<span class="status status-failed">Failed</span>' in page
    assert '<span class="status status-pending">Pending</span>' in page
    assert page.count(">needs review</span>") == 1  # one payment has the flag
    assert page.count('<td class="field-review"></td>') == 2  # the others: nothing, not "False"
    assert "Acme School" in page
    assert '<span class="amount">1,200.50</span>' in page
    assert "2025-11-05 09:59:41 EAT" in page  # seconds, East Africa time


def test_totals_of_the_filtered_payments_come_from_one_aggregate_query(admin_client, payments):
    with CaptureQueriesContext(connection) as queries:
        page = admin_client.get(CHANGELIST, {"status__exact": "FAILED"}).content.decode()

    sums = [q["sql"] for q in queries.captured_queries if "SUM(" in q["sql"].upper()]
    assert len(sums) == 1
    assert '<span class="amount" id="total-amount">300.00</span>' in page
    everything = admin_client.get(CHANGELIST, {"q": "254722000108"}).content.decode()
    assert '<span class="amount" id="total-amount">1,545.50</span>' in everything


def test_an_unfiltered_list_reads_no_sums(admin_client, payments):
    with CaptureQueriesContext(connection) as queries:
        page = admin_client.get(CHANGELIST).content.decode()

    assert not [q for q in queries.captured_queries if "SUM(" in q["sql"].upper()]
    assert "Choose a filter" in page


def test_a_filter_that_selects_more_payments_than_the_limit_sums_nothing(
    admin_client, payments, monkeypatch
):
    from payments.admin import PaymentAdmin

    monkeypatch.setattr(PaymentAdmin, "totals_max_rows", 2)
    with CaptureQueriesContext(connection) as queries:
        page = admin_client.get(CHANGELIST, {"q": "254722000108"}).content.decode()

    assert not [q for q in queries.captured_queries if "SUM(" in q["sql"].upper()]
    assert "More than 2 payments are selected" in page
    one = admin_client.get(CHANGELIST, {"status__exact": "FAILED"}).content.decode()
    assert '<span class="amount" id="total-amount">300.00</span>' in one


def test_a_payment_links_to_its_statement_line_and_break(admin_client):
    pending = make_payment(amount=900, status=PaymentStatus.PENDING)
    run = statement_import(
        data=g2_csv([pay_row("RCPT000010", 900, "05-11-2025 10:00:00")], preamble=Preamble()),
        file_name="nov.csv",
        auto_resolve=False,
    ).run
    brk = Break.objects.get(run=run)
    assert (brk.kind, brk.payment_id) == ("not_success", pending.pk)  # the tolerance match
    break_resolve(break_id=brk.pk, action="match", actor="acc", reason="SMS")

    page = admin_client.get(reverse("admin:payments_payment_change", args=[pending.pk]))

    html = page.content.decode()
    assert page.status_code == 200
    assert reverse("admin:reconciliation_break_change", args=[brk.pk]) in html
    assert reverse("admin:reconciliation_reconciliationrun_change", args=[run.pk]) in html
    assert "nov.csv</a> row 8" in html and "RCPT000010" in html
    assert '<span class="status status-success">Success</span>' in html


def test_a_list_estimated_far_past_the_limit_counts_nothing_for_its_totals(payments, rf):
    from django.contrib import admin as django_admin

    from payments.admin import PaymentAdmin

    model_admin = PaymentAdmin(Payment, django_admin.site)
    request = rf.get(CHANGELIST, {"status__exact": "FAILED"})
    failed = Payment.objects.filter(status="FAILED")
    limit = model_admin.totals_max_rows

    with CaptureQueriesContext(connection) as far:
        assert model_admin.totals(request, failed, estimate=5 * limit + 1) == {"over": limit}
    near = model_admin.totals(request, failed, estimate=5 * limit)

    assert far.captured_queries == []
    assert near["total"] == "300.00"  # near the limit: counted, and the sums shown
