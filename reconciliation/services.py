"""Reconciliation writes: import a statement and reconcile it (one transaction), move the
payments a statement proves paid to SUCCESS, and resolve breaks with a reason, audited.

Payments change status only through :func:`payments.services.payment_transition` (source
``reconciliation``, the statement line as evidence): automatically when a PENDING or FAILED
payment's receipt is on the statement with the same amount, by a person otherwise.
"""

from __future__ import annotations

import hashlib
import logging
import uuid
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from core.logging import ctx
from core.models import ApiClient
from payments.models import EventKind, EventSource, Payment, PaymentStatus
from payments.services import InvalidTransition, payment_record_event, payment_transition

from .engine import Timer, build_summary, run_python
from .models import (
    LINE_ID_FACTOR,
    Break,
    BreakEvent,
    BreakStatus,
    LineMatch,
    MatchMethod,
    ReconciliationRun,
    Resolution,
    ResultClass,
    Statement,
    StatementLine,
)
from .parsers import ParsedStatement, parse_statement

logger = logging.getLogger(__name__)

R = ResultClass
ENGINES = ("postgresql", "python")
SYSTEM_ACTOR = "reconciliation"
DEFAULT_WINDOW_SECONDS = 600


def default_window_seconds() -> int:
    return int(getattr(settings, "RECONCILIATION_MATCH_WINDOW_SECONDS", DEFAULT_WINDOW_SECONDS))


@dataclass(frozen=True)
class ImportResult:
    statement: Statement
    run: ReconciliationRun
    created: bool  # False: the same file was imported before; this is that import


def _already_imported(client: ApiClient | None, checksum: str) -> Statement | None:
    query = Statement.objects.select_related("run").filter(checksum=checksum)
    query = query.filter(client=client) if client is not None else query.filter(client=None)
    return query.first()


def statement_import(
    *,
    data: bytes,
    file_name: str = "",
    client: ApiClient | None = None,
    actor: str = "",
    time_window_seconds: int | None = None,
    auto_resolve: bool = True,
    engine: str | None = None,
) -> ImportResult:
    """Read a statement file, load and match it, and write the run with its breaks and
    summary, in one transaction: a failure leaves nothing behind. The same bytes imported
    again (same SHA-256, same client) return the first import.

    Raises :class:`~reconciliation.parsers.StatementFormatError` for a file that cannot be
    read as a statement at all; unreadable rows are rejects, not errors.
    """
    checksum = hashlib.sha256(data).hexdigest()
    existing = _already_imported(client, checksum)
    if existing is not None:
        return ImportResult(statement=existing, run=existing.run, created=False)
    parsed = parse_statement(data)
    window = default_window_seconds() if time_window_seconds is None else time_window_seconds
    if window < 0:
        raise ValueError("the time window cannot be negative")
    engine = engine or ("postgresql" if connection.vendor == "postgresql" else "python")
    if engine not in ENGINES or (engine == "postgresql" and connection.vendor != "postgresql"):
        raise ValueError(f"engine {engine!r} is not available on {connection.vendor}")
    timer = Timer()
    started = timezone.now()
    with transaction.atomic():
        try:
            with transaction.atomic():
                statement = _statement_create(
                    parsed=parsed,
                    client=client,
                    checksum=checksum,
                    file_name=file_name,
                    size=len(data),
                    actor=actor,
                )
        except IntegrityError:
            # The same file was imported concurrently and committed first.
            existing = _already_imported(client, checksum)
            if existing is None:
                raise
            return ImportResult(statement=existing, run=existing.run, created=False)
        run = ReconciliationRun.objects.create(
            statement=statement,
            client=client,
            engine=engine,
            time_window_seconds=window,
            started_at=started,
            finished_at=started,
            created_by=actor,
            auto_resolve=auto_resolve,
        )
        if engine == "postgresql":
            from .sql import run_postgresql

            runner = run_postgresql
        else:
            runner = run_python
        report = runner(
            statement=statement,
            run=run,
            parsed=parsed,
            window_seconds=window,
            timer=timer,
            reparse=lambda: parse_statement(data),
        )
        statement.line_count = report.line_count
        statement.reject_count = report.reject_count
        statement.skipped = report.skipped
        statement.save(update_fields=["line_count", "reject_count", "skipped"])
        finished = timezone.now()
        run.period_start = report.period.start if report.period else None
        run.period_end = report.period.end if report.period else None
        run.summary = build_summary(statement=statement, report=report, window_seconds=window)
        run.summary["run_id"] = run.pk
        run.timings = timer.phases
        run.finished_at = finished
        run.duration_ms = int((finished - started).total_seconds() * 1000)
        run.save(
            update_fields=[
                "period_start",
                "period_end",
                "summary",
                "timings",
                "finished_at",
                "duration_ms",
            ]
        )
    logger.info(
        "statement reconciled",
        extra=ctx(
            statement_id=statement.pk,
            run_id=run.pk,
            lines=report.line_count,
            rejects=report.reject_count,
            read_with=report.load_method,
            breaks=run.summary["breaks"],
            duration_ms=run.duration_ms,
        ),
    )
    if auto_resolve:
        run_auto_resolve(run=run)
    return ImportResult(statement=statement, run=run, created=True)


