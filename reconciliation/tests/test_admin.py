"""Admin: a statement is uploaded and its run shown as tables; runs, statements and breaks are
browsable with filters; breaks are resolved with a reason (one, finding the payment by receipt,
phone or amount, or several at once), audited; resolving needs the change_break permission."""

from decimal import Decimal

import pytest
from django.contrib.admin.models import LogEntry
from django.contrib.auth.models import Permission, User
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import TestCase
from django.urls import reverse

from core.services import api_client_create
from payments.models import Payment, PaymentStatus
from reconciliation.imports import statement_import
from reconciliation.models import Break, BreakEvent, ReconciliationRun

from .builders import Preamble, Row, charge_row, eat, g2_csv, make_payment, pay_row

pytestmark = pytest.mark.django_db


@pytest.fixture
def run():
    make_payment(amount=300, status=PaymentStatus.FAILED)
    rows = [
        pay_row("TK5XA1BC2D", 300, "05-11-2025 10:00:30"),
        pay_row("TK5XA1BC2E", 5, "05-11-2025 11:00:00"),
        pay_row("TK5XA1BC2F", 6, "05-11-2025 12:00:00"),
    ]
    return statement_import(data=g2_csv(rows, preamble=Preamble()), file_name="nov.csv").run


def test_the_admin_pages_render(admin_client, run):
    brk = Break.objects.filter(run=run).first()
    urls = [
        reverse("admin:reconciliation_statement_changelist"),
        reverse("admin:reconciliation_statement_change", args=[run.statement_id]),
        reverse("admin:reconciliation_reconciliationrun_changelist"),
        reverse("admin:reconciliation_reconciliationrun_change", args=[run.pk]),
        reverse("admin:reconciliation_break_changelist")
        + "?kind__exact=unknown_payment&status__exact=open",
        reverse("admin:reconciliation_break_change", args=[brk.pk]),
        reverse("admin:reconciliation_breakevent_changelist"),
    ]
    for url in urls:
        response = admin_client.get(url)
        assert response.status_code == 200, url
    page = admin_client.get(reverse("admin:reconciliation_reconciliationrun_change", args=[run.pk]))
    assert b"residual" in page.content
    filtered = admin_client.get(
        reverse("admin:reconciliation_break_changelist") + "?kind__exact=not_success"
    )
    assert filtered.context["cl"].result_count == 1


def test_the_report_downloads_from_the_run_page(admin_client, run):
    response = admin_client.get(
        reverse("admin:reconciliation_reconciliationrun_report", args=[run.pk])
    )

    assert response.status_code == 200
    assert b"section,class" in b"".join(response.streaming_content)


def test_a_break_is_resolved_in_the_admin_with_a_reason(admin_client, admin_user, run):
    brk = Break.objects.get(run=run, kind="not_success")
    url = reverse("admin:reconciliation_break_resolve", args=[brk.pk])
    assert admin_client.get(url).status_code == 200

    response = admin_client.post(url, {"action": "match", "reason": "customer's SMS"})

    assert response.status_code == 302
    brk.refresh_from_db()
    assert (brk.status, brk.resolution, brk.resolved_by) == (
        "resolved",
        "credited",
        admin_user.username,
    )
    assert brk.payment.status == PaymentStatus.SUCCESS
    assert BreakEvent.objects.filter(break_record=brk, actor=admin_user.username).exists()
    assert LogEntry.objects.filter(object_id=str(brk.pk)).exists()


def test_an_impossible_resolution_is_shown_on_the_form(admin_client, run):
    brk = Break.objects.filter(run=run, kind="unknown_payment").first()

    response = admin_client.post(
        reverse("admin:reconciliation_break_resolve", args=[brk.pk]),
        {"action": "match", "reason": "x"},
    )

    assert response.status_code == 200
    assert b"Say which payment" in response.content
    brk.refresh_from_db()
    assert brk.status == "open"


