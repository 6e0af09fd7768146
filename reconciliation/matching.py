"""The matching rules in plain Python: what a line is (payment, charge, fee, sweep, …), who
paid it, and how lines and payments pair up. It is the engine for SQLite and small statements,
and the reference the PostgreSQL engine (``engines/postgresql/``) is tested against: both must
classify every line and every payment identically (``tests/test_property.py``).

Rules, in order:

1. Lines that are not customer payments are classified by their Reason Type (or Details when
   there is none): ``charge``, ``fee``, ``sweep``, ``other``; a Transaction Status other than
   Completed (or empty) is ``not_completed``.
2. Payment lines sharing a receipt: the first (lowest row number) claims it, the others are
   ``duplicate``.
3. Exact pass: the receipt equals the receipt of a payment created around the statement period
   (from a day before it starts to a day after it ends). SUCCESS with the same amount is
   ``matched``, with another amount ``amount_mismatch``; any other status is
   ``not_success`` (moved to SUCCESS automatically when the amounts agree and the payment is
   not a final failure).
4. Tolerance pass, for the claiming lines left and the payments without a receipt: same
   amount, the statement's masked number consistent with our phone, completion within the
   window of the payment's time, the same account reference. A line and a payment that are
   each other's only candidate pair up (``matched`` or ``not_success``, for a person to
   confirm); other lines with candidates are ``ambiguous``; lines with none are
   ``unknown_payment``.
5. SUCCESS payments left: ``ambiguous`` if some line named them as a candidate, else
   ``missing_from_statement`` when their time is in the statement period.

A payment's time is ``transaction_date`` (M-Pesa's completion) when we have it, else
``created_at``.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import string
import uuid
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal

from .models import MatchMethod, ResultClass

PAYMENT = "payment"
# How long after we create a payment M-Pesa may complete it (prompts expire in minutes).
CREATION_SLACK = dt.timedelta(days=1)
SUCCESS = "SUCCESS"
FAILED = "FAILED"

# Reason Types of customer payments into a paybill or till (``docs/statements.md``): the common
# case, checked first. None of them contains a classifying keyword below.
PAYMENT_REASON_TYPES = (
    "Pay Utility",
    "Pay Bill Online",
    "Standing Order Pay Bill",
    "Pay Utility with OD via STK",
    "Pay Utility with OD Online",
    "Pay Bill",
    "Customer Merchant Payment",
    "Merchant Payment",
    "Buy Goods",
    "c2b-pay-bill-debit",
    "c2b-buy-goods-debit",
)
# Substrings (of the lower-cased Reason Type, or Details when it is empty), in order.
CHARGE_WORDS = ("charge",)
FEE_WORDS = ("fee", "commission", "tariff")
SWEEP_WORDS = ("settlement", "sweep", "account to ", "transfer of funds", "funds transfer")

_LOWER = str.maketrans(string.ascii_uppercase, string.ascii_lowercase)
_UPPER = str.maketrans(string.ascii_lowercase, string.ascii_uppercase)


def line_kind(
    *, status: str, reason_type: str, details: str, direction: str, amount: Decimal
) -> str:
    """payment, charge, fee, sweep, other or not_completed (mirrored in SQL by
    ``engines/postgresql/fragments.kind_sql``)."""
    if status != "" and status.translate(_LOWER) != "completed":
        return ResultClass.NOT_COMPLETED
    if reason_type in PAYMENT_REASON_TYPES and direction == "in" and amount > 0:
        return PAYMENT
    text = (reason_type if reason_type != "" else details).translate(_LOWER)
    if any(word in text for word in CHARGE_WORDS):
        return ResultClass.CHARGE
    if any(word in text for word in FEE_WORDS):
        return ResultClass.FEE
    if any(word in text for word in SWEEP_WORDS):
        return ResultClass.SWEEP
    if direction == "in" and amount > 0:
        return PAYMENT
    return ResultClass.OTHER


def direction_and_amount(paid_in: Decimal | None, withdrawn: Decimal | None) -> tuple[str, Decimal]:
    """Direction and (positive) amount of a row whose cells :class:`RowReader` made canonical:
    exactly one of Paid In / Withdrawn is set, and its column gives the direction (the sign
    does not: Withdrawn is usually negative)."""
    if paid_in is not None:
        return "in", abs(paid_in)
    assert withdrawn is not None
    return "out", abs(withdrawn)


# --- Payer and account ---------------------------------------------------------------------------

_FROM_PARTY = re.compile(r"from ([^ ]+) [-–] ")
_FULL_NUMBER = re.compile(r"254[0-9]{9}")
_NINE_DIGITS = re.compile(r"[17][0-9]{8}")
_MASKED = re.compile(r"254[0-9]*\*+[0-9]+")


def payer_mask(*, other_party: str, details: str) -> str:
    """The payer's (masked) number: before " - " in Other Party Info, else after "from" in
    Details (``Pay Bill from 25472****108 - JOHN …``). An en dash counts as a dash."""
    party = other_party.strip(" ")
    if party != "":
        return party.replace("–", "-").split(" - ", 1)[0].strip(" ")
    found = _FROM_PARTY.search(details)
    return found.group(1) if found else ""


def normalise_mask(mask: str) -> str:
    """``079****284`` → ``25479****284``; ``+2547…`` → ``2547…``;
    ``722000000`` → ``254722000000``."""
    text = mask[1:] if mask.startswith("+") else mask
    if text.startswith("0"):
        return "254" + text[1:]
    if _NINE_DIGITS.fullmatch(text):
        return "254" + text
    return text


def mask_consistent(mask: str, phone: str) -> bool:
    """True when the visible digits of the statement's number agree with our phone number."""
    text = normalise_mask(mask)
    if _FULL_NUMBER.fullmatch(text):
        return text == phone
    if _MASKED.fullmatch(text):
        prefix = text.split("*", 1)[0]
        suffix = text.rsplit("*", 1)[1]
        return (
            len(prefix) + len(suffix) <= 12 and phone.startswith(prefix) and phone.endswith(suffix)
        )
    return False


