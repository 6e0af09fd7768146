"""Export completed payments as an M-Pesa org-portal (G2) Utility Account statement, as CSV.

Shape per docs/statements.md (the portal export): six preamble rows, the 14-column header,
rows newest first, ``DD-MM-YYYY HH:MM:SS`` EAT times, masked payer, amounts with thousands
separators (the csv module quotes them), a running balance, ``A/C No.`` with its leading
space. Only paybill payments are listed: Buy Goods payments land in the till's Merchant
Account, not here.
"""

from __future__ import annotations

import csv
import io
import time
import zlib
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from .ids import EAT, mask_msisdn, parse_daraja_timestamp, payer_name, to_eat

HEADER = [
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
PORTAL_TIME = "%d-%m-%Y %H:%M:%S"
_CENT = Decimal("0.01")


def money(value: Decimal) -> str:
    """``#,##0.00`` as the portal formats amounts (``1,131,340.00``, ``-60.00``)."""
    return f"{value.quantize(_CENT):,.2f}"


def parse_bound(value: str | datetime | None, *, end: bool) -> datetime | None:
    """A period bound as an aware EAT datetime. Naive values are EAT; a bare date means the
    start of the day (``end=False``) or 23:59:59 (``end=True``)."""
    if value is None or isinstance(value, datetime):
        if isinstance(value, datetime) and value.tzinfo is None:
            return value.replace(tzinfo=EAT)
        return value
    text = value.strip()
    date_only_formats = ("%Y-%m-%d", "%d-%m-%Y", "%Y%m%d")
    for fmt in date_only_formats:
        try:
            day = datetime.strptime(text, fmt).replace(tzinfo=EAT)
        except ValueError:
            continue
        return day.replace(hour=23, minute=59, second=59) if end else day
    for fmt in (PORTAL_TIME, "%d-%m-%Y %H:%M", "%Y%m%d%H%M%S"):
        try:
            return datetime.strptime(text, fmt).replace(tzinfo=EAT)
        except ValueError:
            continue
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"cannot read {value!r} as a date or date-time") from None
    return parsed.replace(tzinfo=EAT) if parsed.tzinfo is None else parsed.astimezone(EAT)


def _completed(record: Mapping[str, Any]) -> bool:
    return (
        str(record.get("result_code")) == "0"
        and record.get("status", "completed") == "completed"
        and record.get("transaction_type", "CustomerPayBillOnline") != "CustomerBuyGoodsOnline"
        and bool(record.get("receipt"))
        and parse_daraja_timestamp(str(record.get("transaction_date", ""))) is not None
    )


def export_csv(
    transactions: Iterable[Mapping[str, Any]],
    *,
    shortcode: str = "174379",
    period_from: str | datetime | None = None,
    period_to: str | datetime | None = None,
    opening_balance: Decimal | int | str = 0,
    account_holder: str = "DARAJA SIMULATOR LTD",
    organization: str | None = None,
    operator: str = "simulator",
    report_time: datetime | None = None,
) -> str:
    """Render transaction records (as in ``GET /simulator/transactions``) as a G2 statement.

    ``opening_balance`` is the balance before the first payment in ``transactions``; payments
    before ``period_from`` roll into the statement's Opening Balance.
    """
    report = (report_time or to_eat(time.time())).astimezone(EAT)
    payments = []
    for record in transactions:
        if not _completed(record):
            continue
        completed = parse_daraja_timestamp(str(record["transaction_date"]))
        assert completed is not None  # checked by _completed
        payments.append((completed, str(record["receipt"]), record))
    payments.sort(key=lambda item: (item[0], item[2].get("index", 0), item[1]))

    start = parse_bound(period_from, end=False)
    if start is None:
        first = payments[0][0] if payments else report
        start = first.replace(hour=0, minute=0, second=0, microsecond=0)
    stop = parse_bound(period_to, end=True)
    if stop is None:
        stop = report.replace(hour=23, minute=59, second=59, microsecond=0)

    balance = Decimal(str(opening_balance))
    window_opening: Decimal | None = None
    rows: list[list[str]] = []
    for completed, receipt, record in payments:
        amount = Decimal(str(record["amount"]))
        if completed < start:
            balance += amount  # before the window: part of the opening balance
            continue
        if completed > stop:
            continue
        if window_opening is None:
            window_opening = balance
        balance += amount
        rows.append(_row(completed, receipt, record, amount, balance))
    if window_opening is None:
        window_opening = balance
    total_paid_in = balance - window_opening

    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["Account Holder:", account_holder])
    writer.writerow(["Short Code:", shortcode])
    writer.writerow(["Account:", "Utility Account"])
    writer.writerow(
        ["Time Period:", "From", start.strftime(PORTAL_TIME), "To", stop.strftime(PORTAL_TIME)]
    )
    writer.writerow(
        [
            "Operator:",
            operator,
            "Organization:",
            organization or account_holder,
            "Date of Report:",
            report.strftime(PORTAL_TIME),
        ]
    )
    writer.writerow(
        [
            "Opening Balance:",
            money(window_opening),
            "Closing Balance:",
            money(balance),
            "Available Balance:",
            "",
            "Total Paid In:",
            money(total_paid_in),
            "Total Withdrawn:",
            money(Decimal(0)),
        ]
    )
    writer.writerow(HEADER)
    writer.writerows(reversed(rows))  # newest first, as the portal lists them
    return out.getvalue()


def _row(
    completed: datetime, receipt: str, record: Mapping[str, Any], amount: Decimal, balance: Decimal
) -> list[str]:
    phone = str(record.get("phone", ""))
    name = str(record.get("customer_name") or payer_name(phone))
    party = f"{mask_msisdn(phone)} - {name}"
    account = str(record.get("account_reference", ""))
    # Initiation precedes completion by a second on roughly one row in ten (as observed).
    initiated = completed - timedelta(seconds=1 if zlib.crc32(receipt.encode()) % 10 == 0 else 0)
    return [
        receipt,
        completed.strftime(PORTAL_TIME),
        initiated.strftime(PORTAL_TIME),
        f"Pay Bill from {party} Acc. {account}",
        "Completed",
        money(amount),
        "",
        money(balance),
        "true",
        "Pay Utility",
        party,
        "",
        f" {account}",
        "KES",
    ]
