"""The invariants the books must satisfy, checked against the database.

Payments' checks, registered with ``core.ops`` (which runs every app's): used by
``python manage.py check_invariants`` and by the fault-injection tests after every scenario.
Each violation is a sentence naming what is wrong and where.
"""

from __future__ import annotations

from itertools import groupby
from typing import Any

from django.db.models import Count, F, Q

from core.ops import Violation

from .models import EventKind, EventSource, Payment, PaymentEvent, PaymentStatus
from .services import ALLOWED_TRANSITIONS

# Evidence that can make a payment SUCCESS.
_SUCCESS_SOURCES = (EventSource.CALLBACK, EventSource.QUERY, EventSource.RECONCILIATION)


def payment_violations(settled: bool) -> list[Violation]:
    """Every broken invariant of the payments and their events. ``settled=True`` also treats
    any credit resting on a statement line alone (see :func:`find_flags`) as a violation."""
    found: list[Violation] = []
    found += _receipts_credited_twice()
    found += _success_without_evidence()
    found += _amount_differs_from_paid()
    found += _event_history_problems()
    if settled:
        found += _credits_on_statement_alone()
    return found


def find_flags() -> list[Violation]:
    """What is not broken but must be looked at: payments moved to SUCCESS on a statement line
    alone (no callback, no STK Query, no second person's approval). A statement is a file
    someone uploaded; until a second person approves such a credit it is one person's word."""
    return _credits_on_statement_alone()


def _credits_on_statement_alone() -> list[Violation]:
    credits = list(
        PaymentEvent.objects.filter(
            kind=EventKind.TRANSITION,
            to_status=PaymentStatus.SUCCESS,
            source=EventSource.RECONCILIATION,
            payment__status=PaymentStatus.SUCCESS,
        )
        .exclude(evidence__has_key="approval")
        .values_list("pk", "payment_id", "actor", "evidence")
    )
    if not credits:
        return []
    approved = set(
        PaymentEvent.objects.filter(
            payment_id__in={payment_id for _, payment_id, _, _ in credits},
            kind=EventKind.NOTE,
            evidence__has_key="approves_event",
        ).values_list("evidence__approves_event", flat=True)
    )
    return [
        Violation(
            "credit_on_statement_alone",
            f"payment {payment_id} was moved to SUCCESS by {actor or 'reconciliation'} on "
            f"statement line {evidence.get('receipt_number', '?')} alone (break "
            f"{evidence.get('break_id', '?')}); no callback, STK Query or second person "
            "confirms it",
        )
        for pk, payment_id, actor, evidence in credits
        if pk not in approved
    ]


def _receipts_credited_twice() -> list[Violation]:
    rows = (
        Payment.objects.exclude(mpesa_receipt_number__isnull=True)
        .values("mpesa_receipt_number")
        .annotate(n=Count("id"))
        .filter(n__gt=1)
    )
    return [
        Violation(
            "receipt_credited_twice",
            f"receipt {row['mpesa_receipt_number']} on {row['n']} payments",
        )
        for row in rows
    ]


def _success_without_evidence() -> list[Violation]:
    evidenced = PaymentEvent.objects.filter(
        kind=EventKind.TRANSITION, to_status=PaymentStatus.SUCCESS
    ).filter(
        # A callback or a C2B confirmation: the stored request behind it is linked.
        Q(source__in=[EventSource.CALLBACK, EventSource.C2B], callback_id__isnull=False)
        | Q(source__in=[EventSource.QUERY, EventSource.RECONCILIATION, EventSource.PULL])
    )
    missing = Payment.objects.filter(status=PaymentStatus.SUCCESS).exclude(
        pk__in=evidenced.values("payment_id")
    )
    found = [
        Violation(
            "success_without_evidence",
            f"payment {pk} is SUCCESS with no callback, confirmation, query, pull or "
            "statement evidence",
        )
        for pk in missing.values_list("pk", flat=True)
    ]
    by_callback = Payment.objects.filter(
        status=PaymentStatus.SUCCESS,
        mpesa_receipt_number__isnull=True,
        events__kind=EventKind.TRANSITION,
        events__to_status=PaymentStatus.SUCCESS,
        events__source=EventSource.CALLBACK,
    )
    found += [
        Violation(
            "success_without_evidence", f"payment {pk} credited by a callback but has no receipt"
        )
        for pk in by_callback.values_list("pk", flat=True)
    ]
    return found


def _amount_differs_from_paid() -> list[Violation]:
    rows = Payment.objects.filter(status=PaymentStatus.SUCCESS, paid_amount__isnull=False).exclude(
        paid_amount=F("amount")
    )
    return [
        Violation("amount_mismatch", f"payment {p.pk} asked {p.amount}, credited {p.paid_amount}")
        for p in rows.only("pk", "amount", "paid_amount")
    ]


def _event_history_problems() -> list[Violation]:
    found: list[Violation] = []
    statuses = dict(Payment.objects.values_list("pk", "status"))
    events = (
        PaymentEvent.objects.exclude(to_status="")
        .order_by("payment_id", "created_at", "id")
        .values_list("payment_id", "kind", "from_status", "to_status")
    )
    seen: set[Any] = set()
    for payment_id, rows in groupby(events.iterator(chunk_size=5000), key=lambda row: row[0]):
        seen.add(payment_id)
        current = None
        for _, kind, from_status, to_status in rows:
            if kind == EventKind.CREATED:
                if current is not None:
                    found.append(
                        Violation("forbidden_sequence", f"payment {payment_id} created twice")
                    )
                current = to_status
                continue
            if from_status != current:
                found.append(
                    Violation(
                        "forbidden_sequence",
                        f"payment {payment_id}: event {from_status}→{to_status} follows {current}",
                    )
                )
            elif to_status not in ALLOWED_TRANSITIONS.get(from_status, frozenset()):
                found.append(
                    Violation(
                        "forbidden_sequence",
                        f"payment {payment_id}: {from_status}→{to_status} is not allowed",
                    )
                )
            current = to_status
        if payment_id in statuses and statuses[payment_id] != current:
            found.append(
                Violation(
                    "status_without_event",
                    f"payment {payment_id} is {statuses[payment_id]} "
                    f"but its events end at {current}",
                )
            )
    for payment_id in set(statuses) - seen:
        found.append(Violation("status_without_event", f"payment {payment_id} has no events"))
    return found
