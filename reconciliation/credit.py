"""Crediting a payment on a statement line: the one step both a person's resolution and the
automatic one take (:mod:`reconciliation.services`). The line must fit the payment
(:func:`line_credit_problems`); the payment's outcome is decided by
:func:`payments.outcomes.payment_apply_evidence` (source ``reconciliation``, the line as
evidence); a payment M-Pesa failed waits for a second person (a :class:`CreditApproval`).
"""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from core.logging import ctx
from core.models import ApiClient
from payments.models import EventKind, EventSource, Payment, PaymentEvent, PaymentStatus
from payments.outcomes import Evidence, Problem, Verdict, payment_apply_evidence
from payments.services import (
    InvalidTransition,
    payment_failure_is_final,
    payment_record_event,
)

from .events import emit_break_resolved
from .matching import payer_consistent, payer_mask
from .models import (
    LINE_ID_FACTOR,
    Break,
    BreakEvent,
    BreakStatus,
    CreditApproval,
    LineMatch,
    MatchMethod,
    Resolution,
    ResultClass,
    StatementLine,
)

logger = logging.getLogger(__name__)

SYSTEM_ACTOR = "reconciliation"


def clock_skew() -> dt.timedelta:
    return dt.timedelta(seconds=settings.RECONCILIATION_CREDIT_CLOCK_SKEW_SECONDS)


class BreakResolutionError(Exception):
    """The resolution asked for is not possible; the message says why (and the code is stable)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class BreakAction:
    MATCH = "match"  # pair the line with a payment; a PENDING/FAILED payment moves to SUCCESS
    ACCEPT = "accept"  # explained, nothing to change


MATCHABLE = frozenset({ResultClass.NOT_SUCCESS, ResultClass.AMBIGUOUS, ResultClass.UNKNOWN_PAYMENT})
# Refusals of the automatic resolution that no retry can change.
PERMANENT_REFUSALS = frozenset({"inconsistent_line", "final_failure"})


def client_actor_key(client: ApiClient) -> str:
    """Who an API key is, for the second-person rule."""
    return f"client:{client.pk}"


def user_actor_key(user_pk: Any) -> str:
    """Who a staff user is, for the second-person rule."""
    return f"user:{user_pk}"


@dataclass(frozen=True)
class Approval:
    """The second person's decision on a pending credit (see :func:`break_approve`)."""

    record: CreditApproval
    actor: str
    actor_key: str
    reason: str

    def evidence(self) -> dict[str, Any]:
        return {
            "approval_id": self.record.pk,
            "requested_by": self.record.requested_by,
            "requested_by_key": self.record.requested_by_key,
            "requested_at": self.record.requested_at.isoformat(),
            "request_reason": self.record.reason,
            "approved_by": self.actor,
            "approved_by_key": self.actor_key,
            "approval_reason": self.reason,
        }


def _line_evidence(line: StatementLine, match: LineMatch, brk: Break) -> dict[str, Any]:
    return {
        "statement_id": line.statement_id,
        "run_id": brk.run_id,
        "break_id": brk.pk,
        "line_no": line.line_no,
        "receipt_number": line.receipt_number,
        "amount": str(match.amount),
        "completed_at": line.completed_at.isoformat(),
        "other_party": line.other_party,
        "account_reference": line.account_reference,
    }


def line_credit_problems(line: StatementLine, amount: Any, payment: Payment) -> list[str]:
    """Why this statement line cannot be this payment's (empty: it can). A line is evidence
    for a payment only if it is the same payer, the same amount, and was completed after the
    payment was created (give or take RECONCILIATION_CREDIT_CLOCK_SKEW_SECONDS): a receipt
    dated before the customer was ever prompted cannot be the answer to that prompt."""
    problems = []
    if amount != payment.amount:
        problems.append(f"the line is {amount} and the payment {payment.amount}")
    earliest = payment.created_at - clock_skew()
    if line.completed_at < earliest:
        problems.append(
            f"the line was completed at {line.completed_at.isoformat()}, before the payment was "
            f"created ({payment.created_at.isoformat()}; {clock_skew().total_seconds():g} s of "
            "clock difference allowed)"
        )
    mask = payer_mask(other_party=line.other_party, details=line.details)
    if mask == "":
        problems.append("the line names no payer's number")
    elif not payer_consistent(mask, payment.phone_number):
        problems.append(f"the line's payer ({mask}) is not the payment's phone number")
    return problems