_SHA256_HEX = re.compile(r"[0-9a-fA-F]{64}")


def payer_consistent(mask: str, phone: str) -> bool:
    """True when the statement's payer can be our payer: a masked (or whole) number whose
    visible digits agree with the phone, or a hashed MSISDN (the SHA-256, in hex, of the
    number as ``2547…``, which Daraja sends instead of the number) equal to the phone's hash.
    A line naming no payer is consistent with nobody."""
    text = mask.strip(" ")
    if _SHA256_HEX.fullmatch(text):
        return hashlib.sha256(phone.encode()).hexdigest() == text.lower()
    return mask_consistent(text, phone)


def line_account(*, account: str, details: str) -> str:
    """A/C No. as typed (trimmed); when the column is empty, the text after "Acc." in Details."""
    if account != "":
        return account
    index = details.find("Acc.")
    return details[index + 4 :].strip(" ") if index >= 0 else ""


def account_key(account: str) -> str:
    """Account references compare without spaces and case (ASCII letters only)."""
    return account.replace(" ", "").translate(_UPPER)


# --- Matching ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LineFacts:
    line_no: int
    receipt: str
    completed_at: dt.datetime
    amount: Decimal
    kind: str
    other_party: str = ""
    details: str = ""
    account: str = ""


@dataclass(frozen=True)
class PaymentFacts:
    id: uuid.UUID
    status: str
    amount: Decimal
    phone: str
    account_reference: str
    receipt: str | None
    time: dt.datetime
    failure_final: bool = False
    created_at: dt.datetime | None = None  # None: as old as ``time``


@dataclass(frozen=True)
class LineResult:
    result: str
    payment_id: uuid.UUID | None = None
    method: str = MatchMethod.NONE
    candidates: tuple[str, ...] = ()
    auto_resolvable: bool = False


@dataclass(frozen=True)
class PaymentBreak:
    kind: str
    candidates: tuple[str, ...] = ()


@dataclass
class MatchResult:
    lines: dict[int, LineResult] = field(default_factory=dict)
    payments: dict[uuid.UUID, PaymentBreak] = field(default_factory=dict)


