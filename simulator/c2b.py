"""C2B in the simulator: Register URL (v1, v2), ``c2b/v1|v2/simulate``, and the validation →
confirmation flow it starts, as docs/daraja.md ("C2B") describes Daraja's.

- Register URL checks Daraja's URL rules (http(s); none of "mpesa", "safaricom", "exe",
  "exec", "cmd", "sql", "query", in any case) and ``ResponseType`` (``Completed`` or
  ``Cancelled``, exactly); the sandbox lets a shortcode register again, and so does this.
- Simulate answers at once, then in a thread: POSTs the validation request to the
  ValidationURL (an empty ``TransactionType`` and ``OrgAccountBalance``, as the sandbox
  sends), waits up to ``c2b_validation_timeout``; a ``0`` answer, or no answer in time with
  ``ResponseType`` ``Completed``, completes the payment and POSTs the confirmation. Without
  registered URLs the payment completes silently.
- The MSISDN is sent SHA-256-hashed on v1 and masked (``2547 ***** 126``) on v2, per Daraja's
  FAQ; ``POST /simulator/c2b`` overrides it (``msisdn``: ``plain``, ``masked``, ``hashed``),
  the names (``names``: ``full``, ``masked``, ``first_only``), and sends the confirmation
  several times (``confirmations``: 0 drops it, 3 is the duplicate seen in the sandbox).
- Completed C2B payments are listed by ``GET /simulator/c2b/payments`` and appear in the
  statement export beside STK payments (paybill payments only: till money lands elsewhere).
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any

from . import codes
from .callbacks import CallbackSender
from .ids import IdFactory, daraja_timestamp, payer_name, to_eat
from .records import Reply

if TYPE_CHECKING:
    from .config import SimulatorConfig

FORBIDDEN_URL_WORDS = ("m-pesa", "mpesa", "safaricom", "exe", "exec", "cmd", "sql", "query")
COMMANDS = {"CustomerPayBillOnline": "Pay Bill", "CustomerBuyGoodsOnline": "Buy Goods"}
MSISDN_MODES = ("version", "plain", "masked", "hashed")
NAME_MODES = ("full", "masked", "first_only")


@dataclass
class C2BOptions:
    msisdn: str = "version"  # v1 hashed, v2 masked
    names: str = "full"
    confirmations: int = 1


@dataclass
class C2BPayment:
    trans_id: str
    shortcode: str
    command: str
    amount: Decimal
    msisdn: str
    bill_ref: str
    version: str
    created_at: float
    status: str = "pending"  # pending → completed | rejected | cancelled
    validation: dict[str, Any] = field(default_factory=dict)
    confirmations: list[dict[str, Any]] = field(default_factory=list)
    completed_at: float | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "trans_id": self.trans_id,
            "shortcode": self.shortcode,
            "command": self.command,
            "amount": str(self.amount),
            "bill_ref_number": self.bill_ref,
            "version": self.version,
            "status": self.status,
            "validation": self.validation,
            "confirmations": self.confirmations,
        }

    def statement_record(self) -> dict[str, Any]:
        """The shape the statement export reads (as an STK transaction's record)."""
        return {
            "result_code": "0" if self.status == "completed" else "1",
            "status": "completed" if self.status == "completed" else self.status,
            "transaction_type": self.command,
            "receipt": self.trans_id,
            "transaction_date": daraja_timestamp(to_eat(self.completed_at or self.created_at)),
            "amount": str(self.amount),
            "phone": self.msisdn,
            "customer_name": payer_name(self.msisdn),
            "account_reference": self.bill_ref,
        }


def request_shortcode(data: dict[str, Any]) -> str:
    """The request's ``ShortCode`` (a number or a string of digits), else Daraja's error."""
    shortcode = str(data.get("ShortCode", "")).strip()
    if not shortcode.isdigit():
        raise codes.invalid_field("ShortCode")
    return shortcode


def url_problem(url: Any) -> str:
    if not isinstance(url, str) or not url.startswith(("http://", "https://")):
        return "must be an http(s) URL"
    lowered = url.lower()
    for word in FORBIDDEN_URL_WORDS:
        if word in lowered:
            return f"must not contain {word!r}"
    return ""


def masked_msisdn(msisdn: str) -> str:
    return f"{msisdn[:4]} ***** {msisdn[-3:]}"


class C2BSimulation:
    """The C2B half of :class:`simulator.engine.Simulator`."""

    config: SimulatorConfig
    ids: IdFactory
    _lock: threading.RLock
    _stop: threading.Event

    if TYPE_CHECKING:

        def log(self, message: str) -> None: ...

        def _authenticate(self, authorization: str | None) -> None: ...

        @staticmethod
        def _json_object(content_type: str | None, body: bytes) -> dict[str, Any]: ...

    def _c2b_init(self) -> None:
        self._c2b_urls: dict[str, dict[str, str]] = {}
        self._c2b_payments: list[C2BPayment] = []
        self._c2b_options = C2BOptions()
        self._c2b_sender = CallbackSender(self.config.callback_timeout)
        self._c2b_validation_sender = CallbackSender(self.config.c2b_validation_timeout)

    # --- Daraja's APIs ----------------------------------------------------------------------

    def c2b_register_url(
        self, version: str, authorization: str | None, content_type: str | None, body: bytes
    ) -> Reply:
        self._authenticate(authorization)
        data = self._json_object(content_type, body)
        shortcode = request_shortcode(data)
        if data.get("ResponseType") not in ("Completed", "Cancelled"):
            raise codes.invalid_field("ResponseType")
        for name in ("ConfirmationURL", "ValidationURL"):
            if url_problem(data.get(name)):
                raise codes.invalid_field(name)
        with self._lock:
            self._c2b_urls[shortcode] = {
                "version": version,
                "confirmation": data["ConfirmationURL"],
                "validation": data["ValidationURL"],
                "response_type": data["ResponseType"],
            }
        self.log(f"C2B {version} URLs registered for {shortcode}")
        return Reply.json(
            200,
            {
                "OriginatorCoversationID": self.ids.request_id(),
                "ResponseCode": "0",
                "ResponseDescription": "Success",
            },
        )

    def c2b_simulate(
        self, version: str, authorization: str | None, content_type: str | None, body: bytes
    ) -> Reply:
        self._authenticate(authorization)
        data = self._json_object(content_type, body)
        shortcode = request_shortcode(data)
        command = data.get("CommandID")
        if command not in COMMANDS:
            raise codes.invalid_field("CommandID")
        try:
            amount = Decimal(str(data.get("Amount")))
        except InvalidOperation:
            raise codes.invalid_field("Amount") from None
        if not amount.is_finite() or amount <= 0 or amount != amount.to_integral_value():
            raise codes.invalid_field("Amount")
        msisdn = str(data.get("Msisdn", "")).strip()
        if not (msisdn.isdigit() and msisdn.startswith("254") and len(msisdn) == 12):
            raise codes.invalid_field("Msisdn")
        bill_ref = data.get("BillRefNumber") or ""
        if not isinstance(bill_ref, str) or len(bill_ref) > 20:
            raise codes.invalid_field("BillRefNumber")
        now = time.time()
        payment = C2BPayment(
            trans_id=self.ids.receipt(to_eat(now)),
            shortcode=shortcode,
            command=command,
            amount=amount,
            msisdn=msisdn,
            bill_ref=bill_ref,
            version=version,
            created_at=now,
        )
        with self._lock:
            self._c2b_payments.append(payment)
        threading.Thread(target=self._c2b_flow, args=(payment,), daemon=True).start()
        return Reply.json(
            200,
            {
                "OriginatorCoversationID": self.ids.request_id(),
                "ResponseCode": "0",
                "ResponseDescription": "Accept the service request successfully.",
            },
        )

    # --- Control ----------------------------------------------------------------------------

    def c2b_set_options(self, data: Any) -> dict[str, Any]:
        if not isinstance(data, dict):
            raise ValueError("body must be a JSON object")
        with self._lock:
            options = self._c2b_options
            msisdn = data.get("msisdn", options.msisdn)
            names = data.get("names", options.names)
            count = data.get("confirmations", options.confirmations)
            if msisdn not in MSISDN_MODES:
                raise ValueError(f"msisdn must be one of {list(MSISDN_MODES)}")
            if names not in NAME_MODES:
                raise ValueError(f"names must be one of {list(NAME_MODES)}")
            if isinstance(count, bool) or not isinstance(count, int) or not 0 <= count <= 5:
                raise ValueError("confirmations must be a whole number from 0 to 5")
            self._c2b_options = C2BOptions(msisdn=msisdn, names=names, confirmations=count)
            return self.c2b_state()

    def c2b_state(self) -> dict[str, Any]:
        with self._lock:
            options = self._c2b_options
            return {
                "options": {
                    "msisdn": options.msisdn,
                    "names": options.names,
                    "confirmations": options.confirmations,
                },
                "registered": {code: dict(urls) for code, urls in self._c2b_urls.items()},
            }

    def c2b_payments_json(self) -> dict[str, Any]:
        with self._lock:
            return {"payments": [payment.to_json() for payment in self._c2b_payments]}

    def c2b_statement_records(self) -> list[dict[str, Any]]:
        with self._lock:
            return [p.statement_record() for p in self._c2b_payments if p.status == "completed"]

    def _c2b_reset(self) -> None:
        with self._lock:
            self._c2b_urls.clear()
            self._c2b_payments.clear()
            self._c2b_options = C2BOptions()

    # --- The flow ---------------------------------------------------------------------------

    def _notification(self, payment: C2BPayment, *, validation: bool) -> dict[str, Any]:
        options = self._c2b_options
        mode = options.msisdn
        if mode == "version":
            mode = "hashed" if payment.version == "v1" else "masked"
        msisdn = {
            "plain": payment.msisdn,
            "masked": masked_msisdn(payment.msisdn),
            "hashed": hashlib.sha256(payment.msisdn.encode()).hexdigest(),
        }[mode]
        first, _, last = payer_name(payment.msisdn).partition(" ")
        body: dict[str, Any] = {
            "TransactionType": "" if validation else COMMANDS[payment.command],
            "TransID": payment.trans_id,
            "TransTime": daraja_timestamp(to_eat(payment.created_at)),
            "TransAmount": f"{payment.amount:.2f}",
            "BusinessShortCode": payment.shortcode,
            "BillRefNumber": payment.bill_ref,
            "InvoiceNumber": "",
            "OrgAccountBalance": "" if validation else f"{self._c2b_balance(payment):.2f}",
            "ThirdPartyTransID": "",
            "MSISDN": msisdn,
            "FirstName": first,
            "MiddleName": "",
            "LastName": last,
        }
        if options.names == "masked":
            body.update(FirstName=first, MiddleName="******", LastName="******")
        elif options.names == "first_only":
            del body["MiddleName"], body["LastName"]
        return body

    def _c2b_balance(self, payment: C2BPayment) -> Decimal:
        with self._lock:
            done = [p.amount for p in self._c2b_payments if p.status == "completed"]
        return self.config.opening_balance + sum(done, Decimal(0))

    def _c2b_flow(self, payment: C2BPayment) -> None:
        with self._lock:
            urls = dict(self._c2b_urls.get(payment.shortcode, {}))
            copies = self._c2b_options.confirmations
        if urls:
            body = json.dumps(self._notification(payment, validation=True))
            result = self._c2b_validation_sender.send(urls["validation"], body)
            answer = _result_code(result.response_body) if result.error is None else None
            with self._lock:
                payment.validation = {
                    "status_code": result.status_code,
                    "error": result.error,
                    "answer": result.response_body[:500] if result.response_body else "",
                }
            if answer is None and urls["response_type"] == "Cancelled":
                self._c2b_end(payment, "cancelled")
                return
            if answer is not None and answer != "0":
                self._c2b_end(payment, "rejected")
                return
        self._c2b_end(payment, "completed")
        if not urls:
            return
        text = json.dumps(self._notification(payment, validation=False))
        for n in range(copies):
            if n and self._stop.wait(self.config.duplicate_gap):
                return
            sent = self._c2b_sender.send(urls["confirmation"], text)
            with self._lock:
                payment.confirmations.append({"status_code": sent.status_code, "error": sent.error})
            self.log(
                f"C2B confirmation {payment.trans_id} #{n + 1} POST -> "
                f"{sent.status_code if sent.error is None else sent.error}"
            )

    def _c2b_end(self, payment: C2BPayment, status: str) -> None:
        with self._lock:
            payment.status = status
            payment.completed_at = time.time()
        self.log(f"C2B {payment.trans_id} {status}")


def _result_code(text: str | None) -> str | None:
    """A validation answer's ResultCode as a string; None when it is not readable."""
    try:
        data = json.loads(text or "")
    except ValueError:
        return None
    if not isinstance(data, dict) or "ResultCode" not in data:
        return None
    return str(data["ResultCode"])