def _statement_create(
    *,
    parsed: ParsedStatement,
    client: ApiClient | None,
    checksum: str,
    file_name: str,
    size: int,
    actor: str,
) -> Statement:
    meta = parsed.metadata
    return Statement.objects.create(
        client=client,
        file_name=file_name.replace("\x00", "")[:255],
        file_format=parsed.file_format,
        checksum=checksum,
        size_bytes=size,
        account_holder=meta.account_holder,
        short_code=meta.short_code[:32],
        account_name=meta.account_name,
        period_start=meta.period_start,
        period_end=meta.period_end,
        report_time=meta.report_time,
        opening_balance=meta.opening_balance,
        closing_balance=meta.closing_balance,
        available_balance=meta.available_balance,
        total_paid_in=meta.total_paid_in,
        total_withdrawn=meta.total_withdrawn,
        metadata={"labels": meta.labels, "warnings": meta.warnings},
        header_row=parsed.header_row,
        uploaded_by=actor[:150],
    )


# --- Resolution ----------------------------------------------------------------------------------


class BreakResolutionError(Exception):
    """The resolution asked for is not possible; the message says why (and the code is stable)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class BreakAction:
    MATCH = "match"  # pair the line with a payment; a PENDING/FAILED payment moves to SUCCESS
    ACCEPT = "accept"  # explained, nothing to change


MATCHABLE = frozenset({R.NOT_SUCCESS, R.AMBIGUOUS, R.UNKNOWN_PAYMENT})


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


def break_resolve(
    *,
    break_id: int,
    action: str,
    actor: str,
    reason: str,
    payment_id: uuid.UUID | None = None,
    client: ApiClient | None = None,
    system: bool = False,
) -> Break:
    """Resolve an open break, with a reason, on the record.

    ``accept``: any break; nothing changes but the break. ``match``: a line-side break
    (paid in the statement but PENDING/FAILED with us, ambiguous, or unknown) is paired with a
    payment (its own for ``not_success``, else ``payment_id``); a payment that is not SUCCESS
    moves to SUCCESS through the transition function with the line as evidence. The amounts
    must agree. ``client`` limits the breaks and payments to one API client's.
    """
    reason = reason.strip()
    if not reason:
        raise BreakResolutionError("reason_required", "A reason is required.")
    if action not in (BreakAction.MATCH, BreakAction.ACCEPT):
        raise BreakResolutionError("invalid_action", "action must be 'match' or 'accept'.")
    with transaction.atomic():
        query = Break.objects.select_for_update(of=("self",)).select_related("run", "line")
        if client is not None:
            query = query.filter(run__client=client)
        brk = query.filter(pk=break_id).first()
        if brk is None:
            raise BreakResolutionError("not_found", "No such break.")
        if brk.status != BreakStatus.OPEN:
            raise BreakResolutionError("already_resolved", "This break is already resolved.")
        if action == BreakAction.ACCEPT:
            return _close(brk, Resolution.ACCEPTED, actor, reason, {}, payment=None)
        return _match(brk, actor=actor, reason=reason, payment_id=payment_id, system=system)


def _match(
    brk: Break, *, actor: str, reason: str, payment_id: uuid.UUID | None, system: bool
) -> Break:
    line = brk.line
    if line is None or brk.kind not in MATCHABLE:
        raise BreakResolutionError(
            "not_matchable",
            f"This break ({brk.get_kind_display().lower()}) can only be accepted with a reason.",
        )
    if brk.kind == R.NOT_SUCCESS:
        if payment_id is not None and payment_id != brk.payment_id:
            raise BreakResolutionError(
                "wrong_payment", "This line already claims a payment; match it to that one."
            )
        payment_id = brk.payment_id
    if payment_id is None:
        raise BreakResolutionError("payment_required", "Say which payment (payment_id).")
    if brk.kind == R.AMBIGUOUS and not system and str(payment_id) not in brk.candidates:
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
    evidence = _line_evidence(line, match, brk)
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
        if payment.status == PaymentStatus.SUCCESS:
            note = f"matched to statement line {line.receipt_number}: {reason}"
            if payment.mpesa_receipt_number is None:
                # Confirmed without a receipt (STK Query): the statement gives it, so that the
                # next statement matches this payment by its receipt, not by a person again.
                try:
                    with transaction.atomic():
                        Payment.objects.filter(
                            pk=payment.pk, mpesa_receipt_number__isnull=True
                        ).update(
                            mpesa_receipt_number=line.receipt_number, updated_at=timezone.now()
                        )
                except IntegrityError:
                    raise BreakResolutionError(
                        "receipt_taken",
                        f"Receipt {line.receipt_number} already belongs to another payment.",
                    ) from None
                payment.mpesa_receipt_number = line.receipt_number
                note = f"receipt {line.receipt_number} from the statement; {note}"
            payment_record_event(
                payment=payment,
                kind=EventKind.NOTE,
                source=EventSource.RECONCILIATION,
                actor=actor,
                reason=note,
                evidence=evidence,
            )
            resolution = Resolution.MATCHED
        else:
            fields: dict[str, Any] = {
                "transaction_date": line.completed_at,
                "paid_amount": match.amount,
            }
            if payment.mpesa_receipt_number is None:
                fields["mpesa_receipt_number"] = line.receipt_number
            try:
                with transaction.atomic():
                    payment_transition(
                        payment=payment,
                        to_status=PaymentStatus.SUCCESS,
                        source=EventSource.RECONCILIATION,
                        actor=actor,
                        reason=f"paid per statement line {line.receipt_number}: {reason}",
                        evidence=evidence,
                        fields=fields,
                        locked=True,
                    )
            except IntegrityError:
                raise BreakResolutionError(
                    "receipt_taken",
                    f"Receipt {line.receipt_number} already belongs to another payment.",
                ) from None
            except InvalidTransition as exc:
                raise BreakResolutionError("invalid_transition", str(exc)) from None
            resolution = Resolution.CREDITED
        if match.payment_id != payment.pk:
            LineMatch.objects.filter(line_id=line.pk, statement_id=line.statement_id).update(
                payment=payment, match_method=MatchMethod.MANUAL
            )
        closed = _close(brk, resolution, actor, reason, evidence, payment=payment)
        # The payment's own break in this run (an ambiguous SUCCESS payment) is settled too.
        for other in Break.objects.select_for_update().filter(
            run_id=brk.run_id, payment=payment, line=None, status=BreakStatus.OPEN
        ):
            _close(
                other,
                Resolution.MATCHED,
                actor,
                f"matched to statement line {line.line_no} ({line.receipt_number}): {reason}",
                evidence,
                payment=payment,
            )
    return closed


def _close(
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
    return brk


def run_auto_resolve(*, run: ReconciliationRun) -> int:
    """Move to SUCCESS the PENDING/FAILED payments whose receipt is on the statement with the
    same amount (exact matches only). Safe to run again: resolved breaks are skipped."""
    pending = list(
        Break.objects.filter(
            run=run, status=BreakStatus.OPEN, auto_resolvable=True, kind=R.NOT_SUCCESS
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
