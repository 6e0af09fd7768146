"""Reconciliation writes after an import: move the payments a statement proves paid to SUCCESS,
and resolve breaks with a reason, audited (statement imports are in
:mod:`reconciliation.imports`; the credit step both take is in :mod:`reconciliation.credit`).

Payments change status only through :func:`payments.outcomes.payment_apply_evidence` (source
``reconciliation``, the statement line as evidence): automatically when a PENDING or FAILED
payment's receipt is on the statement with the same amount, by a person otherwise; always
only with a line consistent with the payment
(:func:`reconciliation.credit.line_credit_problems`), and for a payment M-Pesa failed only
once a second person approves (:func:`break_approve`).
"""

from __future__ import annotations

import logging
import uuid

from django.db import transaction
from django.utils import timezone

from core.logging import ctx
from core.models import ApiClient
from payments.models import EventKind, EventSource, PaymentEvent
from payments.services import (
    payment_record_event,
)

from .credit import (
    PERMANENT_REFUSALS,
    SYSTEM_ACTOR,
    Approval,
    BreakAction,
    BreakResolutionError,
    break_close,
    credit_line,
    statement_credit_event,
)
from .models import (
    ApprovalStatus,
    Break,
    BreakEvent,
    BreakStatus,
    CreditApproval,
    ReconciliationRun,
    Resolution,
    ResultClass,
)

logger = logging.getLogger(__name__)


def break_resolve(
    *,
    break_id: int,
    action: str,
    actor: str,
    reason: str,
    payment_id: uuid.UUID | None = None,
    client: ApiClient | None = None,
    system: bool = False,
    actor_key: str = "",
) -> Break:
    """Resolve an open break, with a reason, on the record.

    ``accept``: any break; nothing changes but the break (a credit waiting for approval is
    cancelled). ``match``: a line-side break (paid in the statement but PENDING/FAILED with
    us, ambiguous, or unknown) is paired with a payment (its own for ``not_success``, else
    ``payment_id``); a payment that is not SUCCESS moves to SUCCESS through the transition
    function with the line as evidence. The line must be consistent with the payment (amount,
    payer, completed after the payment was created). A payment whose failure M-Pesa gave
    does not move: the credit waits for a second person (:func:`break_approve`) and the break
    stays open with a pending :class:`CreditApproval`; ``actor_key`` says who asked.
    ``client`` limits the breaks and payments to one API client's.
    """
    reason = reason.strip()
    if not reason:
        raise BreakResolutionError("reason_required", "A reason is required.")
    if action not in (BreakAction.MATCH, BreakAction.ACCEPT):
        raise BreakResolutionError("invalid_action", "action must be 'match' or 'accept'.")
    with transaction.atomic():
        brk = _locked_break(break_id, client)
        if brk.status != BreakStatus.OPEN:
            raise BreakResolutionError("already_resolved", "This break is already resolved.")
        pending = _pending_approval(brk)
        if action == BreakAction.ACCEPT:
            if pending is not None:
                _decide(pending, ApprovalStatus.CANCELLED, actor, actor_key, reason)
                payment_record_event(
                    payment=pending.payment,
                    kind=EventKind.NOTE,
                    source=EventSource.RECONCILIATION,
                    actor=actor,
                    reason=f"the credit asked for by {pending.requested_by} was cancelled: the "
                    f"break was accepted instead ({reason})",
                    evidence={"approval_id": pending.pk, "break_id": brk.pk},
                )
            return break_close(brk, Resolution.ACCEPTED, actor, reason, {}, payment=None)
        if pending is not None:
            raise BreakResolutionError(
                "approval_pending",
                f"A credit of this line, asked for by {pending.requested_by}, is waiting for a "
                "second person's approval: approve it (POST …/approve/) or accept the break.",
            )
        return credit_line(
            brk,
            actor=actor,
            actor_key=actor_key,
            reason=reason,
            payment_id=payment_id,
            system=system,
        )


def break_approve(
    *,
    break_id: int,
    actor: str,
    actor_key: str,
    reason: str,
    client: ApiClient | None = None,
) -> Break:
    """A second person approves the credit waiting on an open break: the line is checked
    against the payment again, and the payment moves to SUCCESS through the transition
    function with both people on the record (the event's evidence, the break and its events,
    the approval). The person (API key or staff user, by ``actor_key``) who asked for it
    cannot approve it."""
    reason = reason.strip()
    if not reason:
        raise BreakResolutionError("reason_required", "A reason is required.")
    if not actor_key:
        raise BreakResolutionError("actor_required", "An approval needs to know who approves.")
    with transaction.atomic():
        brk = _locked_break(break_id, client)
        if brk.status != BreakStatus.OPEN:
            return _countersign(brk, actor=actor, actor_key=actor_key, reason=reason)
        pending = _pending_approval(brk)
        if pending is None:
            raise BreakResolutionError(
                "nothing_to_approve", "No credit of this break is waiting for approval."
            )
        if pending.requested_by_key == actor_key:
            raise BreakResolutionError(
                "self_approval",
                "You asked for this credit: a second person (another API client with the "
                "reconciliation scope, or a staff user in the admin) must approve it.",
            )
        approval = Approval(record=pending, actor=actor, actor_key=actor_key, reason=reason)
        closed = credit_line(
            brk,
            actor=actor,
            actor_key=actor_key,
            reason=pending.reason,
            payment_id=pending.payment_id,
            system=False,
            approval=approval,
        )
        _decide(pending, ApprovalStatus.APPROVED, actor, actor_key, reason)
    return closed