def test_several_breaks_are_accepted_at_once_with_one_reason(admin_client, run):
    ids = list(Break.objects.filter(run=run, kind="unknown_payment").values_list("pk", flat=True))
    url = reverse("admin:reconciliation_break_changelist")
    form = {"action": "accept_selected", "_selected_action": ids}

    asked = admin_client.post(url, form)
    assert asked.status_code == 200 and b"reason" in asked.content

    done = admin_client.post(url, {**form, "apply": "1", "reason": "test transactions"})

    assert done.status_code == 302
    assert set(Break.objects.filter(pk__in=ids).values_list("status", "resolution_reason")) == {
        ("resolved", "test transactions")
    }


def test_resolving_needs_the_change_break_permission(client, run):
    staff = User.objects.create_user("viewer", password="pw", is_staff=True)
    staff.user_permissions.add(Permission.objects.get(codename="view_break"))
    client.force_login(staff)
    brk = Break.objects.filter(run=run).first()

    assert (
        client.get(reverse("admin:reconciliation_break_change", args=[brk.pk])).status_code == 200
    )
    response = client.post(
        reverse("admin:reconciliation_break_resolve", args=[brk.pk]),
        {"action": "accept", "reason": "x"},
    )

    assert response.status_code == 403
    brk.refresh_from_db()
    assert brk.status == "open"


def upload_in_admin(admin_client, data, name="nov.csv", **fields):
    """The admin's upload; the worker's task (eager in unit tests) runs once it commits."""
    with TestCase.captureOnCommitCallbacks(execute=True):
        return admin_client.post(
            reverse("admin:reconciliation_statement_add"),
            {"file": SimpleUploadedFile(name, data, content_type="text/csv"), **fields},
        )


def test_a_statement_is_uploaded_in_the_admin_and_its_run_is_shown_as_tables(
    admin_client, admin_user
):
    make_payment(amount=100, receipt="TK5XA1BC2D")
    data = g2_csv(
        [
            pay_row("TK5XA1BC2D", 100, "05-11-2025 10:00:00"),
            pay_row("TK5XA1BC2E", 1234.5, "05-11-2025 10:01:00"),
            charge_row("TK5XA1BC2D", 5, "05-11-2025 10:00:00"),
            Row(receipt="TK5XA1BC2F", completed="05-11-2025 10:02:00", paid_in="five"),
        ],
        preamble=Preamble(total_paid_in=Decimal("999")),
    )
    assert admin_client.get(reverse("admin:reconciliation_statement_add")).status_code == 200

    response = upload_in_admin(admin_client, data)

    assert response.status_code == 302, response.content.decode()[:2000]
    run = ReconciliationRun.objects.get()
    assert response["Location"] == reverse(
        "admin:reconciliation_reconciliationrun_change", args=[run.pk]
    )
    assert run.statement.uploaded_by == admin_user.username
    assert LogEntry.objects.filter(object_id=str(run.statement_id)).exists()
    page = admin_client.get(response["Location"]).content.decode()
    # Tables, not JSON: no escaped minus signs, no braces of a dumped mapping.
    assert "\\u2212" not in page and '{"' not in page and "<pre>" not in page
    for section in ("run-summary", "run-classes", "run-bridge", "run-warnings"):
        assert f'id="{section}"' in page, section
    assert "1,234.50" in page  # amounts with separators, in their own aligned cells
    assert 'class="amount"' in page
    assert "Paid in the statement, unknown to us" in page  # the class as a person reads it
    assert f"?run__id__exact={run.pk}&amp;kind__exact=unknown_payment" in page
    assert "Total Paid In in the header is 999.00" in page  # a warning, as a list item
    assert "Completed" in page
    # The period in East Africa time to the second (the header's 01-11-2025 00:00:00).
    assert "2025-11-01 00:00:00 EAT" in page and "2025-11-30 23:59:59 EAT" in page


