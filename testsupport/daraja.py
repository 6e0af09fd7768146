"""Daraja payloads for tests: builders in the real shapes, and the captured real payloads."""

from __future__ import annotations

import json
import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
# Real Daraja payloads captured in the wild, kept outside the repository (the project's shared
# folder beside it, or DARAJA_PAYLOADS_DIR); tests over them skip when they are absent.
REAL_PAYLOADS = Path(
    os.environ.get("DARAJA_PAYLOADS_DIR", REPO_ROOT.parent / "shared" / "daraja" / "payloads")
)


def real_payloads(pattern: str) -> list[Path]:
    """The captured payloads whose names match ``pattern`` (none when the folder is absent)."""
    return sorted(REAL_PAYLOADS.glob(pattern)) if REAL_PAYLOADS.is_dir() else []


def stk_success_body(
    *,
    checkout_request_id: str,
    amount: str | int = 10,
    receipt: str = "UKR1ABCDEF",
    merchant_request_id: str = "f0ab-49c2-ab1d-1f9d840b305512458",
    phone: int | str = 254712345678,
    transaction_date: int | str = 20261127103045,
    balance: str = "no_value",
    envelope: bool = True,
) -> bytes:
    """A success callback in the real shape. ``amount`` as a string is written raw, so
    ``"1.00"`` becomes the JSON number 1.00, as Daraja sends it."""
    items = [
        '{"Name": "Amount", "Value": %s}' % amount,
        '{"Name": "MpesaReceiptNumber", "Value": %s}' % json.dumps(receipt),
    ]
    if balance == "no_value":
        items.append('{"Name": "Balance"}')
    elif balance == "zero":
        items.append('{"Name": "Balance", "Value": 0}')
    items.append('{"Name": "TransactionDate", "Value": %s}' % json.dumps(transaction_date))
    items.append('{"Name": "PhoneNumber", "Value": %s}' % json.dumps(phone))
    inner = (
        '{"MerchantRequestID": %s, "CheckoutRequestID": %s, "ResultCode": 0, '
        '"ResultDesc": "The service request is processed successfully.", '
        '"CallbackMetadata": {"Item": [%s]}}'
        % (json.dumps(merchant_request_id), json.dumps(checkout_request_id), ", ".join(items))
    )
    text = '{"Body": {"stkCallback": %s}}' % inner if envelope else inner
    return text.encode()


def stk_accepted(checkout_request_id: str = "ws_CO_27112026103000123712345678") -> dict[str, str]:
    """Daraja's answer to an accepted STK Push."""
    return {
        "MerchantRequestID": "b18f-4a07-9aff-d6e1fb096b51174446",
        "CheckoutRequestID": checkout_request_id,
        "ResponseCode": "0",
        "ResponseDescription": "Success. Request accepted for processing",
        "CustomerMessage": "Success. Request accepted for processing",
    }


def stk_failure_body(
    *,
    checkout_request_id: str,
    result_code: int | str = 1032,
    result_desc: str = "Request Cancelled by user.",
    merchant_request_id: str = "f0ab-49c2-ab1d-1f9d840b305512889",
) -> bytes:
    return json.dumps(
        {
            "Body": {
                "stkCallback": {
                    "MerchantRequestID": merchant_request_id,
                    "CheckoutRequestID": checkout_request_id,
                    "ResultCode": result_code,
                    "ResultDesc": result_desc,
                }
            }
        }
    ).encode()


# The keys a C2B notification may leave out (a 2025 production confirmation had FirstName only).
OMIT = object()


def c2b_body(
    *,
    trans_id: str = "UL5C2B7QXA",
    amount: str = "250.00",
    shortcode: str = "600984",
    bill_ref: str = "INV-1001",
    msisdn: str = "254712345678",
    transaction_type: str = "Pay Bill",
    trans_time: str = "20261205143015",
    balance: str = "18250.00",
    first_name: object = "Wanjiru",
    middle_name: object = "",
    last_name: object = "Kamau",
    invoice_number: object = "",
    third_party_trans_id: object = "",
    envelope: str = "",
) -> bytes:
    """A C2B validation request or confirmation in the real shape (every value a string).
    A name part or id given as ``OMIT`` is left out; ``None`` is written as ``null``.
    ``envelope="data"`` wraps it as ``{"data": {...}}``."""
    body: dict[str, object] = {
        "TransactionType": transaction_type,
        "TransID": trans_id,
        "TransTime": trans_time,
        "TransAmount": amount,
        "BusinessShortCode": shortcode,
        "BillRefNumber": bill_ref,
        "InvoiceNumber": invoice_number,
        "OrgAccountBalance": balance,
        "ThirdPartyTransID": third_party_trans_id,
        "MSISDN": msisdn,
        "FirstName": first_name,
        "MiddleName": middle_name,
        "LastName": last_name,
    }
    body = {key: value for key, value in body.items() if value is not OMIT}
    return json.dumps({envelope: body} if envelope else body).encode()
