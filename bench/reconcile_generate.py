"""A realistic M-Pesa org portal statement of N lines and the payments it reconciles against,
with planted breaks of every class, for the reconciliation benchmark.

Statement: the G2 CSV layout (preamble with the period and totals, the 14-column header, rows
newest first, quoted thousands separators, negative Withdrawn, a leading space in A/C No.,
masked payer numbers in two styles, Pay Bill Charge rows sharing the payment's receipt, a
daily sweep). Payments: rows for ``payments_payment``, written with COPY.

    python -m bench.reconcile_generate --lines 100000 --out var/bench/statement.csv

prints the expected class counts as JSON. ``bench/reconcile_run.py`` uses it as a module.
"""

from __future__ import annotations

import argparse
import datetime as dt
import io
import json
import random
import string
import sys
import uuid
from collections import Counter
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

EAT = ZoneInfo("Africa/Nairobi")
UTC = dt.UTC
PERIOD_START = dt.datetime(2025, 11, 1, tzinfo=EAT)
PERIOD_DAYS = 30
HEADER = (
    "Receipt No.,Completion Time,Initiation Time,Details,Transaction Status,Paid In,Withdrawn,"
    "Balance,Balance Confirmed,Reason Type,Other Party Info,Linked Transaction ID,A/C No.,Currency"
)
REASONS = [
    ("Pay Utility", "Pay Bill from", 70),
    ("Pay Bill Online", "Pay Bill Online from", 20),
    ("Standing Order Pay Bill", "Standing Order Pay Bill from", 4),
    ("Pay Utility with OD via STK", "Pay Bill from", 4),
    ("Pay Utility with OD Online", "Pay Bill Online from", 2),
]
NAMES = ["JOHN **** DOE", "jane **** roe", "MARY **** AKINYI", "JAMES KAMAU", "PETER", "ANN W"]

# Planted breaks, as fractions of the number of lines.
DEFAULT_RATES = {
    "amount_mismatch": 0.002,
    "unknown_payment": 0.002,
    "not_success_tolerance": 0.002,
    "not_success_exact": 0.0005,
    "missing_from_statement": 0.002,
    "duplicate": 0.001,
    "ambiguous": 0.0005,
    "tolerance_matched": 0.002,
    "charge": 0.03,
    "fee": 0.001,
    "unrelated_failed": 0.02,
}


@dataclass
class Line:
    receipt: str
    time: dt.datetime  # aware
    paid_in: Decimal | None
    withdrawn: Decimal | None
    reason: str
    details: str
    party: str
    account: str


@dataclass
class Generated:
    lines: list[Line] = field(default_factory=list)
    payments: list[dict[str, Any]] = field(default_factory=list)
    expected: Counter[str] = field(default_factory=Counter)


