"""Batch draining decides exactly as processing one callback at a time does.

The batch writes the common case (a first result for a PENDING payment) for many callbacks at
once and leaves the rest to the one-by-one decisions. Whatever mix of callbacks is stored, the
outcome must be the same as ``callback_process`` run on each in arrival order: the same payment
states and fields, the same events in the same order, the same callback states and reasons.
"""

from __future__ import annotations

import hashlib
import os
import threading
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from django.db import connection, connections, transaction
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from callbacks.models import CallbackState, InboundCallback
from callbacks.services import RetryLater, callback_process, callbacks_drain_batch
from core.models import hash_secret
from payments.models import Payment, PaymentEvent, PaymentStatus
from testsupport import stk_failure_body, stk_success_body
from testsupport.factories import PaymentFactory

pytestmark = pytest.mark.django_db

BATCH_FUZZ = settings(
    max_examples=int(os.environ.get("FUZZ_MAX_EXAMPLES") or 100),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

# The payments every example starts from: (name, amount, status, has a CheckoutRequestID).
WORLD = [
    ("pending_a", "10.00", PaymentStatus.PENDING, True),
    ("pending_b", "20.00", PaymentStatus.PENDING, True),
    ("pending_big", "1500.00", PaymentStatus.PENDING, True),
    ("initiating", "10.00", PaymentStatus.INITIATED, False),  # its push may still be in flight
    (
        "lost_answer",
        "10.00",
        PaymentStatus.INITIATED,
        False,
    ),  # initiation_unknown: adopts the callback's id
    ("success", "10.00", PaymentStatus.SUCCESS, True),
    ("failed_final", "10.00", PaymentStatus.FAILED, True),
    (
        "expired",
        "10.00",
        PaymentStatus.FAILED,
        True,
    ),  # FAILED because we stopped waiting: not final
]
NAMES = [name for name, *_ in WORLD]
RECEIPTS = ["UKR1BATCH1", "UKR1BATCH2", "UKR1BATCH3", "UKR1HELD00"]  # HELD: "success" has it

HELD_AT = datetime(2026, 12, 5, 7, 0, tzinfo=UTC)


def _checkout(name: str) -> str:
    return f"ws_CO_BATCH_{name}"


@st.composite
def callbacks(draw: st.DrawFn) -> dict[str, Any]:
    target = draw(st.sampled_from(NAMES))
    return {
        # Mostly what Daraja sends (the payment's own token and CheckoutRequestID, its amount),
        # with every kind of mismatch mixed in.
        "token": draw(st.sampled_from([*[target] * 8, "none", "unknown"])),
        "checkout": draw(st.sampled_from([*[target] * 8, *NAMES])),
        "result": draw(st.sampled_from(["success"] * 5 + ["failure"] * 3 + ["invalid"])),
        "amount": draw(st.sampled_from(["own"] * 5 + ["1.00"])),
        "receipt": draw(st.sampled_from(RECEIPTS)),
        "code": draw(st.sampled_from([1032, 1037, "SFC_IC0003"])),
        "target": target,
    }


def _build(spec: list[dict[str, Any]]) -> tuple[dict[str, Payment], list[InboundCallback]]:
    payments: dict[str, Payment] = {}
    tokens: dict[str, str] = {}
    for name, amount, status, _has_checkout in WORLD:
        # Every payment not INITIATED had its push accepted (has_checkout); each build of the
        # world is the same, so two builds compare field for field.
        payment, token = PaymentFactory.with_token(
            amount=amount,
            status=status,
            checkout_request_id=_checkout(name),
            merchant_request_id="m",
            transaction_date=HELD_AT,
            receipt="UKR1HELD00",
            result_code="1",
            failure_final=name != "expired",
        )
        payments[name], tokens[name] = payment, token
    Payment.objects.filter(pk=payments["lost_answer"].pk).update(initiation_unknown=True)
    stored = []
    for item in spec:
        target = payments[item["target"]]
        checkout = _checkout(item["checkout"])
        if item["result"] == "success":
            amount = str(target.amount) if item["amount"] == "own" else item["amount"]
            body = stk_success_body(
                checkout_request_id=checkout, amount=amount, receipt=item["receipt"]
            )
        elif item["result"] == "failure":
            body = stk_failure_body(checkout_request_id=checkout, result_code=item["code"])
        else:
            body = b'{"Body": {"stkCallback": {"CheckoutRequestID": 5}}}'
        token = {"none": "", "unknown": "U" * 43, **tokens}[item["token"]]
        stored.append(
            InboundCallback.objects.create(
                body=body,
                content_type="application/json",
                token_hash=hash_secret(token) if token else "",
                dedupe_key=hashlib.sha256(body).hexdigest(),
            )
        )
    return payments, stored


def _outcome(payments: dict[str, Payment], stored: list[InboundCallback]) -> dict[str, Any]:
    """Everything processing decides, with database ids replaced by positions."""
    index = {callback.pk: n for n, callback in enumerate(stored)}
    names = {payment.pk: name for name, payment in payments.items()}

    def evidence(value: dict[str, Any]) -> dict[str, Any]:
        if "callback_id" in value:
            value = {**value, "callback_id": index.get(value["callback_id"], "earlier")}
        return value

    result: dict[str, Any] = {}
    for name, payment in payments.items():
        row = Payment.objects.get(pk=payment.pk)
        result[name] = (
            row.status,
            row.mpesa_receipt_number,
            row.checkout_request_id,
            row.result_code,
            row.result_desc,
            row.paid_amount,
            row.payer_phone,
            row.transaction_date,
            row.failure_final,
            row.needs_review,
            [
                (
                    e.kind,
                    e.from_status,
                    e.to_status,
                    e.source,
                    e.reason,
                    evidence(e.evidence),
                    index.get(e.callback_id) if e.callback_id else None,
                )
                for e in PaymentEvent.objects.filter(payment=payment).order_by("id")
            ],
        )
    result["callbacks"] = [
        (
            row.state,
            row.last_error,
            row.attempts,
            names.get(row.payment_id),
            row.checkout_request_id,
        )
        for row in InboundCallback.objects.filter(pk__in=index).order_by("id")
    ]
    return result


class _Rollback(Exception):
    def __init__(self, outcome: dict[str, Any]) -> None:
        self.outcome = outcome


def _run(spec: list[dict[str, Any]], process: Any) -> dict[str, Any]:
    """Build the world, process it, read the outcome, and roll everything back."""
    try:
        with transaction.atomic():
            payments, stored = _build(spec)
            process(stored)
            raise _Rollback(_outcome(payments, stored))
    except _Rollback as done:
        return done.outcome


def _one_by_one(stored: list[InboundCallback]) -> None:
    for callback in stored:
        try:
            callback_process(callback_id=callback.pk)
        except RetryLater:
            pass


def _drained(batch_size: int) -> Any:
    def process(stored: list[InboundCallback]) -> None:
        while callbacks_drain_batch(batch_size=batch_size).processed:
            pass

    return process


@pytest.fixture
def pinned(settings: Any) -> Any:
    settings.MPESA_VERIFY_SUCCESS = "above"
    settings.MPESA_VERIFY_ABOVE = Decimal("1000")  # pending_big waits for verification
    settings.CALLBACK_ORPHAN_RETRY_DELAY = 3600  # a retried callback is not due again here
    return settings


@given(
    spec=st.lists(callbacks(), min_size=1, max_size=25),
    batch_size=st.sampled_from([1, 3, 200]),
)
@BATCH_FUZZ
def test_a_batch_decides_exactly_as_one_callback_at_a_time(pinned, spec, batch_size):
    assert _run(spec, _drained(batch_size)) == _run(spec, _one_by_one)


def test_a_typical_burst_is_written_together_and_decided_as_one_by_one(pinned):
    """The common case, spelled out: first results for PENDING payments, with duplicates and a
    receipt two callbacks claim, in one batch."""
    spec = [
        {"target": "pending_a", "token": "pending_a", "checkout": "pending_a", "result": "success",
         "amount": "own", "receipt": "UKR1BATCH1", "code": 1032},
        {"target": "pending_b", "token": "pending_b", "checkout": "pending_b", "result": "failure",
         "amount": "own", "receipt": "UKR1BATCH2", "code": 1032},
        # The same success again: a duplicate, decided after the first is written.
        {"target": "pending_a", "token": "pending_a", "checkout": "pending_a", "result": "success",
         "amount": "own", "receipt": "UKR1BATCH1", "code": 1032},
        # A receipt already credited to another payment: kept for review, not credited.
        {"target": "expired", "token": "expired", "checkout": "expired", "result": "success",
         "amount": "own", "receipt": "UKR1HELD00", "code": 1032},
    ]  # fmt: skip
    drained = _run(spec, _drained(200))
    assert drained == _run(spec, _one_by_one)
    assert drained["pending_a"][:2] == (PaymentStatus.SUCCESS, "UKR1BATCH1")
    assert drained["pending_b"][0] == PaymentStatus.FAILED and drained["pending_b"][3] == "1032"
    assert (
        drained["expired"][0] == PaymentStatus.FAILED and drained["expired"][9] is True
    )  # needs review
    assert [state for state, *_ in drained["callbacks"]] == [
        CallbackState.PROCESSED,
        CallbackState.PROCESSED,
        CallbackState.DUPLICATE,
        CallbackState.REVIEW,
    ]


@pytest.mark.services
@pytest.mark.django_db(transaction=True)
def test_a_receipt_credited_by_another_worker_meanwhile_is_kept_for_review(pinned, monkeypatch):
    """Between the batch's receipt check and its write, another transaction commits the same
    receipt on another payment: the batch's write fails on the unique receipt, and each of
    its callbacks is decided on its own (the one with the taken receipt goes to review)."""
    from payments import services

    spec = [
        {"target": name, "token": name, "checkout": name, "result": "success", "amount": "own",
         "receipt": receipt, "code": 0}
        for name, receipt in [("pending_a", "UKR1BATCH1"), ("pending_b", "UKR1BATCH2")]
    ]  # fmt: skip
    payments, stored = _build(spec)
    other = payments["expired"]
    real = services.payment_transition_many

    def credit_elsewhere_first(requests):
        def other_worker():
            try:
                Payment.objects.filter(pk=other.pk).update(mpesa_receipt_number="UKR1BATCH2")
            finally:
                connections.close_all()

        thread = threading.Thread(target=other_worker)
        thread.start()
        thread.join()
        return real(requests)

    monkeypatch.setattr(services, "payment_transition_many", credit_elsewhere_first)
    assert connection.vendor == "postgresql"
    assert callbacks_drain_batch().processed == 2
    states = dict(
        InboundCallback.objects.filter(pk__in=[c.pk for c in stored]).values_list("pk", "state")
    )
    assert [states[c.pk] for c in stored] == [CallbackState.PROCESSED, CallbackState.REVIEW]
    a, b = (Payment.objects.get(pk=payments[n].pk) for n in ("pending_a", "pending_b"))
    assert (a.status, a.mpesa_receipt_number) == (PaymentStatus.SUCCESS, "UKR1BATCH1")
    assert (b.status, b.mpesa_receipt_number, b.needs_review) == (PaymentStatus.PENDING, None, True)
