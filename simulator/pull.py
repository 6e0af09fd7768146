"""Pull Transactions in the simulator (docs/daraja.md, "Pull Transactions"): register a
shortcode (``1000`` registered, ``1001`` already), and query its completed C2B payments
between two East Africa times within the last 48 hours, ``pull_page_size`` at a time from
``OffSetValue``: ``ResponseCode`` ``1000`` with ``Response`` an array of arrays of lowercase-keyed
transactions (a truncated numeric ``msisdn``, a string ``amount``, ``trxDate`` in UTC with
``Z``), or ``1001`` when there are none. A payment whose confirmation was dropped is listed
too: that is what the recovery reads it for.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from . import codes
from .c2b import request_shortcode
from .ids import EAT, IdFactory, payer_name
from .records import Reply

if TYPE_CHECKING:
    from .c2b import C2BPayment
    from .config import SimulatorConfig

QUERY_TIME = "%Y-%m-%d %H:%M:%S"
REACH = timedelta(hours=48)


class PullSimulation:
    """The Pull Transactions half of :class:`simulator.engine.Simulator`."""

    config: SimulatorConfig
    ids: IdFactory
    _lock: threading.RLock
    _c2b_payments: list[C2BPayment]

    if TYPE_CHECKING:

        def log(self, message: str) -> None: ...

        def _authenticate(self, authorization: str | None) -> None: ...

        @staticmethod
        def _json_object(content_type: str | None, body: bytes) -> dict[str, Any]: ...

    def _pull_init(self) -> None:
        self._pull_registered: set[str] = set()

    def pull_register(
        self, authorization: str | None, content_type: str | None, body: bytes
    ) -> Reply:
        self._authenticate(authorization)
        data = self._json_object(content_type, body)
        shortcode = request_shortcode(data)
        if data.get("RequestType") != "Pull":
            raise codes.invalid_field("RequestType")
        if not str(data.get("CallBackURL", "")).startswith(("http://", "https://")):
            raise codes.invalid_field("CallBackURL")
        with self._lock:
            known = shortcode in self._pull_registered
            self._pull_registered.add(shortcode)
        return Reply.json(
            200,
            {
                "ResponseRefID": self.ids.request_id(),
                "Response Status": "1001" if known else "1000",
                "ShortCode": shortcode,
                "Response Description": "ShortCode already Registered"
                if known
                else "ShortCode Registered Successfully",
            },
        )

    def pull_query(self, authorization: str | None, content_type: str | None, body: bytes) -> Reply:
        self._authenticate(authorization)
        data = self._json_object(content_type, body)
        shortcode = request_shortcode(data)
        start = _query_time(data.get("StartDate"), "StartDate")
        end = _query_time(data.get("EndDate"), "EndDate")
        now = datetime.now(UTC)
        if start > end or start < now - REACH - timedelta(minutes=1):
            raise codes.invalid_field("StartDate")
        offset_text = str(data.get("OffSetValue", "")).strip()
        if not offset_text.isdigit():
            raise codes.invalid_field("OffSetValue")
        offset = int(offset_text)
        with self._lock:
            if shortcode not in self._pull_registered:
                raise codes.mpesa_rejection("ShortCode is not registered for Pull")
            listed = [
                payment
                for payment in self._c2b_payments
                if payment.shortcode == shortcode
                and payment.status == "completed"
                and start <= _completed(payment) <= end
            ]
        listed.sort(key=lambda payment: (_completed(payment), payment.trans_id))
        page = listed[offset : offset + self.config.pull_page_size]
        reference = self.ids.request_id()
        if not page:
            return Reply.json(
                200,
                {
                    "ResponseRefID": reference,
                    "ResponseCode": "1001",
                    "ResponseMessage": "No records found or Organization Name not available",
                },
            )
        return Reply.json(
            200,
            {
                "ResponseRefID": reference,
                "ResponseCode": "1000",
                "ResponseMessage": "Success",
                "Response": [[self._pulled(payment) for payment in page]],
            },
        )

    def _pulled(self, payment: C2BPayment) -> dict[str, Any]:
        till = payment.command == "CustomerBuyGoodsOnline"
        return {
            "transactionId": payment.trans_id,
            "trxDate": _completed(payment).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "msisdn": int(payment.msisdn[3:11]),  # numeric and truncated, as Daraja sends it
            "sender": payer_name(payment.msisdn),
            "transactiontype": "c2b-buy-goods-debit" if till else "c2b-pay-bill-debit",
            "billreference": payment.bill_ref,
            "amount": f"{payment.amount:.2f}",
            "organizationname": self.config.account_holder,
        }


def _completed(payment: C2BPayment) -> datetime:
    return datetime.fromtimestamp(payment.completed_at or payment.created_at, UTC)


def _query_time(value: Any, name: str) -> datetime:
    try:
        return datetime.strptime(str(value).strip(), QUERY_TIME).replace(tzinfo=EAT).astimezone(UTC)
    except ValueError:
        raise codes.invalid_field(name) from None
