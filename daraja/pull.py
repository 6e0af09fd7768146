"""Daraja Pull Transactions responses (docs/daraja.md, "Pull Transactions"): the one reader of
their structure, shared by the C2B recovery (``payments.pull``) and reconciliation's statement
import (``reconciliation.formats.pull``).

A query answers ``{"ResponseRefID", "ResponseCode": "1000", "ResponseMessage",
"Response": [[{...}, ...]]}``: an array of arrays of transactions with lowercase keys
(``transactionId``, ``trxDate``, ``msisdn`` (a number, truncated), ``sender``,
``transactiontype``, ``billreference``, ``amount`` (a string), ``organizationname``).
``1001`` means no records (``[[]]``, or no ``Response`` at all); keys are matched whatever
their case or spaces (``Response Status`` as some pages spell it); ``Response`` may come as a
JSON string.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from core.money import CENT, InvalidAmount, to_decimal

from .parsing import MAX_AMOUNT, NAIROBI, PayloadError

SUCCESS_CODES = ("1000", "0")
NO_RECORDS = "1001"


def _load(text: str) -> Any:
    return json.loads(text, parse_float=Decimal)


def _text(value: Any) -> str:
    return "" if value is None else str(value).strip()


def page_keys(page: dict[str, Any]) -> dict[str, Any]:
    """The page's keys by their lowercase, space-free spelling."""
    return {str(key).replace(" ", "").lower(): key for key in page}


def page_transactions(page: Any, *, load: Callable[[str], Any] | None = None) -> list[Any]:
    """The transactions of one query response (raw items, in order). Raises PayloadError for
    an error response or a body that is not a Pull Transactions response. ``load`` reads a
    ``Response`` sent as a JSON string (default: numbers with fractions as Decimal)."""
    if not isinstance(page, dict):
        raise PayloadError("not a Pull Transactions response: not a JSON object")
    keys = page_keys(page)
    if "errorcode" in keys:
        code = _text(page[keys["errorcode"]])
        message = _text(page.get(keys.get("errormessage", ""), ""))
        raise PayloadError(f"a Daraja error response, not transactions: {code} {message}".strip())
    if "response" not in keys and "responsecode" not in keys:
        raise PayloadError(
            "not a Pull Transactions response: it has neither ResponseCode nor Response "
            f"(keys: {', '.join(sorted(map(str, page)))[:120]})"
        )
    code = _text(page[keys["responsecode"]]) if "responsecode" in keys else "1000"
    if code not in (*SUCCESS_CODES, NO_RECORDS):
        message = _text(page.get(keys.get("responsemessage", ""), ""))
        raise PayloadError(
            f"the Pull Transactions response reports an error: {code} {message}".strip()
        )
    if "response" not in keys:
        if code == NO_RECORDS:
            return []
        raise PayloadError("the response has no 'Response' list")
    response = page[keys["response"]]
    if isinstance(response, str):  # "[[]]" sent as a string when there is nothing
        try:
            response = (load or _load)(response)
        except (ValueError, RecursionError):
            raise PayloadError("'Response' is not a list of transactions") from None
    if not isinstance(response, list):
        raise PayloadError("'Response' is not a list of transactions")
    transactions: list[Any] = []
    for item in response:
        transactions.extend(item if isinstance(item, list) else [item])
    return transactions


@dataclass(frozen=True)
class PulledTransaction:
    trans_id: str
    trans_time: datetime | None  # UTC
    amount: Decimal
    msisdn: str  # as sent (a truncated number, masked...): never a customer's number
    sender: str
    transaction_type: str  # Daraja's, e.g. "c2b-pay-bill-debit"
    bill_ref_number: str

    @property
    def is_till(self) -> bool:
        return "buy" in self.transaction_type.lower() or "goods" in self.transaction_type.lower()


def parse_trx_date(text: str) -> datetime | None:
    """``2020-08-05T10:13:00Z`` (UTC), ``2020-08-05 10:13:00`` (EAT, no zone) → UTC."""
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=NAIROBI)
    return moment.astimezone(UTC)


def parse_pulled(item: Any) -> PulledTransaction:
    """One transaction of a page, read; raises PayloadError naming the problem."""
    if not isinstance(item, dict):
        raise PayloadError("the transaction is not a JSON object")
    keys = {str(key).lower(): key for key in item}

    def field(name: str) -> Any:
        return item.get(keys.get(name.lower(), name))

    trans_id = _text(field("transactionId"))
    if not trans_id.isalnum() or not 6 <= len(trans_id) <= 32:
        raise PayloadError(f"transactionId {trans_id[:40]!r} is not an M-Pesa receipt")
    raw_amount = field("amount")
    try:
        amount = to_decimal(raw_amount)
    except InvalidAmount as exc:
        raise PayloadError(f"amount: {exc}") from None
    if amount <= 0 or amount > MAX_AMOUNT or amount != amount.quantize(CENT):
        raise PayloadError(f"amount {raw_amount} is not a payment's amount")
    return PulledTransaction(
        trans_id=trans_id.upper(),
        trans_time=parse_trx_date(_text(field("trxDate"))),
        amount=amount,
        msisdn=_text(field("msisdn"))[:64],
        sender=_text(field("sender"))[:150],
        transaction_type=_text(field("transactiontype"))[:64],
        bill_ref_number=_text(field("billreference"))[:100],
    )
