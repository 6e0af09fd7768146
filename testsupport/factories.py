"""Factories that make API keys and payments the way the system does.

A payment is made by the services a request and Daraja's answers go through: created
INITIATED by ``payment_create`` (with its callback token and first event), moved to PENDING
as an accepted STK Push moves it, and decided SUCCESS or FAILED by ``payment_apply_evidence``
from the callback Daraja would send (stored and processed by the inbox, as a worker would) or
an STK Query answer, so every payment a test starts from has the events, fields, flags and evidence
the real flow leaves. The callback token, shown
once by ``payment_create`` and never stored, is kept on the instance as ``callback_token``.

    PaymentFactory()                              # PENDING, with a CheckoutRequestID
    PaymentFactory(initiated=True)                # INITIATED: the push not answered yet
    PaymentFactory(success=True, receipt="UKR1ABCDEF")
    PaymentFactory(success=True, receipt=None)    # confirmed by STK Query: no receipt
    PaymentFactory(failed=True)                   # M-Pesa's final failure (cancelled)
    PaymentFactory(failed=True, failure_final=False)   # expired unresolved by the sweeper
    PaymentFactory(created_at=...)                # prompted at that time
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import factory
from django.utils import timezone

from callbacks.models import CallbackState
from callbacks.services import callback_process, callback_receive
from core.models import ApiClient
from core.services import api_client_create
from payments.models import EventSource, Payment, PaymentStatus
from payments.outcomes import Evidence, Verdict, payment_apply_evidence
from payments.services import payment_create, payment_transition

from .daraja import stk_failure_body, stk_success_body

EAT = ZoneInfo("Africa/Nairobi")

# Daraja's descriptions of the results a factory payment is decided by.
SUCCESS_DESC = "The service request is processed successfully."
CANCELLED_DESC = "Request Cancelled by user."


class ApiClientFactory(factory.Factory):
    """An API client with a new key, made by ``api_client_create``; the key, shown once, is
    kept on the instance as ``raw_key``."""

    class Meta:
        model = ApiClient

    name = factory.Sequence(lambda n: f"merchant-{n}")
    scopes: Any = None
    acts_for: Any = None

    @classmethod
    def _create(cls, model_class: type[ApiClient], *args: Any, **kwargs: Any) -> ApiClient:
        new = api_client_create(**kwargs)
        client = new.client
        client.raw_key = new.key  # type: ignore[attr-defined]
        return client


class PaymentFactory(factory.Factory):
    class Meta:
        model = Payment

    class Params:
        initiated = factory.Trait(status=PaymentStatus.INITIATED)
        success = factory.Trait(status=PaymentStatus.SUCCESS)
        failed = factory.Trait(status=PaymentStatus.FAILED)

    client: Any = None
    phone_number = "254712345678"
    amount = Decimal("10.00")
    account_reference = "A"
    description = "B"
    status = PaymentStatus.PENDING
    checkout_request_id = factory.Sequence(lambda n: f"ws_CO_05122026000000{n:010d}")
    merchant_request_id = factory.Sequence(lambda n: f"f0ab-49c2-ab1d-{n:012d}")
    # SUCCESS: the receipt (None: a success STK Query confirmed, which carries none), the
    # amount paid (default: the payment's) and M-Pesa's completion time (default: now).
    receipt: Any = factory.Sequence(lambda n: f"UKR{n:07d}")
    paid_amount: Any = None
    transaction_date: Any = None
    # FAILED: M-Pesa's result code (final), or failure_final=False for a payment the expiry
    # sweeper failed for want of any answer (not M-Pesa's word).
    result_code = "1032"
    failure_final = True
    # When the payment was made (auto_now_add): set after the fact, as if it were then.
    created_at: Any = None

    @classmethod
    def _create(cls, model_class: type[Payment], *args: Any, **kwargs: Any) -> Payment:
        status = kwargs.pop("status")
        checkout = kwargs.pop("checkout_request_id")
        merchant = kwargs.pop("merchant_request_id")
        receipt = kwargs.pop("receipt")
        paid_amount = kwargs.pop("paid_amount")
        transaction_date = kwargs.pop("transaction_date")
        result_code = kwargs.pop("result_code")
        failure_final = kwargs.pop("failure_final")
        created_at: datetime | None = kwargs.pop("created_at")
        kwargs["amount"] = Decimal(kwargs["amount"])

        payment, token = payment_create(**kwargs)
        if status != PaymentStatus.INITIATED:
            ids = {"checkout_request_id": checkout, "merchant_request_id": merchant}
            payment = payment_transition(
                payment=payment,
                to_status=PaymentStatus.PENDING,
                source=EventSource.DARAJA,
                reason="Success. Request accepted for processing",
                evidence=ids,
                fields=ids,
            ).payment
        if status == PaymentStatus.SUCCESS:
            _succeed(payment, token, receipt, paid_amount, transaction_date)
        elif status == PaymentStatus.FAILED and failure_final:
            _fail(payment, token, result_code)
        elif status == PaymentStatus.FAILED:
            payment_transition(
                payment=payment,
                to_status=PaymentStatus.FAILED,
                source=EventSource.SYSTEM,
                reason="expired unresolved: no callback and no final STK Query answer",
                fields={"result_code": "expired", "result_desc": "expired", "failure_final": False},
            )
        elif status not in (PaymentStatus.INITIATED, PaymentStatus.PENDING):
            raise ValueError(f"PaymentFactory cannot make a {status} payment")
        if created_at is not None:
            Payment.objects.filter(pk=payment.pk).update(created_at=created_at)
        payment.refresh_from_db()
        payment.callback_token = token  # type: ignore[attr-defined]
        return payment

    @classmethod
    def with_token(cls, **kwargs: Any) -> tuple[Payment, str]:
        """The payment and its callback token (the path segment of its callback URL)."""
        payment: Payment = cls.create(**kwargs)
        return payment, payment.callback_token  # type: ignore[attr-defined]


def _succeed(
    payment: Payment,
    token: str,
    receipt: str | None,
    paid_amount: Any,
    transaction_date: datetime | None,
) -> None:
    if receipt is None:  # STK Query says only that it succeeded
        _decide(
            payment,
            Evidence(
                source=EventSource.QUERY,
                succeeded=True,
                result_code="0",
                result_desc=SUCCESS_DESC,
                checkout_request_id=payment.checkout_request_id or "",
            ),
        )
        return
    paid = payment.amount if paid_amount is None else Decimal(paid_amount)
    moment = (transaction_date or timezone.now()).astimezone(EAT)
    _deliver(
        token,
        stk_success_body(
            checkout_request_id=payment.checkout_request_id or "",
            merchant_request_id=payment.merchant_request_id or "",
            amount=str(paid),
            receipt=receipt,
            phone=payment.phone_number,
            transaction_date=moment.strftime("%Y%m%d%H%M%S"),
        ),
    )


def _fail(payment: Payment, token: str, result_code: str) -> None:
    _deliver(
        token,
        stk_failure_body(
            checkout_request_id=payment.checkout_request_id or "",
            merchant_request_id=payment.merchant_request_id or "",
            result_code=result_code,
            result_desc=CANCELLED_DESC if result_code in ("1031", "1032") else "Request failed",
        ),
    )


def _deliver(token: str, body: bytes) -> None:
    """The callback Daraja would send, stored in the inbox and processed by it (its parser,
    its evidence, the payments outcome function), as a worker would."""
    callback = callback_receive(
        body=body, content_type="application/json", headers={}, source_ip=None, token=token
    )
    callback_process(callback_id=callback.pk)
    callback.refresh_from_db()
    if callback.state != CallbackState.PROCESSED:
        raise ValueError(
            f"PaymentFactory: the callback was not applied ({callback.state}: "
            f"{callback.last_error}); with MPESA_VERIFY_SUCCESS on, start from a PENDING payment"
        )


def _decide(payment: Payment, evidence: Evidence) -> None:
    outcome = payment_apply_evidence(payment=payment, evidence=evidence)
    if outcome.verdict != Verdict.APPLIED:
        raise ValueError(
            f"PaymentFactory: the evidence was not applied ({outcome.verdict}: {outcome.detail})"
        )
