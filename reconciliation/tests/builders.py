"""Builders for synthetic statements (G2 CSV, XLSX, XLS; Pull Transactions JSON) in the exact
shapes of docs/statements.md, and for payments in every state. Values are invented."""

from __future__ import annotations

import datetime as dt
import io
import json
import secrets
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import openpyxl

from core.models import ApiClient
from payments.models import Payment, PaymentStatus
from testsupport.factories import PaymentFactory

from .xls import xls_bytes

EAT = ZoneInfo("Africa/Nairobi")
UTC = dt.UTC
G2_HEADER = [
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
PERIOD_START = dt.datetime(2025, 11, 1, 0, 0, 0, tzinfo=EAT)
PERIOD_END = dt.datetime(2025, 11, 30, 23, 59, 59, tzinfo=EAT)


def eat(text: str) -> dt.datetime:
    """``"05-11-2025 21:45:13"`` as an aware EAT datetime."""
    return dt.datetime.strptime(text, "%d-%m-%Y %H:%M:%S").replace(tzinfo=EAT)


def g2_time(moment: dt.datetime) -> str:
    return moment.astimezone(EAT).strftime("%d-%m-%Y %H:%M:%S")


def money(value: Decimal | int | str) -> str:
    """``1131340`` → ``"1,131,340.00"``, as the portal formats amounts."""
    return f"{Decimal(value):,.2f}"


@dataclass
class Row:
    """One G2 statement row; text cells exactly as in the export."""

    receipt: str
    completed: str
    paid_in: str = ""
    withdrawn: str = ""
    reason: str = "Pay Utility"
    party: str = "25472****108 - JOHN **** DOE"
    account: str = " 37941535"
    status: str = "Completed"
    balance: str = "1,000.00"
    details: str | None = None
    linked: str = ""
    currency: str = "KES"
    initiated: str | None = None

    def cells(self) -> list[str]:
        details = self.details
        if details is None:
            if self.reason in ("Pay Bill Online", "Pay Utility with OD Online"):
                prefix = "Pay Bill Online from"
            else:
                prefix = "Pay Bill from"
            details = f"{prefix} {self.party} Acc.{self.account}"
        return [
            self.receipt,
            self.completed,
            self.initiated if self.initiated is not None else self.completed,
            details,
            self.status,
            self.paid_in,
            self.withdrawn,
            self.balance,
            "true",
            self.reason,
            self.party,
            self.linked,
            self.account,
            self.currency,
        ]


def pay_row(
    receipt: str,
    amount: Decimal | int | str,
    completed: dt.datetime | str,
    *,
    phone: str = "254722000108",
    account: str = "37941535",
    **kwargs: Any,
) -> Row:
    """A customer's paybill payment, with the payer masked as the portal masks it."""
    when = completed if isinstance(completed, str) else g2_time(completed)
    party = kwargs.pop("party", f"{phone[:5]}****{phone[-3:]} - JOHN **** DOE")
    return Row(
        receipt=receipt,
        completed=when,
        paid_in=money(amount),
        party=party,
        account=" " + account,
        **kwargs,
    )


def charge_row(receipt: str, amount: Decimal | int, completed: str) -> Row:
    return Row(
        receipt=receipt,
        completed=completed,
        withdrawn="-" + money(amount),
        reason="Pay Bill Charge",
        details="Pay Bill Charge",
        party="",
        account="",
    )


@dataclass
class Preamble:
    account_holder: str = "ACME SCHOOLS LTD"
    short_code: str = "4125223"
    account: str = "Utility Account"
    start: dt.datetime | None = PERIOD_START
    end: dt.datetime | None = PERIOD_END
    opening: Decimal | None = Decimal("4040")
    closing: Decimal | None = None
    total_paid_in: Decimal | None = None
    total_withdrawn: Decimal | None = None
    extra: list[list[str]] = field(default_factory=list)

    def rows(self, numeric: bool = False) -> list[list[Any]]:
        def amount(value: Decimal | None) -> Any:
            if value is None:
                return ""
            return float(value) if numeric else money(value)

        rows: list[list[Any]] = [
            ["Account Holder:", self.account_holder],
            ["Short Code:", self.short_code],
            ["Account:", self.account],
        ]
        if self.start is not None and self.end is not None:
            rows.append(["Time Period:", "From", g2_time(self.start), "To", g2_time(self.end)])
        rows.append(
            [
                "Operator:",
                "api-user",
                "Organization:",
                self.account_holder,
                "Date of Report:",
                g2_time(PERIOD_END),
            ]
        )
        rows.append(
            [
                "Opening Balance:",
                amount(self.opening),
                "Closing Balance:",
                amount(self.closing),
                "Available Balance:",
                "",
                "Total Paid In:",
                amount(self.total_paid_in),
                "Total Withdrawn:",
                amount(self.total_withdrawn),
            ]
        )
        return rows + self.extra


def _csv_line(cells: list[Any]) -> str:
    out = []
    for cell in cells:
        text = "" if cell is None else str(cell)
        if any(ch in text for ch in ',"\n\r'):
            text = '"' + text.replace('"', '""') + '"'
        out.append(text)
    return ",".join(out)


def g2_csv(
    rows: list[Row] | list[list[str]],
    *,
    preamble: Preamble | None = None,
    header: list[str] | None = None,
    newline: str = "\n",
    encoding: str = "utf-8",
    bom: bool = False,
) -> bytes:
    lines: list[list[Any]] = []
    if preamble is not None:
        lines.extend(preamble.rows())
    lines.append(header or G2_HEADER)
    for row in rows:
        lines.append(row.cells() if isinstance(row, Row) else row)
    text = newline.join(_csv_line(cells) for cells in lines) + newline
    data = text.encode(encoding)
    return (b"\xef\xbb\xbf" + data) if bom else data


def _numeric(text: str) -> Any:
    """A portal amount as the number a spreadsheet cell holds (the XLS shows ``#,##0.00``)."""
    if text == "":
        return ""  # the portal writes an empty-string text cell, not a blank one
    return float(Decimal(text.replace(",", "")))


def _sheet_rows(rows: list[Row], preamble: Preamble | None) -> list[list[Any]]:
    out: list[list[Any]] = []
    if preamble is not None:
        out.extend(preamble.rows(numeric=True))
    out.append(list(G2_HEADER))
    for row in rows:
        cells: list[Any] = row.cells()
        for index in (5, 6, 7):
            cells[index] = _numeric(cells[index])
        out.append(cells)
    return out


def g2_xlsx(rows: list[Row], *, preamble: Preamble | None = None) -> bytes:
    book = openpyxl.Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.title = "transaction"
    for cells in _sheet_rows(rows, preamble):
        sheet.append(cells)
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def g2_xls(rows: list[Row], *, preamble: Preamble | None = None) -> bytes:
    return xls_bytes(_sheet_rows(rows, preamble))


def pull_json(transactions: list[dict[str, Any]], *, code: str = "1000") -> bytes:
    """A Pull Transactions query response: ``Response`` is an array of arrays."""
    body = {
        "ResponseRefID": "b3f6-4d1e-8c4a-" + secrets.token_hex(4),
        "ResponseCode": code,
        "ResponseMessage": "Success",
        "Response": [transactions],
    }
    return json.dumps(body).encode()


def pull_transaction(
    receipt: str,
    amount: str,
    when: str,
    *,
    msisdn: int | str = 722000108,
    account: str = "37941535",
) -> dict[str, Any]:
    return {
        "transactionId": receipt,
        "trxDate": when,
        "msisdn": msisdn,
        "sender": "JOHN DOE",
        "transactiontype": "c2b-pay-bill-debit",
        "billreference": account,
        "amount": amount,
        "organizationname": "ACME SCHOOLS LTD",
    }


def make_payment(
    *,
    amount: Decimal | int | str = "100.00",
    status: str = PaymentStatus.SUCCESS,
    receipt: str | None = None,
    phone: str = "254722000108",
    account: str = "37941535",
    when: dt.datetime | None = None,
    transaction_date: bool = True,
    client: ApiClient | None = None,
    failure_final: bool = False,
    created_before: dt.timedelta = dt.timedelta(seconds=20),
) -> Payment:
    """A payment as the STK flow leaves it (made by the factory, through the services);
    ``when`` is M-Pesa's completion time (EAT ok), the customer prompted ``created_before``
    it. A SUCCESS without ``receipt`` was confirmed by STK Query (no receipt, no time);
    ``transaction_date=False`` drops the time a callback gave."""
    moment = (when or eat("05-11-2025 10:00:00")).astimezone(UTC)
    payment = PaymentFactory(
        client=client,
        amount=amount,
        phone_number=phone,
        account_reference=account,
        description="School fees",
        status=status,
        receipt=receipt if status == PaymentStatus.SUCCESS else None,
        transaction_date=moment,
        failure_final=failure_final,
        created_at=moment - created_before,
    )
    if receipt and status != PaymentStatus.SUCCESS:
        # Not a state the flow makes (only a success carries a receipt): these tests pin a
        # line to a payment that did not succeed by its receipt, the matcher's exact path.
        Payment.objects.filter(pk=payment.pk).update(
            mpesa_receipt_number=receipt, transaction_date=moment if transaction_date else None
        )
        payment.refresh_from_db()
    if not transaction_date and payment.transaction_date is not None:
        Payment.objects.filter(pk=payment.pk).update(transaction_date=None)
        payment.transaction_date = None
    return payment