def statement_credit_event(payment_id: Any, break_id: int) -> PaymentEvent | None:
    """The transition to SUCCESS that resolving this break made, if it did."""
    return (
        PaymentEvent.objects.filter(
            payment_id=payment_id,
            kind=EventKind.TRANSITION,
            to_status=PaymentStatus.SUCCESS,
            source=EventSource.RECONCILIATION,
            evidence__break_id=break_id,
        )
        .order_by("-id")
        .first()
    )


def credit_line(
    brk: Break,
    *,
    actor: str,
    actor_key: str,
    reason: str,
    payment_id: uuid.UUID | None,
    system: bool,
    approval: Approval | None = None,
) -> Break:
    line = brk.line
    if line is None or brk.kind not in MATCHABLE:
        raise BreakResolutionError(
            "not_matchable",
            f"This break ({brk.get_kind_display().lower()}) can only be accepted with a reason.",
        )
    if brk.kind == ResultClass.NOT_SUCCESS:
        if payment_id is not None and payment_id != brk.payment_id:
            raise BreakResolutionError(
                "wrong_payment", "This line already claims a payment; match it to that one."
            )
        payment_id = brk.payment_id
    if payment_id is None:
        raise BreakResolutionError("payment_required", "Say which payment (payment_id).")
    if brk.kind == ResultClass.AMBIGUOUS and not system and str(payment_id) not in brk.candidates:
        raise BreakResolutionError(
            "not_a_candidate", "That payment is not one of this line's candidates."
        )
    scope = Payment.objects.select_for_update()
    if brk.run.client_id is not None:
        scope = scope.filter(client_id=brk.run.client_id)
    payment = scope.filter(pk=payment_id).first()
    if payment is None:
        raise BreakResolutionError("payment_not_found", "No such payment.")
    if payment.mpesa_receipt_number not in (None, line.receipt_number):
        raise BreakResolutionError(
            "receipt_differs",
            f"That payment was paid with receipt {payment.mpesa_receipt_number} and this line "
            f"is receipt {line.receipt_number}: they are not the same payment.",
        )
    match = LineMatch.objects.select_for_update().get(
        line_id=line.pk, statement_id=line.statement_id
    )
    if payment.amount != match.amount:
        raise BreakResolutionError(
            "amount_differs",
            f"The statement line is {match.amount} and the payment {payment.amount}: "
            "accept the break with a reason instead.",
        )
    problems = line_credit_problems(line, match.amount, payment)
    if problems:
        raise BreakResolutionError(
            "inconsistent_line",
            f"Statement line {line.line_no} ({line.receipt_number}) cannot be this payment's: "
            + "; ".join(problems)
            + ".",
        )
    evidence = _line_evidence(line, match, brk)
    if actor_key:
        evidence["actor_key"] = actor_key  # who, for the second-person rule
    if payment.status != PaymentStatus.SUCCESS and payment_failure_is_final(payment):
        failure = f"{payment.result_code or 'refused'} ({payment.result_desc or 'no description'})"
        if system:
            raise BreakResolutionError(
                "final_failure",
                f"The payment FAILED with result {failure}: M-Pesa said it was not paid, so a "
                "statement line alone does not credit it; a person may ask for the credit and "
                "a second person approve it.",
            )
        if approval is None:
            return _request_approval(
                brk,
                payment,
                actor=actor,
                actor_key=actor_key,
                reason=reason,
                evidence={**evidence, "failure": failure},
            )
    if approval is not None:
        evidence = {**evidence, "approval": approval.evidence()}
        # The approval record is the person who asked; the approver makes it happen.
        reason = (
            f"{reason} (asked for by {approval.record.requested_by}; approved by "
            f"{approval.actor}: {approval.reason})"
        )
    with transaction.atomic():
        claimed = next(
            (
                line_id
                for line_id in LineMatch.objects.filter(
                    statement_id=line.statement_id, payment_id=payment.pk
                ).values_list("line_id", flat=True)
                if line_id != line.pk
            ),
            None,
        )
        if claimed is not None:
            raise BreakResolutionError(
                "payment_already_matched",
                f"That payment is already matched to line {claimed % LINE_ID_FACTOR} of this "
                "statement.",
            )
        was_success = payment.status == PaymentStatus.SUCCESS
        matched = f"matched to statement line {line.receipt_number}: {reason}"
        try:
            outcome = payment_apply_evidence(
                payment=payment,
                evidence=Evidence(
                    source=EventSource.RECONCILIATION,
                    succeeded=True,
                    receipt_number=line.receipt_number,
                    amount=match.amount,
                    transaction_date=line.completed_at,
                    record=evidence,
                    reason=f"paid per statement line {line.receipt_number}: {reason}",
                    note=f"receipt {line.receipt_number} from the statement; {matched}",
                    actor=actor,
                    approved=approval is not None,
                ),
                locked=True,
            )
        except InvalidTransition as exc:
            raise BreakResolutionError("invalid_transition", str(exc)) from None
        if outcome.verdict == Verdict.REVIEW:
            if outcome.problem == Problem.RECEIPT_TAKEN:
                raise BreakResolutionError(
                    "receipt_taken",
                    f"Receipt {line.receipt_number} already belongs to another payment.",
                )
            raise BreakResolutionError("invalid_transition", outcome.detail)
        if outcome.verdict == Verdict.DUPLICATE:
            # The payment already says so: the match itself is what goes on its trail.
            payment_record_event(
                payment=payment,
                kind=EventKind.NOTE,
                source=EventSource.RECONCILIATION,
                actor=actor,
                reason=matched,
                evidence=evidence,
            )
        resolution = Resolution.MATCHED if was_success else Resolution.CREDITED
        if match.payment_id != payment.pk:
            LineMatch.objects.filter(line_id=line.pk, statement_id=line.statement_id).update(
                payment=payment, match_method=MatchMethod.MANUAL
            )
        resolved_by = actor
        if approval is not None:
            resolved_by = f"{approval.record.requested_by}, approved by {approval.actor}"
        closed = break_close(brk, resolution, resolved_by, reason, evidence, payment=payment)
        # The payment's own break in this run (an ambiguous SUCCESS payment) is settled too.
        for other in Break.objects.select_for_update().filter(
            run_id=brk.run_id, payment=payment, line=None, status=BreakStatus.OPEN
        ):
            break_close(
                other,
                Resolution.MATCHED,
                resolved_by,
                f"matched to statement line {line.line_no} ({line.receipt_number}): {reason}",
                evidence,
                payment=payment,
            )
    return closed


