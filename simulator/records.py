"""What the simulator keeps and answers with: a :class:`Reply` (status and body), a
:class:`Transaction` (one accepted push, its plan, its callbacks and their answers), and
:func:`redact` for its log (callback tokens and phone numbers masked)."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from . import codes
from .callbacks import Attempt, stk_callback_text
from .ids import to_eat
from .scenarios import Plan
from .validation import PushRequest


@dataclass
class Reply:
    """An HTTP answer: status, body bytes, content type and any extra headers."""

    status: int
    body: bytes = b""
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)
    # Daraja errorCode, for the request log line only.
    error_code: str | None = None

    @classmethod
    def json(cls, status: int, payload: Any) -> Reply:
        return cls(status, json.dumps(payload).encode("utf-8"))


def iso_eat(ts: float | None) -> str | None:
    return None if ts is None else to_eat(ts).isoformat(timespec="milliseconds")


@dataclass
class Transaction:
    """One accepted push: the request, the planned outcome and everything that happened."""

    index: int
    checkout_request_id: str
    merchant_request_id: str
    request: dict[str, Any]
    push: PushRequest
    customer_name: str
    accepted_at: float
    answer_at: float
    callback_at: float | None
    plan: Plan
    amount_form: str
    balance_form: str
    pending_style: str
    receipt: str | None = None
    transaction_date: str | None = None
    callbacks: list[Attempt] = field(default_factory=list)
    queries: list[dict[str, Any]] = field(default_factory=list)
    cancelled: bool = False

    @property
    def result_code(self) -> str:
        return self.plan.result_code

    @property
    def result_desc(self) -> str:
        return self.plan.result_desc

    def answered(self, now: float) -> bool:
        return now >= self.answer_at

    def status(self, now: float) -> str:
        if not self.answered(now):
            return "pending"
        return "completed" if self.result_code == codes.SUCCESS_CODE else "failed"

    def callback_text(self) -> str:
        return stk_callback_text(
            merchant_request_id=self.merchant_request_id,
            checkout_request_id=self.checkout_request_id,
            result_code=self.result_code,
            result_desc=self.result_desc,
            amount=self.push.amount,
            amount_form=self.amount_form,
            receipt=self.receipt,
            balance_form=self.balance_form,
            transaction_date=self.transaction_date,
            phone=self.push.phone,
        )

    def to_json(self, now: float) -> dict[str, Any]:
        push = self.push
        return {
            "index": self.index,
            "checkout_request_id": self.checkout_request_id,
            "merchant_request_id": self.merchant_request_id,
            "status": self.status(now),
            "scenario": self.plan.scenario,
            "source": self.plan.source,
            "phone": push.phone,
            "party_a": push.party_a,
            "party_b": push.party_b,
            "amount": push.amount,
            "transaction_type": push.transaction_type,
            "account_reference": push.account_reference,
            "transaction_desc": push.transaction_desc,
            "callback_url": push.callback_url,
            "customer_name": self.customer_name,
            "result_code": self.result_code,
            "result_desc": self.result_desc,
            "receipt": self.receipt,
            "transaction_date": self.transaction_date,
            "amount_form": self.amount_form,
            "balance_form": self.balance_form,
            "pending_style": self.pending_style,
            "accepted_at": iso_eat(self.accepted_at),
            "answer_at": iso_eat(self.answer_at),
            "callback_due_at": iso_eat(self.callback_at),
            "plan": self.plan.to_json(),
            "chaos": self.plan.chaos,
            "request": self.request,
            "queries": list(self.queries),
            "callbacks": [
                {
                    "attempt": a.attempt,
                    "kind": a.kind,
                    "url": a.url,
                    "body": a.body,
                    "scheduled_at": iso_eat(a.scheduled_at),
                    "started_at": iso_eat(a.started_at),
                    "finished_at": iso_eat(a.finished_at),
                    "status_code": a.status_code,
                    "response_body": a.response_body,
                    "error": a.error,
                }
                for a in sorted(self.callbacks, key=lambda a: a.attempt)
            ],
        }


# A callback URL's last path segment is the receiver's secret; phone numbers are personal data.
# Neither belongs in a log line, even a simulator's, which `make run` prints beside the app's.
_URL_TOKEN = re.compile(r"(https?://\S+?/callback/)[^/\s]+")
# Every form a number is written in (2547…, +254 7XX XXX XXX, 254-7XX-…, 07XX…, 7XXXXXXXX,
# URL-encoded %2B254%207XX…), normalised to 254… and masked: the same forms, and the same
# output, as the project's core.logging.mask_text (the simulator imports nothing from the
# project; a test holds the two to the same cases).
_SEP = r"(?:[ \-+]|%20)?"
_PHONE = re.compile(
    r"(?:(?<=%[0-9A-Fa-f]{2})|(?<![0-9A-Fa-f%]))"
    r"(?P<prefix>(?:\+|%2[Bb])?254" + _SEP + r"|0)?"
    r"(?P<a>[17]\d\d)" + _SEP + r"(?P<b>\d\d\d)" + _SEP + r"(?P<c>\d\d\d)"
    r"(?![0-9A-Fa-f])"
)


def _mask_phone(match: re.Match[str]) -> str:
    digits = match["a"] + match["b"] + match["c"]
    if match["prefix"] is None and digits[0] == "1" and digits[1] not in "01":
        return match.group(0)
    return f"254{digits[:1]}****{digits[-4:]}"


def redact(message: str) -> str:
    message = _URL_TOKEN.sub(r"\1<token>", message)
    return _PHONE.sub(_mask_phone, message)