def test_the_admin_upload_is_the_api_upload(admin_client, api, api_key):
    """One import: a file the API imported for a client is the same run in the admin."""
    data = g2_csv([pay_row("TK5XA1BC2E", 5, "05-11-2025 10:01:00")], preamble=Preamble())
    first = api.post(
        "/reconciliation/statements/",
        {"file": SimpleUploadedFile("nov.csv", data, content_type="text/csv")},
        format="multipart",
    )
    run_id = first.json()["run"]["id"]

    again = upload_in_admin(admin_client, data, client=str(api_key.client.pk))

    assert again["Location"] == reverse(
        "admin:reconciliation_reconciliationrun_change", args=[run_id]
    )
    assert ReconciliationRun.objects.count() == 1
    page = admin_client.get(again["Location"], follow=True).content.decode()
    assert "imported before" in page


def test_an_unreadable_file_is_refused_on_the_upload_form(admin_client):
    response = upload_in_admin(admin_client, b"<html><table><tr><td>x</td></tr></table>", "a.xls")

    assert response.status_code == 200
    assert "Not a readable statement" in response.content.decode()
    assert not ReconciliationRun.objects.exists()


def test_uploading_needs_the_add_statement_permission(client):
    staff = User.objects.create_user("viewer", password="pw", is_staff=True)
    staff.user_permissions.add(Permission.objects.get(codename="view_statement"))
    client.force_login(staff)
    data = g2_csv([pay_row("TK5XA1BC2E", 5, "05-11-2025 10:01:00")], preamble=Preamble())

    assert client.get(reverse("admin:reconciliation_statement_add")).status_code == 403
    assert upload_in_admin(client, data).status_code == 403
    assert not ReconciliationRun.objects.exists()


def test_the_summary_period_is_in_east_africa_time_in_the_api(api, api_key):
    data = g2_csv([pay_row("TK5XA1BC2E", 5, "05-11-2025 10:01:00")], preamble=Preamble())
    with TestCase.captureOnCommitCallbacks(execute=True):
        body = api.post(
            "/reconciliation/statements/",
            {"file": SimpleUploadedFile("nov.csv", data, content_type="text/csv")},
            format="multipart",
        ).json()
    run_id = body["run"]["id"]

    for summary in (
        api.get(f"/reconciliation/runs/{run_id}/").json()["summary"],
        api.get(f"/reconciliation/runs/{run_id}/summary/").json(),
    ):
        assert summary["period"]["start"] == "2025-11-01T00:00:00+03:00"
        assert summary["period"]["end"] == "2025-11-30T23:59:59+03:00"


@pytest.fixture
def unknown_line():
    """A line paid in the statement that no payment claims, and a PENDING payment of the
    same amount by the same payer a minute before: the one a person matches it to."""
    pending = make_payment(
        amount=900,
        status=PaymentStatus.PENDING,
        phone="254722000555",
        when=eat("05-11-2025 09:59:00"),
    )
    make_payment(amount=901, status=PaymentStatus.PENDING, phone="254722000666")
    line = pay_row("RCPT000010", 900, "05-11-2025 10:00:00", phone="254722000555")
    # Not matched on its own: 80 seconds from the payment, past a 60-second window.
    run = statement_import(data=g2_csv([line], preamble=Preamble()), time_window_seconds=60).run
    return Break.objects.get(run=run, kind="unknown_payment"), pending


@pytest.mark.parametrize("term", ["RCPT000009", "rcpt000009", "0722 000 555", "+254722000555"])
@pytest.mark.parametrize("amount", ["900", "900.00", "900.000", "900,00"])
def test_the_resolve_page_finds_payments_by_receipt_phone_or_amount(
    admin_client, unknown_line, term, amount
):
    brk, pending = unknown_line
    Payment.objects.filter(pk=pending.pk).update(mpesa_receipt_number="RCPT000009")
    url = reverse("admin:reconciliation_break_resolve", args=[brk.pk])

    for query in (term, amount):
        found = admin_client.get(url, {"q": query}).content.decode()
        if query == "900,00":  # not an amount: nothing found, and said so
            assert "No payment found" in found
            continue
        assert f'value="{pending.pk}"' in found, query
        assert "254722000666" not in found, query