@dataclass(frozen=True)
class Period:
    start: dt.datetime
    end: dt.datetime  # the last second of the period

    def contains(self, moment: dt.datetime) -> bool:
        return self.start <= moment < self.end + dt.timedelta(seconds=1)

    def around(self, created_at: dt.datetime) -> bool:
        """A payment created this close to the period can be one of its lines: an STK prompt
        is completed (or expires) minutes after we create the payment."""
        end = self.end + dt.timedelta(seconds=1)
        return self.start - CREATION_SLACK <= created_at < end + CREATION_SLACK


def tolerance_fits(line: LineFacts, payment: PaymentFacts, window: dt.timedelta) -> bool:
    return (
        line.amount == payment.amount
        and payment.time - window <= line.completed_at <= payment.time + window
        and mask_consistent(
            payer_mask(other_party=line.other_party, details=line.details), payment.phone
        )
        and account_key(payment.account_reference) != ""
        and account_key(line_account(account=line.account, details=line.details))
        == account_key(payment.account_reference)
    )


def match(
    lines: Iterable[LineFacts],
    payments: Iterable[PaymentFacts],
    *,
    window: dt.timedelta,
    period: Period | None,
) -> MatchResult:
    result = MatchResult()
    payments = list(payments)
    by_receipt = {
        p.receipt: p
        for p in payments
        if p.receipt and (period is None or period.around(p.created_at or p.time))
    }
    claimed: set[str] = set()
    leftovers: list[LineFacts] = []
    for line in sorted(lines, key=lambda item: item.line_no):
        if line.kind != PAYMENT:
            result.lines[line.line_no] = LineResult(line.kind)
            continue
        if line.receipt in claimed:
            result.lines[line.line_no] = LineResult(ResultClass.DUPLICATE)
            continue
        claimed.add(line.receipt)
        payment = by_receipt.get(line.receipt)
        if payment is None:
            leftovers.append(line)
        elif payment.status == SUCCESS:
            kind = (
                ResultClass.MATCHED
                if line.amount == payment.amount
                else ResultClass.AMOUNT_MISMATCH
            )
            result.lines[line.line_no] = LineResult(kind, payment.id, MatchMethod.RECEIPT)
        else:
            auto = line.amount == payment.amount and not (
                payment.status == FAILED and payment.failure_final
            )
            result.lines[line.line_no] = LineResult(
                ResultClass.NOT_SUCCESS, payment.id, MatchMethod.RECEIPT, auto_resolvable=auto
            )

    # Index the receipt-less payments by amount: the tolerance pass needs the same amount.
    pool: dict[Decimal, list[PaymentFacts]] = defaultdict(list)
    for payment in payments:
        if payment.receipt is None:
            pool[payment.amount].append(payment)
    line_candidates: dict[int, list[PaymentFacts]] = {}
    payment_candidates: dict[uuid.UUID, list[int]] = defaultdict(list)
    for line in leftovers:
        found = [p for p in pool.get(line.amount, ()) if tolerance_fits(line, p, window)]
        line_candidates[line.line_no] = found
        for payment in found:
            payment_candidates[payment.id].append(line.line_no)
    for line in leftovers:
        found = line_candidates[line.line_no]
        if len(found) == 1 and len(payment_candidates[found[0].id]) == 1:
            payment = found[0]
            kind = ResultClass.MATCHED if payment.status == SUCCESS else ResultClass.NOT_SUCCESS
            result.lines[line.line_no] = LineResult(kind, payment.id, MatchMethod.TOLERANCE)
        elif found:
            result.lines[line.line_no] = LineResult(
                ResultClass.AMBIGUOUS, candidates=tuple(sorted(str(p.id) for p in found))
            )
        else:
            result.lines[line.line_no] = LineResult(ResultClass.UNKNOWN_PAYMENT)

    matched = {r.payment_id for r in result.lines.values() if r.payment_id is not None}
    for payment in payments:
        if payment.status != SUCCESS or payment.id in matched:
            continue
        if payment.id in payment_candidates:
            numbers = tuple(str(n) for n in sorted(payment_candidates[payment.id]))
            result.payments[payment.id] = PaymentBreak(ResultClass.AMBIGUOUS, numbers)
        elif period is not None and period.contains(payment.time):
            result.payments[payment.id] = PaymentBreak(ResultClass.MISSING_FROM_STATEMENT)
    return result
