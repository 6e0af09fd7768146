"""Admin: runs, statements and breaks are browsable with filters; breaks are resolved with a
reason (one, or several at once), audited; resolving needs the change_break permission."""

import pytest
from django.contrib.admin.models import LogEntry
from django.contrib.auth.models import Permission, User
from django.urls import reverse

from payments.models import PaymentStatus
from reconciliation.models import Break, BreakEvent
from reconciliation.services import statement_import

from .builders import Preamble, g2_csv, make_payment, pay_row

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
