"""Request validation for STK Push and STK Query, in the order Daraja applies it.

Two layers, as in the real platform: the API gateway first checks each field's format and
answers ``400.002.02 Bad Request - Invalid <Field>`` for the first bad one; only a well-formed
request reaches M-Pesa, which may reject it with HTTP 500 ``500.001.1001`` (unknown merchant,
wrong password). PhoneNumber is checked before PartyA because real integrations send the same
bad number in both and Daraja names PhoneNumber (payload ``stkpush_error_..._osenco65``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from .codes import DarajaError, invalid_field, mpesa_rejection
from .config import SimulatorConfig
from .ids import parse_daraja_timestamp, stk_password

PAYBILL = "CustomerPayBillOnline"
BUY_GOODS = "CustomerBuyGoodsOnline"
TRANSACTION_TYPES = (PAYBILL, BUY_GOODS)
MIN_AMOUNT = 1
MAX_AMOUNT = 250_000
MAX_ACCOUNT_REFERENCE = 12
MAX_TRANSACTION_DESC = 13

_MSISDN = re.compile(r"^254[17][0-9]{8}$")


@dataclass(frozen=True)
class PushRequest:
    """A validated STK Push, with every number normalised to a digit string."""

    shortcode: str
    timestamp: str
    transaction_type: str
    amount: int
    party_a: str
    party_b: str
    phone: str
    callback_url: str
    account_reference: str
    transaction_desc: str

    def operator_mismatch(self, config: SimulatorConfig) -> bool:
        """True when PartyB does not fit TransactionType; Daraja accepts the push anyway and
        the callback fails with SFC_IC0003."""
        expected = config.shortcode if self.transaction_type == PAYBILL else config.till_number
        return self.party_b != expected


def digits(value: Any) -> str | None:
    """A JSON number or numeric string as digits; None for anything else (bool, float...)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return str(value) if value >= 0 else None
    if isinstance(value, str) and value.strip().isascii() and value.strip().isdigit():
        return value.strip()
    return None


def _text(value: Any) -> str | None:
    """A non-empty text field; numbers are accepted as their decimal text."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str) and value.strip():
        return value
    return None


def _timestamp(value: Any) -> str:
    text = digits(value)
    if text is None or parse_daraja_timestamp(text) is None:
        raise invalid_field("Timestamp")
    return text


def _shortcode(value: Any) -> str:
    text = digits(value)
    if text is None:
        raise invalid_field("BusinessShortCode")
    return text


def _password(value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise invalid_field("Password")
    return value


def check_merchant_and_password(
    shortcode: str, password: str, timestamp: str, config: SimulatorConfig
) -> None:
    """The M-Pesa side checks, after the gateway has accepted the format."""
    if shortcode != config.shortcode:
        raise mpesa_rejection("Merchant does not exist")
    if password != stk_password(shortcode, config.passkey, timestamp):
        raise mpesa_rejection("Wrong credentials")


def validate_push(data: Mapping[str, Any], config: SimulatorConfig) -> PushRequest:
    """Validate an STK Push body; raises :class:`DarajaError` exactly as Daraja answers."""
    shortcode = _shortcode(data.get("BusinessShortCode"))
    password = _password(data.get("Password"))
    timestamp = _timestamp(data.get("Timestamp"))

    transaction_type = data.get("TransactionType")
    if transaction_type not in TRANSACTION_TYPES:
        raise invalid_field("TransactionType")

    amount_text = digits(data.get("Amount"))
    if amount_text is None or not MIN_AMOUNT <= int(amount_text) <= MAX_AMOUNT:
        # Decimals ("10.00", 10.5) are rejected too: whole shillings only.
        raise invalid_field("Amount")

    phone = digits(data.get("PhoneNumber"))
    if phone is None or not _MSISDN.match(phone):
        raise invalid_field("PhoneNumber")
    party_a = digits(data.get("PartyA"))
    if party_a is None or not _MSISDN.match(party_a):
        raise invalid_field("PartyA")
    party_b = digits(data.get("PartyB"))
    if party_b is None:
        raise invalid_field("PartyB")

    callback_url = data.get("CallBackURL")
    if not isinstance(callback_url, str) or not _is_http_url(callback_url):
        raise invalid_field("CallBackURL")

    account_reference = _text(data.get("AccountReference"))
    if account_reference is None or len(account_reference) > MAX_ACCOUNT_REFERENCE:
        raise invalid_field("AccountReference")

    # The 2026 sandbox calls TransactionDesc "Remarks" in its error text.
    transaction_desc = _text(data.get("TransactionDesc"))
    if transaction_desc is None or len(transaction_desc) > MAX_TRANSACTION_DESC:
        raise invalid_field("Remarks")

    check_merchant_and_password(shortcode, password, timestamp, config)
    return PushRequest(
        shortcode=shortcode,
        timestamp=timestamp,
        transaction_type=str(transaction_type),
        amount=int(amount_text),
        party_a=party_a,
        party_b=party_b,
        phone=phone,
        callback_url=callback_url,
        account_reference=account_reference,
        transaction_desc=transaction_desc,
    )


def validate_query(data: Mapping[str, Any], config: SimulatorConfig) -> str:
    """Validate an STK Query body and return its CheckoutRequestID (not yet looked up)."""
    shortcode = _shortcode(data.get("BusinessShortCode"))
    password = _password(data.get("Password"))
    timestamp = _timestamp(data.get("Timestamp"))
    checkout_request_id = data.get("CheckoutRequestID")
    if not isinstance(checkout_request_id, str) or not checkout_request_id.strip():
        raise invalid_field("CheckoutRequestID")
    check_merchant_and_password(shortcode, password, timestamp, config)
    return checkout_request_id.strip()


def _is_http_url(value: str) -> bool:
    if value != value.strip() or any(ch.isspace() for ch in value):
        return False
    try:
        parts = urlsplit(value)
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.hostname)


__all__ = [
    "BUY_GOODS",
    "PAYBILL",
    "DarajaError",
    "PushRequest",
    "check_merchant_and_password",
    "digits",
    "validate_push",
    "validate_query",
]
