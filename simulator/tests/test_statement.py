"""Org-portal (G2) statement export: preamble, header, rows, balances, filtering."""

from __future__ import annotations

import csv
import io
from datetime import datetime
from decimal import Decimal

import pytest

from simulator.ids import EAT
from simulator.statement import HEADER, export_csv


def _record(receipt, when, amount, phone="254708374149", ref="37941535", **extra):
    record = {
        "receipt": receipt,
        "transaction_date": when,
        "amount": amount,
        "phone": phone,
        "account_reference": ref,
        "customer_name": "JOHN **** DOE",
        "result_code": "0",
        "status": "completed",
        "transaction_type": "CustomerPayBillOnline",
    }
    record.update(extra)
    return record


RECORDS = [
    _record("TK5XA1BC2D", "20251105214513", 111),
    _record("TK4XA1BC2F", "20251104000158", 1500, phone="254712345108", ref="A1"),
    _record("TK5XA1BC2E", "20251105194007", 1_129_729),
    _record("TK5FAILED1", "20251105120000", 50, result_code="1032", status="failed"),
    _record("TK5PENDING", "20251105120000", 60, status="pending"),
    _record("TK5TILL0001", "20251105120000", 70, transaction_type="CustomerBuyGoodsOnline"),
]
REPORT = datetime(2025, 11, 5, 22, 22, 57, tzinfo=EAT)


def _rows(text):
    return list(csv.reader(io.StringIO(text)))


def test_preamble_header_and_rows():
    text = export_csv(
        RECORDS,
        shortcode="4125223",
        period_from="2025-10-11",
        period_to="2025-11-05",
        opening_balance=Decimal("4040"),
        account_holder="ACME LTD",
        operator="jdoe",
        report_time=REPORT,
    )
    rows = _rows(text)
    assert rows[0] == ["Account Holder:", "ACME LTD"]
    assert rows[1] == ["Short Code:", "4125223"]
    assert rows[2] == ["Account:", "Utility Account"]
    assert rows[3] == ["Time Period:", "From", "11-10-2025 00:00:00", "To", "05-11-2025 23:59:59"]
    assert rows[4] == [
        "Operator:",
        "jdoe",
        "Organization:",
        "ACME LTD",
        "Date of Report:",
        "05-11-2025 22:22:57",
    ]
    assert rows[5] == [
        "Opening Balance:",
        "4,040.00",
        "Closing Balance:",
        "1,135,380.00",
        "Available Balance:",
        "",
        "Total Paid In:",
        "1,131,340.00",
        "Total Withdrawn:",
        "0.00",
    ]
    assert rows[6] == HEADER
    assert HEADER == [
        "Receipt No.",
        "Completion Time",
        "Initiation Time",
        "Details",
        "Transaction Status",
        "Paid In",
        "Withdrawn",
        "Balance",
        "Balance Confirmed",
        "Reason Type",
        "Other Party Info",
        "Linked Transaction ID",
        "A/C No.",
        "Currency",
    ]
    body = rows[7:]
    # Only completed paybill payments, newest first, with a running balance.
    assert [r[0] for r in body] == ["TK5XA1BC2D", "TK5XA1BC2E", "TK4XA1BC2F"]
    assert [r[7] for r in body] == ["1,135,380.00", "1,135,269.00", "5,540.00"]
    newest = dict(zip(HEADER, body[0], strict=True))
    assert newest == {
        "Receipt No.": "TK5XA1BC2D",
        "Completion Time": "05-11-2025 21:45:13",
        "Initiation Time": newest["Initiation Time"],
        "Details": "Pay Bill from 25470****149 - JOHN **** DOE Acc. 37941535",
        "Transaction Status": "Completed",
        "Paid In": "111.00",
        "Withdrawn": "",
        "Balance": "1,135,380.00",
        "Balance Confirmed": "true",
        "Reason Type": "Pay Utility",
        "Other Party Info": "25470****149 - JOHN **** DOE",
        "Linked Transaction ID": "",
        "A/C No.": " 37941535",
        "Currency": "KES",
    }
    initiated = datetime.strptime(newest["Initiation Time"], "%d-%m-%Y %H:%M:%S")
    assert 0 <= (datetime(2025, 11, 5, 21, 45, 13) - initiated).total_seconds() <= 1
    assert body[2][3] == "Pay Bill from 25471****108 - JOHN **** DOE Acc. A1"


def test_amounts_are_quoted_with_thousands_separators():
    text = export_csv(RECORDS, report_time=REPORT)
    assert '"1,129,729.00"' in text
    assert ",111.00," in text
    assert ", 37941535,KES" in text  # A/C No. keeps its leading space


def test_period_filter_rolls_earlier_payments_into_the_opening_balance():
    text = export_csv(
        RECORDS, period_from="05-11-2025 20:00:00", period_to="2025-11-05", report_time=REPORT
    )
    rows = _rows(text)
    assert rows[5][1] == "1,131,229.00"  # 1,500 + 1,129,729 before the window
    assert rows[5][7] == "111.00"
    assert [r[0] for r in rows[7:]] == ["TK5XA1BC2D"]


def test_default_period_and_empty_statement():
    rows = _rows(export_csv(RECORDS, report_time=REPORT))
    assert rows[3][2:5] == ["04-11-2025 00:00:00", "To", "05-11-2025 23:59:59"]
    empty = _rows(export_csv([], report_time=REPORT, opening_balance=10))
    assert empty[5][1] == empty[5][3] == "10.00"
    assert empty[6] == HEADER and len(empty) == 7


def test_bad_bound_is_refused():
    with pytest.raises(ValueError):
        export_csv(RECORDS, period_from="yesterday")


def test_statement_endpoint_lists_completed_pushes(sim, receiver):
    ok = sim.accepted(Amount=1200, AccountReference="INV-7")["CheckoutRequestID"]
    failed = sim.accepted("254711000032")["CheckoutRequestID"]
    silent = sim.accepted("254711000040")["CheckoutRequestID"]
    for checkout in (ok, failed, silent):
        sim.wait_answered(checkout)
    response = sim.http.get("/simulator/statement.csv")
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/csv")
    assert 'filename="ORG_174379_UtilityAccount_All_' in response.headers["Content-Disposition"]
    rows = _rows(response.text)
    receipts = {r[0]: r for r in rows[7:]}
    # A payment whose callback never came is still on the statement (reconciliation).
    assert set(receipts) == {sim.record(ok)["receipt"], sim.record(silent)["receipt"]}
    row = receipts[sim.record(ok)["receipt"]]
    assert row[5] == "1,200.00" and row[12] == " INV-7"
    assert row[3].startswith("Pay Bill from ") and "****" in row[3]
    day = sim.record(ok)["transaction_date"][:8]  # not "today": the run may cross midnight
    today = f"{day[:4]}-{day[4:6]}-{day[6:]}"
    filtered = sim.http.get("/simulator/statement.csv", params={"from": today, "to": today})
    assert len(_rows(filtered.text)) == 9
    assert sim.http.get("/simulator/statement.csv", params={"from": "nope"}).status_code == 400
