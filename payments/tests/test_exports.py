"""Exports for accountants: the API's and the admin's payments as CSV and XLSX, with the list's
filters, formula-safe cells, amounts as numbers and East Africa Time."""

import csv
import io
from datetime import datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from openpyxl import load_workbook

from core.services import api_client_create
from payments.models import Payment
from testsupport.factories import PaymentFactory

pytestmark = pytest.mark.django_db

EAT = ZoneInfo("Africa/Nairobi")


def _csv(response) -> list[dict[str, str]]:
    assert response.status_code == 200, response.content
    assert response["Content-Type"] == "text/csv"
    assert response["Content-Disposition"].startswith('attachment; filename="payments-')
    text = b"".join(response.streaming_content).decode("utf-8")
    assert text.startswith("\ufeff")
    return list(csv.DictReader(io.StringIO(text[1:])))


def test_the_csv_has_every_payment_of_the_filter_in_an_accountants_columns(api, api_key):
    made = PaymentFactory(
        client=api_key.client, success=True, amount="1234.50", receipt="UKR0EXPORT"
    )
    Payment.objects.filter(pk=made.pk).update(
        created_at=datetime(2026, 12, 5, 11, 30, 15, tzinfo=ZoneInfo("UTC")),
        payer_name='=HYPERLINK("http://evil.example")',
        account_reference="-2+3",
    )
    PaymentFactory(client=api_key.client, failed=True)
    PaymentFactory(client=api_client_create(name="other").client, success=True)

    rows = _csv(api.get("/payments/export.csv?status=SUCCESS"))
    assert len(rows) == 1
    row = rows[0]
    assert row["Payment ID"] == str(made.pk)
    assert row["Created (EAT)"] == "2026-12-05 14:30:15"
    assert row["Amount (KES)"] == "1234.50" and row["Amount paid (KES)"] == "1234.50"
    assert row["M-Pesa receipt"] == "UKR0EXPORT" and row["Status"] == "SUCCESS"
    assert row["Payer name"] == '\'=HYPERLINK("http://evil.example")'
    assert row["Account reference"] == "'-2+3"
    assert row["Needs review"] == "no" and row["Channel"] == "stk"
    assert {r["Status"] for r in _csv(api.get("/payments/export.csv"))} == {"SUCCESS", "FAILED"}


def test_the_xlsx_has_numbers_times_and_safe_text(api, api_key):
    made = PaymentFactory(client=api_key.client, success=True, amount="99.00", receipt="UKR0XLSX01")
    Payment.objects.filter(pk=made.pk).update(
        created_at=datetime(2026, 12, 5, 21, 0, 0, tzinfo=ZoneInfo("UTC")),
        payer_name="@SUM(A1:A9)",
    )
    response = api.get("/payments/export.xlsx")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("application/vnd.openxmlformats")
    sheet = load_workbook(io.BytesIO(b"".join(response.streaming_content))).active
    headings = [cell.value for cell in sheet[1]]
    row = dict(zip(headings, [cell.value for cell in sheet[2]], strict=True))
    assert row["Amount (KES)"] == 99 and isinstance(row["Amount (KES)"], (int, float, Decimal))
    assert row["Created (EAT)"] == datetime(2026, 12, 6, 0, 0, 0)  # midnight in Nairobi
    assert row["Payer name"] == "'@SUM(A1:A9)"
    assert sheet.max_row == 2


def test_a_bad_filter_is_a_400_naming_it_and_another_merchants_payments_never_appear(api):
    response = api.get("/payments/export.csv?created_after=yesterday")
    assert response.status_code == 400
    assert "created_after" in response.json()["error"]["fields"]
    other = api_client_create(name="other").client
    PaymentFactory(client=other, success=True)
    assert _csv(api.get("/payments/export.csv")) == []


def test_the_export_needs_an_api_key(client):
    assert client.get("/payments/export.csv").status_code == 401


def test_the_admin_exports_the_selected_payments(admin_client):
    first = PaymentFactory(success=True, receipt="UKR0ADMIN1")
    PaymentFactory(success=True, receipt="UKR0ADMIN2")
    response = admin_client.post(
        "/admin/payments/payment/",
        {"action": "export_csv", "_selected_action": [first.pk]},
    )
    rows = _csv(response)
    assert [r["M-Pesa receipt"] for r in rows] == ["UKR0ADMIN1"]
    response = admin_client.post(
        "/admin/payments/payment/",
        {"action": "export_csv", "select_across": "1", "_selected_action": [first.pk]},
    )
    assert {r["M-Pesa receipt"] for r in _csv(response)} == {"UKR0ADMIN1", "UKR0ADMIN2"}


def test_an_xlsx_over_the_limit_is_refused_saying_to_narrow_it_or_take_csv(
    api, api_key, settings, admin_client
):
    settings.EXPORT_XLSX_MAX_ROWS = 2
    for _ in range(3):
        PaymentFactory(client=api_key.client)
    response = api.get("/payments/export.xlsx")
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "too_many_rows" and "at most 2 rows" in error["message"]
    assert "CSV" in error["message"]
    assert len(_csv(api.get("/payments/export.csv"))) == 3
    assert api.get("/payments/export.xlsx?status=INITIATED").status_code == 200  # none
    page = admin_client.post(
        "/admin/payments/payment/",
        {"action": "export_xlsx", "select_across": "1", "_selected_action": ["x"]},
        follow=True,
    ).content.decode()
    assert "at most 2 rows" in page
