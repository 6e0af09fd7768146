"""Payment outcomes: the one place that decides what a result does to a payment.

Whichever app received it — the callback inbox, the STK Query sweeper, verify-by-query,
reconciliation's statement lines (later C2B confirmations and payout results) — a result
reaches the payment as :class:`Evidence`, plain data, and :func:`payment_apply_evidence`
decides and records the outcome: the transition, the review flag, a late success after
FAILED, the receipt attached to a SUCCESS that had none, with the audit event. The caller
gets a :class:`Verdict` and maps it to its own state (the inbox to a callback state).

The rules, in one place:

- SUCCESS never moves back: a failure after SUCCESS changes nothing.
- Evidence the payment already reflects (the same outcome again) changes nothing.
- A success for an amount other than the payment's is kept for review, never credited.
- A success after FAILED credits the payment (money M-Pesa took never stays FAILED), unless
  M-Pesa itself gave the failure: then a person decides (review, or a second person's
  approval of a statement credit).
- A success whose receipt another payment holds is kept for review.
- Whether a failure is final comes from the result-code catalogue in ``daraja.errors``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from daraja.errors import result_is_final_failure

from .models import EventSource, Payment, PaymentStatus
from .services.transitions import (
    InvalidTransition,
    TransitionRequest,
    payment_attach_receipt,
    payment_failure_is_final,
    payment_flag,
    payment_transition,
)

logger = logging.getLogger(__name__)


class Verdict(StrEnum):
    """What a piece of evidence did to the payment."""

    APPLIED = "applied"  # the payment changed: a transition, or a receipt attached
    DUPLICATE = "duplicate"  # the payment already had this outcome: nothing changed
    IGNORED = "ignored"  # a failure after SUCCESS: SUCCESS never moves back
    REVIEW = "review"  # kept for a person (amount, receipt, final failure): flagged
    UNCONFIRMED = "unconfirmed"  # a success to confirm with STK Query before crediting
    TOO_EARLY = "too_early"  # the payment is still initiating: offer the evidence again later


class Problem(StrEnum):
    """Why evidence was kept for review (stable codes a caller may act on)."""

    AMOUNT_MISMATCH = "amount_mismatch"
    RECEIPT_TAKEN = "receipt_taken"
    CHECKOUT_TAKEN = "checkout_taken"
    FINAL_FAILURE = "final_failure"
    DIFFERENT_SUCCESS = "different_success"


# How an event names the evidence behind it.
_SOURCE_NAMES: dict[str, str] = {
    EventSource.CALLBACK: "callback",
    EventSource.QUERY: "STK Query",
    EventSource.RECONCILIATION: "statement line",
}


@dataclass(frozen=True)
class Evidence:
    """A result about one payment, as plain data.

    ``succeeded``: the result says the customer paid. ``result_code``/``result_desc``:
    Daraja's, when the evidence carries one (a statement line does not). ``amount``,
    ``receipt_number``, ``transaction_date``, ``phone_number``: what the evidence says was
    paid; None when it does not say (STK Query carries no amount or receipt).
    ``checkout_request_id``: Daraja's id, when the evidence carries one; a payment that has
    none yet (its push's answer was lost) adopts it. ``verified``: False for a success that
    MPESA_VERIFY_SUCCESS wants confirmed by STK Query first (an unconfirmed callback).
    ``record``: the facts written on the audit event. ``reason``: the transition event's
    reason (default: Daraja's description, or "late success after FAILED"); ``note``: the
    reason when the evidence only attaches a receipt. ``approved``: a second person approved
    crediting a payment whose failure M-Pesa gave. ``callback_id``: the stored request behind
    the evidence, linked on the events.
    """

    source: str
    succeeded: bool
    result_code: str | None = None
    result_desc: str = ""
    checkout_request_id: str = ""
    merchant_request_id: str = ""
    receipt_number: str | None = None
    amount: Decimal | None = None
    transaction_date: datetime | None = None
    phone_number: str | None = None
    verified: bool = True
    record: dict[str, Any] = field(default_factory=dict)
    reason: str = ""
    note: str = ""
    actor: str = ""
    approved: bool = False
    callback_id: int | None = None

    @property
    def source_name(self) -> str:
        return _SOURCE_NAMES.get(self.source, str(self.source))


@dataclass(frozen=True)
class Decision:
    """What :func:`payment_decide` found, before anything is written. ``transition`` is set
    for a status change (APPLIED), ``attach_receipt`` for a receipt attached to a SUCCESS
    payment (APPLIED), ``problem`` for a review."""

    verdict: Verdict
    detail: str = ""
    transition: TransitionRequest | None = None
    attach_receipt: bool = False
    problem: str = ""
    record: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Outcome:
    """What :func:`payment_apply_evidence` did."""

    verdict: Verdict
    detail: str = ""
    problem: str = ""
    to_status: str = ""  # the payment's status after a transition, else ""


def needs_verification(payment: Payment) -> bool:
    """MPESA_VERIFY_SUCCESS: does a success for this payment need STK Query's confirmation?"""
    mode = settings.MPESA_VERIFY_SUCCESS
    return mode == "always" or (mode == "above" and payment.amount > settings.MPESA_VERIFY_ABOVE)


def initiation_may_be_in_flight(payment: Payment) -> bool:
    """The web request that made this payment may still be waiting for Daraja's answer."""
    if payment.initiation_unknown:
        return False
    window = settings.MPESA_CONNECT_TIMEOUT + settings.MPESA_READ_TIMEOUT + 5
    return timezone.now() - payment.created_at < timedelta(seconds=window)


def payment_decide(*, payment: Payment, evidence: Evidence) -> Decision:
    """Decide what ``evidence`` does to ``payment`` as it stands, writing nothing. The caller
    holds the payment's row lock when it means to act on the decision."""
    record = dict(evidence.record)
    ids: dict[str, Any] = {}
    if evidence.checkout_request_id and payment.checkout_request_id is None:
        if payment.status == PaymentStatus.INITIATED and initiation_may_be_in_flight(payment):
            return Decision(
                Verdict.TOO_EARLY, "payment has no CheckoutRequestID yet (still initiating)"
            )
        # The push's answer was lost (timeout) or never awaited: the caller vouches that the
        # evidence is this payment's (the callback's token), so adopt Daraja's id from it.
        ids = {
            "checkout_request_id": evidence.checkout_request_id,
            "merchant_request_id": evidence.merchant_request_id,
        }
        record["adopted_checkout_request_id"] = True
    elif (
        evidence.checkout_request_id and evidence.checkout_request_id != payment.checkout_request_id
    ):
        raise ValueError("the evidence is for another CheckoutRequestID than the payment's")

    if payment.status == PaymentStatus.SUCCESS:
        return _decide_after_success(payment, evidence, record)
    if payment.status == PaymentStatus.FAILED:
        if not evidence.succeeded:
            return Decision(Verdict.DUPLICATE, "payment already FAILED", record=record)
        if payment_failure_is_final(payment) and not evidence.approved:
            return Decision(
                Verdict.REVIEW,
                f"success {evidence.source_name} for a payment FAILED with result "
                f"{payment.result_code}",
                problem=Problem.FINAL_FAILURE,
                record=record,
            )
        # Late success after we stopped waiting: money M-Pesa took never stays FAILED.
        late = f"late success after FAILED ({payment.result_desc or payment.result_code})"
        return _decide_credit(payment, evidence, record, ids, evidence.reason or late)
    # INITIATED or PENDING: the evidence decides the outcome.
    if not evidence.succeeded:
        code = evidence.result_code or ""
        fields = {
            **ids,
            "result_code": code,
            "result_desc": evidence.result_desc,
            "failure_final": result_is_final_failure(code),
        }
        reason = evidence.reason or evidence.result_desc or f"result code {code}"
        return Decision(
            Verdict.APPLIED,
            transition=_request(payment, PaymentStatus.FAILED, evidence, record, reason, fields),
            record=record,
        )
    return _decide_credit(payment, evidence, record, ids, evidence.reason or evidence.result_desc)


def _decide_after_success(payment: Payment, evidence: Evidence, record: dict[str, Any]) -> Decision:
    if not evidence.succeeded:
        return Decision(
            Verdict.IGNORED,
            f"failure {evidence.result_code} after SUCCESS; SUCCESS never moves back",
            record=record,
        )
    if evidence.receipt_number is None or evidence.receipt_number == payment.mpesa_receipt_number:
        return Decision(Verdict.DUPLICATE, "payment already SUCCESS", record=record)
    if payment.mpesa_receipt_number is None and evidence.amount in (None, payment.amount):
        return Decision(Verdict.APPLIED, "receipt attached", attach_receipt=True, record=record)
    return Decision(
        Verdict.REVIEW,
        f"a second, different success {evidence.source_name}",
        problem=Problem.DIFFERENT_SUCCESS,
        record=record,
    )


def _decide_credit(
    payment: Payment,
    evidence: Evidence,
    record: dict[str, Any],
    ids: dict[str, Any],
    reason: str,
) -> Decision:
    if evidence.amount is not None and evidence.amount != payment.amount:
        return Decision(
            Verdict.REVIEW,
            f"amount mismatch: {evidence.source_name} says {evidence.amount}, payment is "
            f"{payment.amount}",
            problem=Problem.AMOUNT_MISMATCH,
            record=record,
        )
    if not evidence.verified and needs_verification(payment):
        return Decision(
            Verdict.UNCONFIRMED,
            "confirming the success with STK Query before crediting",
            record=record,
        )
    fields: dict[str, Any] = dict(ids)
    if evidence.result_code is not None:
        fields["result_code"] = evidence.result_code
        fields["result_desc"] = evidence.result_desc
    if evidence.receipt_number is not None and payment.mpesa_receipt_number is None:
        fields["mpesa_receipt_number"] = evidence.receipt_number
    if evidence.receipt_number is not None or evidence.transaction_date is not None:
        fields["transaction_date"] = evidence.transaction_date
    if evidence.amount is not None:
        fields["paid_amount"] = evidence.amount
    if evidence.phone_number is not None:
        fields["payer_phone"] = evidence.phone_number
    return Decision(
        Verdict.APPLIED,
        transition=_request(payment, PaymentStatus.SUCCESS, evidence, record, reason, fields),
        record=record,
    )


def _request(
    payment: Payment,
    to_status: str,
    evidence: Evidence,
    record: dict[str, Any],
    reason: str,
    fields: dict[str, Any],
) -> TransitionRequest:
    return TransitionRequest(
        payment=payment,
        to_status=to_status,
        source=evidence.source,
        reason=reason,
        evidence=record,
        callback_id=evidence.callback_id,
        fields=fields,
    )


def payment_apply_evidence(
    *, payment: Payment, evidence: Evidence, locked: bool = False
) -> Outcome:
    """Decide what ``evidence`` does to ``payment`` and record it, atomically.

    ``locked=True``: the caller holds the payment's row lock in its transaction and
    ``payment`` is current (the callback drain locks a batch's payments at once); otherwise
    the row is re-read under a lock here. Raises InvalidTransition if the row changed under
    a caller that did not lock it (decide again)."""
    if not locked:
        with transaction.atomic():
            current = Payment.objects.select_for_update().get(pk=payment.pk)
            outcome = payment_apply_evidence(payment=current, evidence=evidence, locked=True)
        for name in ("status", "mpesa_receipt_number", "needs_review", "result_code"):
            setattr(payment, name, getattr(current, name))
        return outcome
    decision = payment_decide(payment=payment, evidence=evidence)
    if decision.verdict == Verdict.REVIEW:
        return _review(payment, evidence, decision.record, decision.detail, decision.problem)
    if decision.attach_receipt:
        assert evidence.receipt_number is not None
        try:
            with transaction.atomic():
                payment_attach_receipt(
                    payment=payment,
                    receipt_number=evidence.receipt_number,
                    evidence=decision.record,
                    callback_id=evidence.callback_id,
                    source=evidence.source,
                    actor=evidence.actor,
                    reason=evidence.note,
                )
        except IntegrityError:
            return _review(
                payment,
                evidence,
                decision.record,
                _receipt_taken(evidence),
                Problem.RECEIPT_TAKEN,
            )
        return Outcome(Verdict.APPLIED, decision.detail)
    request = decision.transition
    if request is None:
        return Outcome(decision.verdict, decision.detail, decision.problem)
    try:
        with transaction.atomic():
            payment_transition(
                payment=payment,
                to_status=request.to_status,
                source=request.source,
                actor=evidence.actor,
                reason=request.reason,
                evidence=request.evidence,
                callback_id=request.callback_id,
                fields=request.fields,
                locked=True,
            )
    except InvalidTransition:
        # The row changed under us (only possible without a lock, e.g. SQLite): decide again.
        payment.refresh_from_db()
        raise
    except IntegrityError:
        # The unique receipt (or adopted CheckoutRequestID) belongs to another payment.
        if request.to_status == PaymentStatus.FAILED:
            detail = f"CheckoutRequestID {evidence.checkout_request_id} belongs to another payment"
            return _review(payment, evidence, decision.record, detail, Problem.CHECKOUT_TAKEN)
        return _review(
            payment, evidence, decision.record, _receipt_taken(evidence), Problem.RECEIPT_TAKEN
        )
    payment.status = request.to_status
    return Outcome(Verdict.APPLIED, decision.detail, to_status=request.to_status)


def _review(
    payment: Payment, evidence: Evidence, record: dict[str, Any], reason: str, problem: str
) -> Outcome:
    payment_flag(
        payment=payment,
        source=evidence.source,
        reason=reason,
        evidence=record,
        callback_id=evidence.callback_id,
        actor=evidence.actor,
    )
    return Outcome(Verdict.REVIEW, reason, problem)


def _receipt_taken(evidence: Evidence) -> str:
    if evidence.checkout_request_id:
        return (
            f"receipt {evidence.receipt_number} (or CheckoutRequestID "
            f"{evidence.checkout_request_id}) already credited to another payment"
        )
    return f"receipt {evidence.receipt_number} already credited to another payment"