def _countersign(brk: Break, *, actor: str, actor_key: str, reason: str) -> Break:
    """A second person confirms a credit already made on a statement line alone (the
    automatic one, or a person's credit of a payment that was PENDING or expired): recorded on
    the payment's trail as the approval of that credit, which ``check_invariants --settled``
    then counts as confirmed."""
    event = None
    if brk.resolution == Resolution.CREDITED and brk.resolved_payment_id is not None:
        event = statement_credit_event(brk.resolved_payment_id, brk.pk)
    if event is None:
        raise BreakResolutionError(
            "nothing_to_approve",
            "This break is resolved and moved no payment on a statement line: nothing to approve.",
        )
    if (
        "approval" in event.evidence
        or PaymentEvent.objects.filter(
            payment_id=event.payment_id, kind=EventKind.NOTE, evidence__approves_event=event.pk
        ).exists()
    ):
        raise BreakResolutionError(
            "nothing_to_approve", "This credit was already approved by a second person."
        )
    credited_by_key = str(event.evidence.get("actor_key", ""))
    if credited_by_key == actor_key:
        raise BreakResolutionError(
            "self_approval",
            "You made this credit: a second person (another API client with the "
            "reconciliation scope, or a staff user in the admin) must approve it.",
        )
    now = timezone.now()
    approval = {
        "requested_by": event.actor,
        "requested_by_key": credited_by_key,
        "requested_at": event.created_at.isoformat(),
        "request_reason": event.reason,
        "approved_by": actor,
        "approved_by_key": actor_key,
        "approved_at": now.isoformat(),
        "approval_reason": reason,
    }
    assert brk.resolved_payment is not None
    payment_record_event(
        payment=brk.resolved_payment,
        kind=EventKind.NOTE,
        source=EventSource.RECONCILIATION,
        actor=actor,
        reason=f"credit on statement line {event.evidence.get('receipt_number', '')} (by "
        f"{event.actor or SYSTEM_ACTOR}) approved by a second person: {reason}",
        evidence={"approves_event": event.pk, "break_id": brk.pk, "approval": approval},
    )
    BreakEvent.objects.create(
        break_record=brk,
        action="approved",
        actor=actor[:150],
        reason=reason,
        evidence={"approves_event": event.pk, "approval": approval},
    )
    return brk


def _locked_break(break_id: int, client: ApiClient | None) -> Break:
    query = Break.objects.select_for_update(of=("self",)).select_related("run", "line")
    if client is not None:
        query = query.filter(run__client=client)
    brk = query.filter(pk=break_id).first()
    if brk is None:
        raise BreakResolutionError("not_found", "No such break.")
    return brk


def _pending_approval(brk: Break) -> CreditApproval | None:
    return (
        CreditApproval.objects.select_for_update()
        .filter(break_record=brk, status=ApprovalStatus.PENDING)
        .first()
    )


def _decide(approval: CreditApproval, status: str, actor: str, actor_key: str, reason: str) -> None:
    now = timezone.now()
    CreditApproval.objects.filter(pk=approval.pk, status=ApprovalStatus.PENDING).update(
        status=status,
        decided_by=actor[:150],
        decided_by_key=actor_key[:64],
        decision_reason=reason,
        decided_at=now,
    )
    approval.status = status
    approval.decided_by = actor[:150]
    approval.decided_by_key = actor_key[:64]
    approval.decision_reason = reason
    approval.decided_at = now


def run_auto_resolve(*, run: ReconciliationRun) -> int:
    """Move to SUCCESS the PENDING/FAILED payments whose receipt is on the statement with the
    same amount (exact matches only), under the rules a person's credit follows (same payer,
    completed after the payment was created) and never a payment whose failure M-Pesa gave.
    Safe to run again: resolved breaks are skipped, refusals are on the break's record."""
    pending = list(
        Break.objects.filter(
            run=run, status=BreakStatus.OPEN, auto_resolvable=True, kind=ResultClass.NOT_SUCCESS
        ).values_list("pk", flat=True)
    )
    resolved = 0
    for break_id in pending:
        try:
            break_resolve(
                break_id=break_id,
                action=BreakAction.MATCH,
                actor=SYSTEM_ACTOR,
                reason="the statement shows this receipt paid with the same amount",
                system=True,
            )
        except BreakResolutionError as exc:
            if exc.code == "already_resolved":
                continue
            if exc.code in PERMANENT_REFUSALS:
                # Not for a machine to retry: the re-drive leaves it to a person.
                Break.objects.filter(pk=break_id).update(auto_resolvable=False)
            BreakEvent.objects.create(
                break_record_id=break_id,
                action="auto_resolve_failed",
                actor=SYSTEM_ACTOR,
                reason=exc.message,
            )
            logger.warning(
                "automatic resolution refused", extra=ctx(break_id=break_id, reason=exc.message)
            )
            continue
        resolved += 1
    if resolved:
        ReconciliationRun.objects.filter(pk=run.pk).update(
            summary={**run.summary, "auto_resolved": resolved}
        )
        run.summary = {**run.summary, "auto_resolved": resolved}
    return resolved