def _request_approval(
    brk: Break,
    payment: Payment,
    *,
    actor: str,
    actor_key: str,
    reason: str,
    evidence: dict[str, Any],
) -> Break:
    """Record the credit a person asked for, to be approved by a second one; nothing moves."""
    if not actor_key:
        raise BreakResolutionError(
            "approval_needs_identity",
            "Crediting a payment M-Pesa failed needs a second person's approval, and the "
            "request must say who asks for it.",
        )
    try:
        with transaction.atomic():
            approval = CreditApproval.objects.create(
                break_record=brk,
                payment=payment,
                requested_by=actor[:150],
                requested_by_key=actor_key[:64],
                reason=reason,
                evidence=evidence,
            )
    except IntegrityError:
        raise BreakResolutionError(
            "approval_pending", "A credit of this line is already waiting for approval."
        ) from None
    BreakEvent.objects.create(
        break_record=brk,
        action="approval_requested",
        actor=actor[:150],
        reason=reason,
        evidence={**evidence, "payment_id": str(payment.pk), "approval_id": approval.pk},
    )
    payment_record_event(
        payment=payment,
        kind=EventKind.NOTE,
        source=EventSource.RECONCILIATION,
        actor=actor,
        reason=f"credit per statement line {evidence['receipt_number']} asked for, waiting for "
        f"a second person's approval (the payment FAILED with result {evidence['failure']}): "
        f"{reason}",
        evidence={**evidence, "approval_id": approval.pk},
    )
    logger.info(
        "credit waiting for approval",
        extra=ctx(break_id=brk.pk, payment_id=payment.pk, approval_id=approval.pk),
    )
    return brk


def break_close(
    brk: Break,
    resolution: str,
    actor: str,
    reason: str,
    evidence: dict[str, Any],
    *,
    payment: Payment | None,
) -> Break:
    now = timezone.now()
    updated = Break.objects.filter(pk=brk.pk, status=BreakStatus.OPEN).update(
        status=BreakStatus.RESOLVED,
        resolution=resolution,
        resolved_payment=payment,
        resolved_by=actor[:150],
        resolved_at=now,
        resolution_reason=reason,
    )
    if updated != 1:
        raise BreakResolutionError("already_resolved", "This break is already resolved.")
    BreakEvent.objects.create(
        break_record=brk,
        action=f"resolved:{resolution}",
        actor=actor[:150],
        reason=reason,
        evidence={**evidence, "payment_id": str(payment.pk) if payment else None},
    )
    brk.status = BreakStatus.RESOLVED
    brk.resolution = resolution
    brk.resolved_payment = payment
    brk.resolved_by = actor[:150]
    brk.resolved_at = now
    brk.resolution_reason = reason
    emit_break_resolved(brk)
    return brk
