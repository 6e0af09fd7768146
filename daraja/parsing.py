"""Parse Daraja payloads as they really arrive (docs/daraja.md: "The STK callback", "STK Push
Query" and the quirks under "Operational facts").

The STK callback parser accepts every observed shape: the ``Body.stkCallback`` envelope or the
bare inner object; ``ResultCode`` as a number or a string (``"SFC_IC0003"``); ``Amount`` as
``10``, ``1.00`` or ``"10"``; the ``Balance`` item with a value, without one, or absent; items in
any order; ``PhoneNumber`` as a number, a string, masked or missing. What cannot be read raises
:class:`PayloadError` naming the problem; nothing is guessed (a bad amount is never read as 0).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from core.money import CENT, InvalidAmount, to_decimal
from daraja.errors import result_is_pending

NAIROBI = ZoneInfo("Africa/Nairobi")
MAX_ID_LENGTH = 128
MAX_CODE_DIGITS = 12
# Far above any real M-Pesa amount; stops absurd numbers (1e400) before they reach Decimal math.
MAX_AMOUNT = Decimal("100000000")


class PayloadError(ValueError):
    """The payload cannot be used; ``str(error)`` says which field and why."""


@dataclass(frozen=True)
class StkCallback:
    merchant_request_id: str
    checkout_request_id: str
    result_code: str
    result_desc: str
    amount: Decimal | None = None
    receipt_number: str | None = None
    transaction_date: datetime | None = None  # UTC
    phone_number: str | None = None  # as sent: may be masked, hashed or redacted
    balance: Decimal | None = None
    warnings: tuple[str, ...] = field(default=())

    @property
    def is_success(self) -> bool:
        return is_success_code(self.result_code)

    def evidence(self) -> dict[str, Any]:
        """The facts of this callback, JSON-ready, for audit events."""
        return {
            "merchant_request_id": self.merchant_request_id,
            "checkout_request_id": self.checkout_request_id,
            "result_code": self.result_code,
            "result_desc": self.result_desc,
            "amount": str(self.amount) if self.amount is not None else None,
            "receipt_number": self.receipt_number,
            "transaction_date": self.transaction_date.isoformat()
            if self.transaction_date
            else None,
        }


@dataclass(frozen=True)
class StkQueryResult:
    """An STK Query answer: still pending (both generations), or final with a result code."""

    pending: bool
    result_code: str | None
    result_desc: str
    merchant_request_id: str = ""
    checkout_request_id: str = ""

    @property
    def is_success(self) -> bool:
        return self.result_code is not None and is_success_code(self.result_code)


def is_success_code(code: str) -> bool:
    return code != "" and set(code) == {"0"}


def loads(body: bytes | str) -> Any:
    """JSON with fractional numbers as Decimal (never float)."""
    try:
        return json.loads(body, parse_float=Decimal, parse_constant=_reject_constant)
    except RecursionError:
        raise PayloadError("body is nested too deeply") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise PayloadError(f"body is not valid JSON: {exc}") from None


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _result_code(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        raise PayloadError("ResultCode is missing or not a number/string")
    # Result codes are small numbers; refusing long ones up front also keeps a 60-byte body
    # like {"ResultCode": 1E+1000000} from making us build a million-digit integer.
    if isinstance(value, int):
        if abs(value) >= 10**MAX_CODE_DIGITS:
            raise PayloadError("ResultCode is not a plausible result code (too long)")
        return str(value)
    if isinstance(value, Decimal):
        if not value.is_finite() or value.adjusted() >= MAX_CODE_DIGITS:
            raise PayloadError("ResultCode is not a plausible result code")
        if value != value.to_integral_value():
            raise PayloadError(f"ResultCode {value} is not an integer")
        return str(int(value))
    if isinstance(value, str) and value.strip() and len(value) <= 32:
        return storable_text(value.strip(), "ResultCode")
    raise PayloadError("ResultCode is missing or not a number/string")


def storable_text(text: str, name: str) -> str:
    """Text every database can hold: no NUL (PostgreSQL refuses it) and no lone surrogates
    (not encodable as UTF-8). Daraja never sends either; a body that does is not a callback."""
    if "\x00" in text:
        raise PayloadError(f"{name} contains a NUL character")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise PayloadError(f"{name} is not valid Unicode text") from None
    return text


def _identifier(container: dict[str, Any], name: str, *, required: bool) -> str:
    value = container.get(name)
    if isinstance(value, str):
        value = value.strip()
    if value is None or value == "":
        if required:
            raise PayloadError(f"{name} is missing")
        return ""
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise PayloadError(f"{name} must be a string")
    if isinstance(value, int) and abs(value) >= 10**MAX_ID_LENGTH:
        raise PayloadError(f"{name} is longer than {MAX_ID_LENGTH} characters")
    text = str(value).strip()
    if len(text) > MAX_ID_LENGTH:
        raise PayloadError(f"{name} is longer than {MAX_ID_LENGTH} characters")
    return storable_text(text, name)


def parse_mpesa_datetime(value: Any) -> datetime:
    """``20260601193604`` (number or string, East Africa Time) → aware UTC datetime."""
    if isinstance(value, bool) or (isinstance(value, int) and not 0 <= value < 10**14):
        raise PayloadError("TransactionDate is not YYYYMMDDHHmmss")
    text = str(value).strip() if isinstance(value, (int, str)) else ""
    if len(text) != 14 or not text.isascii() or not text.isdigit():
        raise PayloadError(f"TransactionDate {str(value)[:40]!r} is not YYYYMMDDHHmmss")
    try:
        local = datetime.strptime(text, "%Y%m%d%H%M%S").replace(tzinfo=NAIROBI)
    except ValueError:
        raise PayloadError(f"TransactionDate {text!r} is not a valid date") from None
    if not 2000 <= local.year <= 2100:
        raise PayloadError(f"TransactionDate {text!r} is not a plausible M-Pesa date")
    return local.astimezone(UTC)


def _items(stk: dict[str, Any]) -> dict[str, tuple[bool, Any]]:
    """CallbackMetadata items by name → (has_value, value). Duplicate names are refused."""
    metadata = stk.get("CallbackMetadata")
    if metadata is None:
        return {}
    if not isinstance(metadata, dict):
        raise PayloadError("CallbackMetadata must be an object")
    raw_items = metadata.get("Item")
    if isinstance(raw_items, dict):  # one item sent as an object, as ResultParameter sometimes is
        raw_items = [raw_items]
    if not isinstance(raw_items, list):
        raise PayloadError("CallbackMetadata.Item must be a list")
    items: dict[str, tuple[bool, Any]] = {}
    for position, item in enumerate(raw_items):
        if not isinstance(item, dict) or not isinstance(item.get("Name"), str):
            raise PayloadError(f"CallbackMetadata.Item[{position}] has no Name")
        name = item["Name"]
        if name in items:
            raise PayloadError(f"CallbackMetadata item {name} appears more than once")
        items[name] = ("Value" in item, item.get("Value"))
    return items


def parse_stk_callback(body: bytes | str | dict[str, Any]) -> StkCallback:
    data = loads(body) if isinstance(body, (bytes, str)) else body
    if not isinstance(data, dict):
        raise PayloadError("body must be a JSON object")
    if "Body" in data:
        outer = data["Body"]
        if not isinstance(outer, dict) or not isinstance(outer.get("stkCallback"), dict):
            raise PayloadError("Body.stkCallback is missing or not an object")
        stk = outer["stkCallback"]
    elif "stkCallback" in data and isinstance(data["stkCallback"], dict):
        stk = data["stkCallback"]
    elif "CheckoutRequestID" in data:
        stk = data  # the inner object, as some proxies and apps forward it
    else:
        raise PayloadError("not an STK callback: Body.stkCallback is missing")

    checkout_request_id = _identifier(stk, "CheckoutRequestID", required=True)
    merchant_request_id = _identifier(stk, "MerchantRequestID", required=False)
    if "ResultCode" not in stk:
        raise PayloadError("ResultCode is missing")
    result_code = _result_code(stk["ResultCode"])
    result_desc = stk.get("ResultDesc")
    if result_desc is not None and not isinstance(result_desc, str):
        raise PayloadError("ResultDesc must be a string")
    result_desc = storable_text((result_desc or "")[:500], "ResultDesc")

    if not is_success_code(result_code):
        return StkCallback(merchant_request_id, checkout_request_id, result_code, result_desc)

    items = _items(stk)
    warnings: list[str] = []
    has_amount, raw_amount = items.get("Amount", (False, None))
    if not has_amount:
        raise PayloadError("success callback without CallbackMetadata Amount")
    try:
        amount = to_decimal(raw_amount)
    except InvalidAmount as exc:
        raise PayloadError(f"Amount: {exc}") from None
    if amount <= 0:
        raise PayloadError(f"Amount {raw_amount} must be positive")
    if amount > MAX_AMOUNT:
        raise PayloadError(f"Amount {raw_amount} is larger than any M-Pesa transaction")
    if amount != amount.quantize(CENT):
        raise PayloadError(f"Amount {raw_amount} has more than two decimal places")

    has_receipt, receipt = items.get("MpesaReceiptNumber", (False, None))
    if not has_receipt or not isinstance(receipt, str) or not receipt.strip():
        raise PayloadError("success callback without MpesaReceiptNumber")
    receipt = storable_text(receipt.strip(), "MpesaReceiptNumber")
    if len(receipt) > 32:
        raise PayloadError("MpesaReceiptNumber is longer than 32 characters")

    transaction_date = None
    has_date, raw_date = items.get("TransactionDate", (False, None))
    if has_date:
        try:
            transaction_date = parse_mpesa_datetime(raw_date)
        except PayloadError as exc:
            warnings.append(str(exc))
    else:
        warnings.append("TransactionDate missing")

    phone_number = None
    has_phone, raw_phone = items.get("PhoneNumber", (False, None))
    if has_phone and isinstance(raw_phone, (int, str)) and not isinstance(raw_phone, bool):
        if isinstance(raw_phone, int) and not 0 <= raw_phone < 10**20:
            warnings.append("PhoneNumber is not a phone number")
        else:
            phone_number = storable_text(str(raw_phone)[:64], "PhoneNumber")

    balance = None
    has_balance, raw_balance = items.get("Balance", (False, None))
    if has_balance and raw_balance is not None:
        try:
            balance = to_decimal(raw_balance)
        except InvalidAmount:
            warnings.append("Balance is not a number")

    return StkCallback(
        merchant_request_id=merchant_request_id,
        checkout_request_id=checkout_request_id,
        result_code=result_code,
        result_desc=result_desc,
        amount=amount,
        receipt_number=receipt,
        transaction_date=transaction_date,
        phone_number=phone_number,
        balance=balance,
        warnings=tuple(warnings),
    )


def parse_stk_query_response(data: Any) -> StkQueryResult:
    """A 200 STK Query answer. ``4999`` is pending (2026 generation); the older pending answer
    is an HTTP 500 error envelope handled by the client as :class:`DarajaPendingError`."""
    if not isinstance(data, dict):
        raise PayloadError("STK Query answer must be a JSON object")
    if "ResultCode" not in data:
        raise PayloadError("STK Query answer has no ResultCode")
    code = _result_code(data["ResultCode"])
    raw_desc = data.get("ResultDesc")
    desc = storable_text(raw_desc[:500], "ResultDesc") if isinstance(raw_desc, str) else ""
    merchant = _identifier(data, "MerchantRequestID", required=False)
    checkout = _identifier(data, "CheckoutRequestID", required=False)
    if result_is_pending(code):
        return StkQueryResult(True, None, desc or "", merchant, checkout)
    return StkQueryResult(False, code, desc or "", merchant, checkout)