def test_a_break_is_matched_to_the_payment_chosen_from_the_search(
    admin_client, admin_user, unknown_line
):
    brk, pending = unknown_line
    url = reverse("admin:reconciliation_break_resolve", args=[brk.pk])
    assert f'value="{pending.pk}"' in admin_client.get(url, {"q": "0722000555"}).content.decode()

    response = admin_client.post(
        url, {"action": "match", "payment_id": str(pending.pk), "reason": "customer's SMS"}
    )

    assert response.status_code == 302
    brk.refresh_from_db()
    pending.refresh_from_db()
    assert (brk.status, brk.resolved_payment_id, brk.resolved_by) == (
        "resolved",
        pending.pk,
        admin_user.username,
    )
    assert pending.status == PaymentStatus.SUCCESS
    assert BreakEvent.objects.filter(break_record=brk, actor=admin_user.username).exists()


def test_the_resolve_page_keeps_the_api_rules_for_another_clients_payment(admin_client, api_key):
    other = api_client_create(name="other").client
    theirs = make_payment(amount=900, status=PaymentStatus.PENDING, client=other)
    run = statement_import(
        data=g2_csv([pay_row("RCPT000010", 900, "05-11-2025 10:00:00")], preamble=Preamble()),
        client=api_key.client,
    ).run
    brk = Break.objects.get(run=run, kind="unknown_payment")
    url = reverse("admin:reconciliation_break_resolve", args=[brk.pk])

    assert f'value="{theirs.pk}"' not in admin_client.get(url, {"q": "900"}).content.decode()
    response = admin_client.post(
        url, {"action": "match", "payment_id": str(theirs.pk), "reason": "x"}
    )

    assert response.status_code == 200
    brk.refresh_from_db()
    assert brk.status == "open"


def big_statement(lines):
    rows = [pay_row(f"TK5X{n:06d}", 5 + n, "05-11-2025 10:01:00") for n in range(lines)]
    return g2_csv(rows, preamble=Preamble())


def test_the_admin_upload_takes_statements_over_the_body_limit_up_to_the_statement_limit(
    admin_client, settings
):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 4096
    data = big_statement(200)
    assert len(data) > 4096

    response = upload_in_admin(admin_client, data)

    assert response.status_code == 302
    assert ReconciliationRun.objects.get().statement.line_count == 200


def test_a_statement_over_the_upload_limit_is_refused_on_the_form(admin_client, settings):
    settings.RECONCILIATION_MAX_UPLOAD_BYTES = 2048
    data = big_statement(100)

    response = upload_in_admin(admin_client, data)

    assert response.status_code == 200
    assert "The file is over 2048 bytes" in response.content.decode()
    assert not ReconciliationRun.objects.exists()


def test_several_not_success_breaks_are_credited_at_once_with_one_reason(admin_client, admin_user):
    failed = [
        make_payment(amount=300 + n, status=PaymentStatus.FAILED, receipt=f"TK5XA1BC2{n}")
        for n in range(2)
    ]
    rows = [pay_row(p.mpesa_receipt_number, p.amount, "05-11-2025 10:00:30") for p in failed]
    run = statement_import(data=g2_csv(rows, preamble=Preamble()), auto_resolve=False).run
    ids = list(Break.objects.filter(run=run).values_list("pk", flat=True))
    assert len(ids) == 2
    url = reverse("admin:reconciliation_break_changelist")
    form = {"action": "credit_selected", "_selected_action": ids}

    asked = admin_client.post(url, form)
    assert asked.status_code == 200 and 'id="selected-breaks"' in asked.content.decode()
    done = admin_client.post(url, {**form, "apply": "1", "reason": "bank statement"})

    assert done.status_code == 302
    assert set(Break.objects.filter(pk__in=ids).values_list("status", "resolution")) == {
        ("resolved", "credited")
    }
    assert {p.status for p in Payment.objects.filter(pk__in=[p.pk for p in failed])} == {
        PaymentStatus.SUCCESS
    }
    assert BreakEvent.objects.filter(break_record__in=ids, actor=admin_user.username).count() == 2


