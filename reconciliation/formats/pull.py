"""Daraja Pull Transactions responses (JSON) read as statement rows."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import replace
from decimal import Decimal
from typing import Any

from daraja.parsing import PayloadError
from daraja.pull import page_keys, page_transactions

from ..models import StatementFormat
from .g2 import decode_text
from .limits import MAX_DECIMAL_EXPONENT, StatementFormatError, cut_text
from .parsed import ParsedStatement, StatementMetadata
from .rows import PROBLEM, Layout
from .values import ValueProblem, decimal_out_of_range, decimal_text, json_number, parse_amount

# --- Daraja Pull Transactions --------------------------------------------------------------------

PULL_HEADER = [
    "Receipt No.",
    "Completion Time",
    "Details",
    "Paid In",
    "Reason Type",
    "Other Party Info",
    "A/C No.",
]
# Not a field of a line: the key of the column in which a format's reader says why a row
# cannot be one (rows with such a column are all read by RowReader).


def _pull_layout() -> Layout:
    layout = Layout.from_header(PULL_HEADER)
    return replace(
        layout,
        header=(*layout.header, "(problem)"),
        columns={**layout.columns, PROBLEM: layout.width},
    )


def parse_pull_transactions(data: bytes) -> ParsedStatement:
    """A Pull Transactions query response (``{"Response": [[{...}, ...]]}``; key case as it
    comes), a list of such responses (several pages), or the bare array of arrays. Each
    transaction is one paid-in line; ``trxDate`` without a zone is EAT, with ``Z`` it is UTC.
    ResponseCode 1001 (no records) is an empty statement; an error response, or JSON of any
    other shape, is refused: it holds no transactions to reconcile."""
    try:
        body = json.loads(decode_text(data), parse_float=json_number, parse_int=json_number)
    except RecursionError:
        raise StatementFormatError("the JSON is nested too deeply to be a response") from None
    except ValueError as exc:
        raise StatementFormatError(f"the file is not valid JSON: {exc}") from None
    if not _json_depth_ok(body):
        raise StatementFormatError(
            f"the JSON is nested too deeply to be a response (over {MAX_JSON_DEPTH} levels)"
        )
    if isinstance(body, dict) and set(body) == {"status", "response"}:
        # A saved HTTP exchange (status and body): docs/statements.md, "Daraja Pull Transactions".
        body = body["response"]
    metadata = StatementMetadata()
    if isinstance(body, list) and body and all(isinstance(item, list) for item in body):
        pages: list[Any] = [{"Response": body}]  # the bare array of arrays
    elif isinstance(body, list) and body and all(isinstance(item, dict) for item in body):
        pages = body
    elif isinstance(body, dict) and body:
        pages = [body]
    else:
        raise StatementFormatError(
            "the JSON is not a Pull Transactions response (an object with ResponseCode and "
            "Response, a list of them, or an array of arrays of transactions)"
        )
    transactions: list[Any] = []
    for number, page in enumerate(pages, 1):
        transactions.extend(_pull_page(page, number, len(pages), metadata))
    return ParsedStatement(
        file_format=StatementFormat.PULL_JSON,
        metadata=metadata,
        layout=_pull_layout(),
        header_row=0,
        rows=_pull_rows(transactions),
    )


def _pull_page(
    page: dict[str, Any], number: int, pages: int, metadata: StatementMetadata
) -> list[Any]:
    """One response's transactions (keys matched whatever their case or spaces): the
    structure is read by :func:`daraja.pull.page_transactions`, as the C2B recovery reads it."""
    where = f"response {number} of {pages}: " if pages > 1 else ""
    keys = page_keys(page)
    if "responserefid" in keys and "errorcode" not in keys:
        metadata.labels.setdefault("ResponseRefID", []).append(
            _json_text(page[keys["responserefid"]])
        )
    try:
        return page_transactions(
            page, load=lambda text: json.loads(text, parse_float=json_number, parse_int=json_number)
        )
    except PayloadError as exc:
        raise StatementFormatError(f"{where}{exc}") from None


def _pull_rows(transactions: Iterable[Any]) -> Iterator[tuple[int, list[str]]]:
    """The transactions as rows of :data:`PULL_HEADER`, plus the problem column."""
    for number, item in enumerate(transactions, 1):
        if not isinstance(item, dict):
            text = _json_text(item)[:80]
            problem = f"the transaction is not a JSON object: {text}"
            yield number, ["", "", "", "", "", "", "", problem]
            continue
        kind = _json_text(item.get("transactiontype"))
        msisdn = _json_text(item.get("msisdn"))
        sender = _json_text(item.get("sender"))
        party = f"{msisdn} - {sender}" if sender else msisdn
        amount = item.get("amount")
        # A float never reaches here (parse_float=Decimal); a bool is not an amount.
        amount_text = "true" if amount is True else _json_text(amount)
        problem = ""
        try:
            negative = (parse_amount(amount_text) or 0) < 0  # -168, (168.00), KES -168
        except ValueProblem:
            negative = False  # not an amount: the row reader rejects it, saying so
        if decimal_out_of_range(amount):
            problem = (
                f"the amount {cut_text(str(amount), 80)} has an exponent out of range (over "
                f"{MAX_DECIMAL_EXPONENT}): not an amount"
            )
        elif negative:
            # Every Pull transaction is money in; what a negative one would be (a reversal?)
            # is not documented, so it is not read as a payment of the opposite sign.
            problem = (
                f"the amount {amount_text.strip()!r} is negative: a Pull transaction is money "
                "paid in, and a negative one has no documented meaning"
            )
        yield (
            number,
            [
                _json_text(item.get("transactionId")),
                _json_text(item.get("trxDate")),
                f"{kind} from {party}".strip() if kind else party,
                amount_text,
                kind,
                party,
                _json_text(item.get("billreference")),
                problem,
            ],
        )


def _json_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, Decimal):
        return decimal_text(value)
    if isinstance(value, (dict, list)):
        text = json.dumps(value, default=str)
    else:
        text = str(value)
    return text.replace("\x00", "")  # as from every other format's cells


# Far deeper than a response (object, Response, page, transaction, value) ever is; checked
# before any value is turned back into text, which recurses.
MAX_JSON_DEPTH = 32


def _json_depth_ok(body: Any) -> bool:
    stack = [(body, 1)]
    while stack:
        value, depth = stack.pop()
        if depth > MAX_JSON_DEPTH:
            return False
        if isinstance(value, dict):
            stack.extend((item, depth + 1) for item in value.values())
        elif isinstance(value, list):
            stack.extend((item, depth + 1) for item in value)
    return True
