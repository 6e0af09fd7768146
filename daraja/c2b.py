"""C2B notifications (paybill and till payments the customer starts): the validation request
and the confirmation share one flat shape, every value a string (docs/daraja.md, "C2B").

Accepted as they really arrive: ``TransAmount`` as ``"4000.00"`` or ``"10"`` (or a JSON
number); ``InvoiceNumber``/``ThirdPartyTransID`` empty, ``null`` or missing; ``MSISDN`` plain
(``254708374149``), masked (``2******9``, ``2547 ***** 126``) or a 64-hex SHA-256; the name
parts empty, masked (``******``), or missing keys; the object alone or inside a one-key
``{"data": {...}}`` envelope (as some proxies forward it). ``TransactionType`` is empty on
sandbox validation requests. What cannot be read raises :class:`PayloadError` naming the
field; nothing is guessed (a malformed amount is refused, never read as 0).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any

from core.money import CENT, InvalidAmount, to_decimal

from .parsing import MAX_AMOUNT, PayloadError, loads, parse_mpesa_datetime, storable_text

# Receipts are 10 uppercase alphanumerics today; older or other products may differ, so any
# short run of letters and digits is taken, and nothing else.
_RECEIPT = re.compile(r"^[A-Za-z0-9]{6,32}$")
_SHORTCODE = re.compile(r"^[0-9]{5,8}$")
_SHA256 = re.compile(r"^[0-9a-fA-F]{64}$")
_PLAIN_MSISDN = re.compile(r"^\+?[0-9]{9,15}$")
_MASKED_MSISDN = re.compile(r"^[0-9][0-9 *xX]{3,20}[0-9*]$")
MAX_TEXT = 100  # BillRefNumber is at most 20 characters at M-Pesa; room for what else comes

PAY_BILL = "Pay Bill"
BUY_GOODS = "Buy Goods"


class MsisdnForm(StrEnum):
    PLAIN = "plain"
    MASKED = "masked"
    HASHED = "hashed"  # SHA-256 of the number: never reversed, only compared
    NONE = "none"


def msisdn_form(msisdn: str) -> MsisdnForm:
    if not msisdn:
        return MsisdnForm.NONE
    if _SHA256.match(msisdn):
        return MsisdnForm.HASHED
    if _PLAIN_MSISDN.match(msisdn):
        return MsisdnForm.PLAIN
    return MsisdnForm.MASKED


@dataclass(frozen=True)
class C2BNotification:
    """One C2B validation request or confirmation."""

    transaction_type: str  # "Pay Bill", "Buy Goods", other types, or "" (sandbox validation)
    trans_id: str  # the M-Pesa receipt
    trans_time: datetime | None  # UTC; None when absent or unreadable (see warnings)
    amount: Decimal
    shortcode: str
    bill_ref_number: str
    invoice_number: str
    third_party_trans_id: str
    org_account_balance: Decimal | None
    msisdn: str  # as sent: plain, masked or a SHA-256
    first_name: str
    middle_name: str
    last_name: str
    warnings: tuple[str, ...] = field(default=())

    @property
    def msisdn_form(self) -> MsisdnForm:
        return msisdn_form(self.msisdn)

    @property
    def payer_name(self) -> str:
        """The name parts M-Pesa sent, masked parts left out."""
        parts = (self.first_name, self.middle_name, self.last_name)
        return " ".join(part for part in parts if part and not _masked_name(part))

    @property
    def channel(self) -> str:
        """``till`` for Buy Goods, else ``paybill`` (a validation's empty type included)."""
        return "till" if self.transaction_type.strip().lower() == "buy goods" else "paybill"

    def evidence(self) -> dict[str, Any]:
        """The facts of the notification, JSON-ready, for audit events (the MSISDN's form,
        not the number: the stored request keeps it)."""
        return {
            "trans_id": self.trans_id,
            "transaction_type": self.transaction_type,
            "trans_time": self.trans_time.isoformat() if self.trans_time else None,
            "amount": str(self.amount),
            "shortcode": self.shortcode,
            "bill_ref_number": self.bill_ref_number,
            "invoice_number": self.invoice_number,
            "third_party_trans_id": self.third_party_trans_id,
            "msisdn_form": str(self.msisdn_form),
        }


def _masked_name(part: str) -> bool:
    return set(part) <= {"*", "X", "x"}


def _text(data: dict[str, Any], name: str, *, required: bool = False, limit: int = MAX_TEXT) -> str:
    value = data.get(name)
    if value is None:
        if required:
            raise PayloadError(f"{name} is missing")
        return ""
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise PayloadError(f"{name} must be a string")
    text = str(value).strip()
    if required and not text:
        raise PayloadError(f"{name} is empty")
    if len(text) > limit:
        raise PayloadError(f"{name} is longer than {limit} characters")
    return storable_text(text, name)


def _amount(value: Any, name: str) -> Decimal:
    try:
        amount = to_decimal(value)
    except InvalidAmount as exc:
        raise PayloadError(f"{name}: {exc}") from None
    if amount.copy_abs() > MAX_AMOUNT:
        raise PayloadError(f"{name} {value} is larger than any M-Pesa transaction")
    if amount != amount.quantize(CENT):
        raise PayloadError(f"{name} {value} has more than two decimal places")
    return amount


def parse_c2b_notification(body: bytes | str | dict[str, Any]) -> C2BNotification:
    """A validation request or confirmation body, read; raises PayloadError naming the
    problem."""
    data = loads(body) if isinstance(body, (bytes, str)) else body
    if isinstance(data, dict) and "TransID" not in data and list(data) == ["data"]:
        data = data["data"]
    if not isinstance(data, dict):
        raise PayloadError("body must be a JSON object")
    if "TransID" not in data:
        raise PayloadError("not a C2B notification: TransID is missing")

    trans_id = _text(data, "TransID", required=True, limit=32)
    if not _RECEIPT.match(trans_id):
        raise PayloadError(f"TransID {trans_id!r} is not an M-Pesa receipt")
    if "TransAmount" not in data:
        raise PayloadError("TransAmount is missing")
    amount = _amount(data["TransAmount"], "TransAmount")
    if amount <= 0:
        raise PayloadError(f"TransAmount {data['TransAmount']} must be positive")
    shortcode = _text(data, "BusinessShortCode", required=True, limit=16)
    if not _SHORTCODE.match(shortcode):
        raise PayloadError(f"BusinessShortCode {shortcode!r} is not a shortcode")

    warnings: list[str] = []
    trans_time = None
    if data.get("TransTime") in (None, ""):
        warnings.append("TransTime missing")
    else:
        try:
            trans_time = parse_mpesa_datetime(data["TransTime"])
        except PayloadError as exc:
            warnings.append(str(exc).replace("TransactionDate", "TransTime"))

    balance = None
    raw_balance = data.get("OrgAccountBalance")
    if raw_balance not in (None, ""):
        try:
            balance = _amount(raw_balance, "OrgAccountBalance")
        except PayloadError as exc:
            warnings.append(str(exc))

    return C2BNotification(
        transaction_type=_text(data, "TransactionType", limit=64),
        trans_id=trans_id.upper(),
        trans_time=trans_time,
        amount=amount,
        shortcode=shortcode,
        bill_ref_number=_text(data, "BillRefNumber"),
        invoice_number=_text(data, "InvoiceNumber"),
        third_party_trans_id=_text(data, "ThirdPartyTransID"),
        org_account_balance=balance,
        msisdn=_text(data, "MSISDN", limit=64),
        first_name=_text(data, "FirstName"),
        middle_name=_text(data, "MiddleName"),
        last_name=_text(data, "LastName"),
        warnings=tuple(warnings),
    )