class Generator:
    def __init__(self, seed: int) -> None:
        self.random = random.Random(seed)
        self.receipts: set[str] = set()
        self.phones: set[str] = set()

    def receipt(self, moment: dt.datetime) -> str:
        day = "123456789ABCDEFGHIJKLMNOPQRSTUV"[moment.day - 1]
        month = "ABCDEFGHIJKL"[moment.month - 1]
        while True:
            value = (
                "T"
                + month
                + day
                + "".join(self.random.choices(string.ascii_uppercase + string.digits, k=7))
            )
            if value not in self.receipts:
                self.receipts.add(value)
                return value

    def phone(self) -> str:
        while True:
            value = (
                "254" + self.random.choice("71") + "".join(self.random.choices(string.digits, k=8))
            )
            if value not in self.phones:
                self.phones.add(value)
                return value

    def mask(self, phone: str) -> str:
        if self.random.random() < 0.5:
            return phone[:5] + "****" + phone[-3:]
        return "0" + phone[3:5] + "****" + phone[-3:]

    def moment(self) -> dt.datetime:
        seconds = self.random.randrange(PERIOD_DAYS * 86400 - 3600) + 600
        return PERIOD_START + dt.timedelta(seconds=seconds)

    def amount(self) -> Decimal:
        roll = self.random.random()
        if roll < 0.6:
            return Decimal(self.random.randint(10, 2000))
        if roll < 0.95:
            return Decimal(self.random.randint(2000, 50000))
        return Decimal(self.random.randint(50000, 250000))

    def account(self) -> str:
        return str(self.random.randint(10_000_000, 99_999_999))

    def payment(
        self,
        *,
        moment: dt.datetime,
        amount: Decimal,
        phone: str,
        account: str,
        status: str,
        receipt: str | None,
        with_date: bool = True,
        created_before: int = 20,
    ) -> dict[str, Any]:
        created = (moment - dt.timedelta(seconds=created_before)).astimezone(UTC)
        final = status in ("SUCCESS", "FAILED")
        return {
            "id": uuid.UUID(int=self.random.getrandbits(128), version=4),
            "amount": amount,
            "phone": phone,
            "account": account,
            "status": status,
            "receipt": receipt,
            "transaction_date": moment.astimezone(UTC) if (with_date and receipt) else None,
            "created_at": created,
            "completed_at": (created + dt.timedelta(seconds=30)) if final else None,
        }

    def pay_line(
        self, *, moment: dt.datetime, amount: Decimal, phone: str, account: str, receipt: str
    ) -> Line:
        reason, prefix, _ = self.random.choices(REASONS, weights=[w for _, _, w in REASONS])[0]
        party = f"{self.mask(phone)} - {self.random.choice(NAMES)}"
        return Line(
            receipt=receipt,
            time=moment,
            paid_in=amount,
            withdrawn=None,
            reason=reason,
            details=f"{prefix} {party} Acc. {account}",
            party=party,
            account=account,
        )


