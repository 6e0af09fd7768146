"""The accountant's CSV report (``GET /reconciliation/runs/<id>/report/``): rejected rows with
their reasons, charges with the sign the statement shows, matched lines with the payment's
status, and text a spreadsheet would run written as text."""

import csv
import io

import pytest

from payments.models import PaymentStatus
from reconciliation.imports import statement_import

from .builders import Preamble, Row, charge_row, g2_csv, make_payment, pay_row

pytestmark = pytest.mark.django_db


def report(api, run_id):
    response = api.get(f"/reconciliation/runs/{run_id}/report/")
    assert response.status_code == 200, response
    return list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))


def imported(client, *rows):
    return statement_import(
        data=g2_csv(list(rows), preamble=Preamble()), file_name="nov.csv", client=client
    ).run


def test_rejected_rows_are_in_the_report_with_their_reasons(api, api_key):
    run = imported(
        api_key.client,
        pay_row("TK5XA1BC2E", 5, "05-11-2025 10:01:00"),
        Row(receipt="TK5XA1BC2F", completed="05-11-2025 10:02:00", paid_in="five"),
        Row(receipt="=cmd|'/C calc'!A0", completed="yesterday", paid_in="6.00"),
    )

    rejects = [row for row in report(api, run.pk) if row["section"] == "reject"]

    assert [row["row"] for row in rejects] == ["9", "10"]
    assert "not an amount" in rejects[0]["reason"]
    assert "TK5XA1BC2F" in rejects[0]["details"] and "five" in rejects[0]["details"]
    assert rejects[1]["reason"]
    # The row as read is the statement's text: a formula in it is written as text.
    assert rejects[1]["details"].startswith("'=cmd")


def test_a_charge_keeps_the_sign_the_statement_shows(api, api_key):
    make_payment(amount=100, receipt="TK5XA1BC2D", client=api_key.client)
    run = imported(
        api_key.client,
        pay_row("TK5XA1BC2D", 100, "05-11-2025 10:00:00"),
        charge_row("TK5XA1BC2D", 5, "05-11-2025 10:00:00"),
    )

    lines = [row for row in report(api, run.pk) if row["section"] == "line"]

    charge = next(row for row in lines if row["class"] == "charge")
    assert (charge["withdrawn"], charge["statement_amount"]) == ("-5.00", "-5.00")
    paid = next(row for row in lines if row["class"] == "matched")
    assert (paid["paid_in"], paid["statement_amount"]) == ("100.00", "100.00")
    summary = {row["class"]: row for row in report(api, run.pk) if row["section"] == "summary"}
    assert summary["charge"]["statement_amount"] == "-5.00"


def test_a_matched_line_carries_the_payment_status(api, api_key):
    paid = make_payment(amount=100, receipt="TK5XA1BC2D", client=api_key.client)
    run = imported(api_key.client, pay_row("TK5XA1BC2D", 100, "05-11-2025 10:00:00"))

    (line,) = [row for row in report(api, run.pk) if row["section"] == "line"]

    assert line["class"] == "matched"
    assert (line["payment_id"], line["payment_status"]) == (str(paid.pk), PaymentStatus.SUCCESS)
