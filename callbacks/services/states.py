"""The inbox's state machine: the one table of the moves an InboundCallback may make, and
the functions that make them (one row, a queryset, or many rows each with its own values).

Creating a row is not a move: a callback is stored ``received`` (or ``rejected``, refused at
intake). Every later change of ``state`` goes through this module.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone

from core.db import update_rows
from core.metrics import CALLBACK_PROCESSING_DELAY, observe

from ..models import FINAL_STATES, CallbackState, InboundCallback

_DECIDED = frozenset(
    {
        CallbackState.PROCESSED,
        CallbackState.DUPLICATE,
        CallbackState.IGNORED,
        CallbackState.REVIEW,
        CallbackState.ORPHAN,
        CallbackState.INVALID,
        CallbackState.REJECTED,
    }
)

ALLOWED_MOVES: dict[str, frozenset[str]] = {
    # Processing decides it, parks it for verification, or gives up on it.
    CallbackState.RECEIVED: _DECIDED | {CallbackState.VERIFYING, CallbackState.FAILED},
    # STK Query confirmed (then decided like any callback), contradicted (rejected), or
    # processing kept failing.
    CallbackState.VERIFYING: _DECIDED | {CallbackState.FAILED},
    # Parked: an operator (or the payment's API client, for failed) replays it.
    CallbackState.FAILED: frozenset({CallbackState.RECEIVED}),
    CallbackState.ORPHAN: frozenset({CallbackState.RECEIVED}),
    CallbackState.PROCESSED: frozenset(),
    CallbackState.DUPLICATE: frozenset(),
    CallbackState.IGNORED: frozenset(),
    CallbackState.REVIEW: frozenset(),
    CallbackState.INVALID: frozenset(),
    CallbackState.REJECTED: frozenset(),
}


class InvalidCallbackMove(Exception):
    """A move the table does not allow, or a row that was not in the state the move is from."""

    def __init__(self, from_state: str, to_state: str, message: str = "") -> None:
        super().__init__(message or f"a callback cannot go from {from_state} to {to_state}")
        self.from_state = from_state
        self.to_state = to_state


def check_move(from_state: str, to_state: str) -> None:
    if to_state not in ALLOWED_MOVES.get(from_state, frozenset()):
        raise InvalidCallbackMove(from_state, to_state)


def callback_move(callback: InboundCallback, *, to_state: str, **fields: Any) -> None:
    """Move one callback (whose row the caller holds locked) to ``to_state``, writing
    ``fields`` with it; the UPDATE is conditional on the state the callback was read in."""
    from_state = callback.state
    check_move(from_state, to_state)
    changed = InboundCallback.objects.filter(pk=callback.pk, state=from_state).update(
        state=to_state, **fields
    )
    if changed != 1:
        raise InvalidCallbackMove(
            from_state, to_state, f"callback {callback.pk} is no longer {from_state}"
        )
    callback.state = to_state
    for name, value in fields.items():
        setattr(callback, name, value)
    received_at = callback.__dict__.get("received_at")
    if to_state in FINAL_STATES and received_at is not None:
        delay = (timezone.now() - received_at).total_seconds()
        kind = callback.__dict__.get("kind", "")
        transaction.on_commit(
            lambda: observe(CALLBACK_PROCESSING_DELAY, delay, kind=kind, state=to_state)
        )


def callbacks_move(
    queryset: QuerySet[InboundCallback],
    *,
    from_states: Sequence[str],
    to_state: str,
    **fields: Any,
) -> int:
    """Move every callback of ``queryset`` that is in one of ``from_states`` (checked in the
    WHERE clause) to ``to_state``. Returns how many moved."""
    for from_state in from_states:
        check_move(from_state, to_state)
    return queryset.filter(state__in=list(from_states)).update(state=to_state, **fields)


def callbacks_move_rows(
    *,
    from_state: str,
    to_state: str,
    set_fields: Sequence[str],
    rows: Sequence[Sequence[Any]],
) -> int:
    """Move many callbacks, each with its own values (``rows``: ``(pk, *set values)``), in
    one statement on PostgreSQL; raises InvalidCallbackMove, nothing written by it, if any
    was not ``from_state``."""
    check_move(from_state, to_state)
    changed = update_rows(
        InboundCallback,
        set_fields=("state", *set_fields),
        rows=[[row[0], from_state, to_state, *row[1:]] for row in rows],
        match_fields=["state"],
    )
    if changed != len(rows):
        raise InvalidCallbackMove(
            from_state, to_state, f"{len(rows) - changed} of {len(rows)} callbacks moved meanwhile"
        )
    return changed
