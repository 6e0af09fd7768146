"""STK callback bodies in the exact shapes Safaricom sends, and their delivery over HTTP.

Bodies are built as text, not dicts, because one real form cannot be produced by ``json.dumps``:
``"Value":1.00`` (a decimal-looking JSON number with trailing zeros, seen 2018-2023). A client
that parses it as a float or compares it to an int string must meet that form here.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any

import httpx

from .codes import SUCCESS_CODE, callback_result_code, dumps_compact

# Stand-in for the Amount value, replaced by raw JSON text after serialisation.
_RAW_AMOUNT = "__simulator_raw_amount__"
RESPONSE_BODY_LIMIT = 4000


def stk_callback_text(
    *,
    merchant_request_id: str,
    checkout_request_id: str,
    result_code: str,
    result_desc: str,
    amount: int | None = None,
    amount_form: str = "int",
    receipt: str | None = None,
    balance_form: str = "no_value",
    transaction_date: str | None = None,
    phone: str | None = None,
) -> str:
    """The JSON text of ``{"Body":{"stkCallback":{...}}}``.

    CallbackMetadata is present only for ResultCode 0, as in every real failure payload.
    """
    callback: dict[str, Any] = {
        "MerchantRequestID": merchant_request_id,
        "CheckoutRequestID": checkout_request_id,
        "ResultCode": callback_result_code(result_code),
        "ResultDesc": result_desc,
    }
    decimal_amount = False
    if result_code == SUCCESS_CODE:
        if amount is None or receipt is None or transaction_date is None or phone is None:
            raise ValueError("a successful callback needs amount, receipt, date and phone")
        decimal_amount = amount_form == "decimal"
        items: list[dict[str, Any]] = [
            {"Name": "Amount", "Value": _RAW_AMOUNT if decimal_amount else amount},
            {"Name": "MpesaReceiptNumber", "Value": receipt},
        ]
        # Balance: usually an item without Value, sometimes absent, once "Value": 0.
        if balance_form == "no_value":
            items.append({"Name": "Balance"})
        elif balance_form == "zero":
            items.append({"Name": "Balance", "Value": 0})
        items.append({"Name": "TransactionDate", "Value": int(transaction_date)})
        items.append({"Name": "PhoneNumber", "Value": int(phone)})
        callback["CallbackMetadata"] = {"Item": items}
    text = dumps_compact({"Body": {"stkCallback": callback}})
    if decimal_amount:
        text = text.replace(f'"{_RAW_AMOUNT}"', f"{amount}.00")
    return text


def body_text(kind: str, normal: str) -> str:
    """The text POSTed for one delivery: the real body, ``{}``, or truncated JSON."""
    if kind == "empty":
        return "{}"
    if kind == "malformed":
        # Cut mid-document: what a proxy or a crashed sender leaves behind. Never valid JSON.
        return normal[: max(1, len(normal) // 2)]
    return normal


@dataclass
class Attempt:
    """One callback POST and what the receiver answered."""

    attempt: int
    kind: str
    url: str
    body: str
    scheduled_at: float
    started_at: float | None = None
    finished_at: float | None = None
    status_code: int | None = None
    response_body: str | None = None
    error: str | None = None


@dataclass
class SendResult:
    started_at: float
    finished_at: float | None = None
    status_code: int | None = None
    response_body: str | None = None
    error: str | None = None


class CallbackSender:
    """Posts callbacks with one shared httpx client (thread-safe connection pool).

    ``trust_env=False``: an ``HTTP_PROXY`` in the environment must not capture callbacks meant
    for a receiver on localhost.
    """

    def __init__(self, timeout: float) -> None:
        self._client = httpx.Client(timeout=timeout, trust_env=False, follow_redirects=False)
        self._lock = threading.Lock()
        self._closed = False

    def send(self, url: str, body: str) -> SendResult:
        """POST ``body`` to ``url``; never raises (a failure is part of the result)."""
        result = SendResult(started_at=time.time())
        try:
            response = self._client.post(
                url, content=body.encode("utf-8"), headers={"Content-Type": "application/json"}
            )
            result.status_code = response.status_code
            result.response_body = response.text[:RESPONSE_BODY_LIMIT]
        except (httpx.HTTPError, RuntimeError) as exc:
            # RuntimeError: the client was closed by a shutdown while this POST was due.
            result.error = f"{type(exc).__name__}: {exc}"
        result.finished_at = time.time()
        return result

    def close(self) -> None:
        with self._lock:
            if not self._closed:
                self._closed = True
                self._client.close()