def test_the_admin_upload_queues_the_statement_and_the_run_page_follows_it(admin_client):
    data = g2_csv([pay_row("TK5XA1BC2E", 5, "05-11-2025 10:01:00")], preamble=Preamble())

    # Without the commit (the test's transaction stays open) no worker is woken: the request
    # itself read nothing.
    response = admin_client.post(
        reverse("admin:reconciliation_statement_add"),
        {"file": SimpleUploadedFile("nov.csv", data, content_type="text/csv")},
        follow=True,
    )

    page = response.content.decode()
    run = ReconciliationRun.objects.get()
    assert run.state == "queued" and run.statement.line_count == 0
    assert f"run #{run.pk} is queued" in page
    assert "Queued" in page

    ReconciliationRun.objects.filter(pk=run.pk).update(state="failed", error="row 9: too wide")
    failed = admin_client.get(
        reverse("admin:reconciliation_reconciliationrun_change", args=[run.pk])
    )
    assert "Failed: row 9: too wide" in failed.content.decode()


def test_the_breaks_list_filters_by_run_from_the_run_page_link(admin_client, run):
    url = reverse("admin:reconciliation_break_changelist")

    response = admin_client.get(url, {"run__id__exact": run.pk})
    other = admin_client.get(url, {"run__id__exact": run.pk + 1000})
    bad = admin_client.get(url, {"run__id__exact": "1 OR 1=1"})

    assert response.status_code == 200
    listed = {brk.pk for brk in response.context["cl"].result_list}
    assert listed == set(Break.objects.filter(run=run).values_list("pk", flat=True))
    assert str(run) in response.content.decode()
    assert list(other.context["cl"].result_list) == []
    assert bad.status_code == 302 and "e=1" in bad["Location"]


@pytest.mark.services
def test_the_open_breaks_list_is_read_in_order_from_an_index(admin_client, run):
    """On PostgreSQL: the admin's list of open breaks, newest run first, comes from
    break_status_run_desc_id in its order (no sort of every open break before the page).
    Sequential scans are disabled so the tiny test table does not hide the plan."""
    from django.db import connection, transaction

    from reconciliation.admin.breaks import BreakAdmin

    queryset = Break.objects.filter(status="open").order_by(*BreakAdmin.ordering)[:51]
    sql, params = queryset.query.sql_with_params()
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")
        cursor.execute(f"EXPLAIN {sql}", params)
        plan = "\n".join(row[0] for row in cursor.fetchall())

    assert "break_status_run_desc_id" in plan, plan
    assert "Sort" not in plan, plan
    assert (
        admin_client.get(
            reverse("admin:reconciliation_break_changelist"), {"status__exact": "open"}
        ).status_code
        == 200
    )


def test_the_breaks_search_finds_a_break_by_number_payment_or_receipt(admin_client, run):
    url = reverse("admin:reconciliation_break_changelist")
    with_payment = Break.objects.filter(run=run, payment__isnull=False).first()
    with_line = Break.objects.filter(run=run, line__isnull=False).first()

    def found(term):
        response = admin_client.get(url, {"q": term})
        assert response.status_code == 200
        return {brk.pk for brk in response.context["cl"].result_list}

    assert found(str(with_payment.pk)) == {with_payment.pk}
    assert found(f" {with_payment.payment_id} ") == {
        brk.pk for brk in Break.objects.filter(payment_id=with_payment.payment_id)
    }
    receipt = with_line.line.receipt_number
    assert found(receipt.lower()) == {
        brk.pk for brk in Break.objects.filter(line__receipt_number=receipt)
    }
    for nothing in ("9" * 40, "not a receipt!", "\u0669\u0660", "x" * 5000):
        assert found(nothing) == set()