def generate(lines: int, *, seed: int = 1, rates: dict[str, float] | None = None) -> Generated:
    """Exactly ``lines`` statement lines; payments for most of them, plus the planted
    differences. ``expected`` counts what the engine must find per class."""
    rates = {**DEFAULT_RATES, **(rates or {})}
    gen = Generator(seed)
    out = Generated()
    planted = {name: int(lines * rate) for name, rate in rates.items()}
    # Sweeps: one per day, withdrawn to the settlement account.
    sweeps = min(PERIOD_DAYS, max(lines // 1000, 0))
    special_lines = (
        planted["amount_mismatch"]
        + planted["unknown_payment"]
        + planted["not_success_tolerance"]
        + planted["not_success_exact"]
        + planted["duplicate"] * 2
        + planted["ambiguous"] * 2
        + planted["tolerance_matched"]
        + planted["charge"] * 2
        + planted["fee"]
        + sweeps
    )
    plain = max(lines - special_lines, 0)

    def plain_payment(status: str = "SUCCESS") -> tuple[dict[str, Any], Line]:
        moment = gen.moment()
        amount, phone, account = gen.amount(), gen.phone(), gen.account()
        receipt = gen.receipt(moment)
        payment = gen.payment(
            moment=moment,
            amount=amount,
            phone=phone,
            account=account,
            status=status,
            receipt=receipt,
        )
        return payment, gen.pay_line(
            moment=moment, amount=amount, phone=phone, account=account, receipt=receipt
        )

    for _ in range(plain):
        payment, line = plain_payment()
        out.payments.append(payment)
        out.lines.append(line)
        out.expected["matched"] += 1
    for _ in range(planted["charge"]):
        payment, line = plain_payment()
        out.payments.append(payment)
        out.lines.append(line)
        out.expected["matched"] += 1
        charge = Decimal(gen.random.choice([0, 5, 10, 15, 22, 33])) or Decimal(1)
        out.lines.append(
            Line(
                line.receipt, line.time, None, charge, "Pay Bill Charge", "Pay Bill Charge", "", ""
            )
        )
        out.expected["charge"] += 1
    for _ in range(planted["amount_mismatch"]):
        payment, line = plain_payment()
        payment["amount"] += 1
        out.payments.append(payment)
        out.lines.append(line)
        out.expected["amount_mismatch"] += 1
    for _ in range(planted["unknown_payment"]):
        moment = gen.moment()
        out.lines.append(
            gen.pay_line(
                moment=moment,
                amount=gen.amount(),
                phone=gen.phone(),
                account="UNK" + gen.account(),
                receipt=gen.receipt(moment),
            )
        )
        out.expected["unknown_payment"] += 1
    for index in range(planted["not_success_tolerance"]):
        moment = gen.moment()
        amount, phone, account = gen.amount(), gen.phone(), gen.account()
        status = "PENDING" if index % 2 else "FAILED"
        out.payments.append(
            gen.payment(
                moment=moment,
                amount=amount,
                phone=phone,
                account=account,
                status=status,
                receipt=None,
            )
        )
        out.lines.append(
            gen.pay_line(
                moment=moment,
                amount=amount,
                phone=phone,
                account=account,
                receipt=gen.receipt(moment),
            )
        )
        out.expected["not_success"] += 1
    for _ in range(planted["not_success_exact"]):
        payment, line = plain_payment(status="PENDING")
        payment["transaction_date"] = None
        out.payments.append(payment)
        out.lines.append(line)
        out.expected["not_success"] += 1
        out.expected["auto_resolvable"] += 1
    for _ in range(planted["tolerance_matched"]):
        moment = gen.moment()
        amount, phone, account = gen.amount(), gen.phone(), gen.account()
        out.payments.append(
            gen.payment(
                moment=moment,
                amount=amount,
                phone=phone,
                account=account,
                status="SUCCESS",
                receipt=None,
            )
        )
        out.lines.append(
            gen.pay_line(
                moment=moment,
                amount=amount,
                phone=phone,
                account=account,
                receipt=gen.receipt(moment),
            )
        )
        out.expected["matched"] += 1
    for _ in range(planted["missing_from_statement"]):
        payment, _line = plain_payment()
        out.payments.append(payment)
        out.expected["missing_from_statement"] += 1
    for _ in range(planted["duplicate"]):
        payment, line = plain_payment()
        out.payments.append(payment)
        out.lines.extend([line, line])
        out.expected["matched"] += 1
        out.expected["duplicate"] += 1
    for _ in range(planted["ambiguous"]):
        # One line, two receipt-less SUCCESS payments that both fit: the line and both
        # payments are ambiguous; a second line-less pair of PENDING lookalikes is not.
        moment = gen.moment()
        amount, phone, account = gen.amount(), gen.phone(), gen.account()
        for gap in (15, 45):
            out.payments.append(
                gen.payment(
                    moment=moment,
                    amount=amount,
                    phone=phone,
                    account=account,
                    status="SUCCESS",
                    receipt=None,
                    created_before=gap,
                )
            )
        out.lines.append(
            gen.pay_line(
                moment=moment,
                amount=amount,
                phone=phone,
                account=account,
                receipt=gen.receipt(moment),
            )
        )
        out.expected["ambiguous"] += 3
        # And a plain payment so that the line count is exact.
        payment, line = plain_payment()
        out.payments.append(payment)
        out.lines.append(line)
        out.expected["matched"] += 1
    for _ in range(planted["fee"]):
        moment = gen.moment()
        out.lines.append(
            Line(
                gen.receipt(moment),
                moment,
                None,
                Decimal(50),
                "Statement Fee",
                "Statement Fee",
                "",
                "",
            )
        )
        out.expected["fee"] += 1
    for day in range(sweeps):
        moment = PERIOD_START + dt.timedelta(days=day, hours=23, minutes=30)
        out.lines.append(
            Line(
                gen.receipt(moment),
                moment,
                None,
                Decimal(gen.random.randint(1000, 900000)),
                "Utility Account to Organization Settlement Account",
                "Utility Account to Organization Settlement Account",
                "",
                "",
            )
        )
        out.expected["sweep"] += 1
    for index in range(planted["unrelated_failed"]):
        moment = gen.moment()
        out.payments.append(
            gen.payment(
                moment=moment,
                amount=gen.amount(),
                phone=gen.phone(),
                account=gen.account(),
                status="FAILED" if index % 3 else "PENDING",
                receipt=None,
            )
        )
    # Trim or pad to exactly ``lines`` (rounding of the rates).
    while len(out.lines) < lines:
        payment, line = plain_payment()
        out.payments.append(payment)
        out.lines.append(line)
        out.expected["matched"] += 1
    return out


def _money(value: Decimal) -> str:
    return f"{value:,.2f}"


def _eat(moment: dt.datetime) -> str:
    return moment.astimezone(EAT).strftime("%d-%m-%Y %H:%M:%S")


def statement_csv(generated: Generated) -> bytes:
    rows = sorted(generated.lines, key=lambda line: line.time, reverse=True)
    paid_in = sum((line.paid_in or Decimal(0) for line in rows), Decimal(0))
    withdrawn = sum((line.withdrawn or Decimal(0) for line in rows), Decimal(0))
    opening = Decimal(4040)
    balance = opening + paid_in - withdrawn
    end = PERIOD_START + dt.timedelta(days=PERIOD_DAYS) - dt.timedelta(seconds=1)
    out = io.StringIO()
    out.write("Account Holder:,ACME SCHOOLS LTD\nShort Code:,4125223\nAccount:,Utility Account\n")
    out.write(f"Time Period:,From,{_eat(PERIOD_START)},To,{_eat(end)}\n")
    out.write(f"Operator:,api-user,Organization:,ACME SCHOOLS LTD,Date of Report:,{_eat(end)}\n")
    out.write(
        f'Opening Balance:,"{_money(opening)}",Closing Balance:,"{_money(balance)}",'
        f'Available Balance:,,Total Paid In:,"{_money(paid_in)}",'
        f'Total Withdrawn:,"-{_money(withdrawn)}"\n'
    )
    out.write(HEADER + "\n")
    write = out.write
    for line in rows:
        when = _eat(line.time)
        paid = f'"{_money(line.paid_in)}"' if line.paid_in is not None else ""
        taken = f'"-{_money(line.withdrawn)}"' if line.withdrawn is not None else ""
        write(
            f'{line.receipt},{when},{when},{line.details},Completed,{paid},{taken},"{_money(balance)}",'
            f"true,{line.reason},{line.party},,{' ' + line.account if line.account else ''},KES\n"
        )
        balance -= (line.paid_in or Decimal(0)) - (line.withdrawn or Decimal(0))
    return out.getvalue().encode()


def payments_copy_text(payments: list[dict[str, Any]]) -> str:
    """Rows for COPY payments_payment (text format), in the column order of ``PAYMENT_COLUMNS``."""
    out = io.StringIO()
    now = dt.datetime.now(UTC).isoformat()
    for p in payments:
        final = p["status"] in ("SUCCESS", "FAILED")
        out.write(
            "\t".join(
                [
                    str(p["id"]),
                    str(p["amount"]),
                    "KES",
                    p["phone"],
                    p["account"],
                    "bench",
                    "CustomerPayBillOnline",
                    p["status"],
                    "",
                    r"\N",
                    p["receipt"] or r"\N",
                    "0" if p["status"] == "SUCCESS" else ("1032" if final else ""),
                    "",
                    p["transaction_date"].isoformat() if p["transaction_date"] else r"\N",
                    str(p["amount"]) if p["receipt"] else r"\N",
                    "",
                    "f",
                    uuid.UUID(int=p["id"].int ^ 0x5A5A).hex + uuid.uuid4().hex,
                    p["created_at"].isoformat(),
                    now,
                    p["completed_at"].isoformat() if p["completed_at"] else r"\N",
                    r"\N",
                    "f",
                    "f",
                    "",
                    r"\N",
                    "0",
                    r"\N",
                ]
            )
            + "\n"
        )
    return out.getvalue()


PAYMENT_COLUMNS = (
    "id, amount, currency, phone_number, account_reference, description, transaction_type, "
    "status, merchant_request_id, checkout_request_id, mpesa_receipt_number, result_code, "
    "result_desc, transaction_date, paid_amount, payer_phone, needs_review, callback_token_hash, "
    "created_at, updated_at, completed_at, client_id, failure_final, initiation_unknown, "
    "last_query_result, next_query_at, query_attempts, query_claimed_until"
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lines", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    generated = generate(args.lines, seed=args.seed)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_bytes(statement_csv(generated))
    json.dump(dict(generated.expected), sys.stdout, indent=2)
    print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
