"""The inbox's table of allowed moves: every allowed move works, every other is refused,
for one callback and for a queryset."""

from __future__ import annotations

import pytest

from callbacks.models import CallbackState, InboundCallback
from callbacks.services import ALLOWED_MOVES, InvalidCallbackMove, callback_move, callbacks_move

pytestmark = pytest.mark.django_db

ALLOWED = sorted(
    (source, target) for source, targets in ALLOWED_MOVES.items() for target in targets
)
REFUSED = sorted(
    (source, target)
    for source in CallbackState.values
    for target in CallbackState.values
    if target not in ALLOWED_MOVES[source]
)


def stored(state: str) -> InboundCallback:
    return InboundCallback.objects.create(body=b"{}", dedupe_key="k", state=state)


def test_the_table_names_every_state():
    assert set(ALLOWED_MOVES) == set(CallbackState.values)
    assert ALLOWED and REFUSED


@pytest.mark.parametrize(("source", "target"), ALLOWED)
def test_an_allowed_move_is_made_with_its_fields(source, target):
    callback = stored(source)

    callback_move(callback, to_state=target, last_error="why")

    callback.refresh_from_db()
    assert (callback.state, callback.last_error) == (target, "why")


@pytest.mark.parametrize(("source", "target"), REFUSED)
def test_a_move_the_table_does_not_allow_is_refused_and_changes_nothing(source, target):
    callback = stored(source)

    with pytest.raises(InvalidCallbackMove, match=f"from {source} to {target}"):
        callback_move(callback, to_state=target, last_error="why")

    callback.refresh_from_db()
    assert (callback.state, callback.last_error) == (source, "")


def test_a_callback_moved_meanwhile_is_not_moved_again():
    callback = stored(CallbackState.RECEIVED)
    InboundCallback.objects.filter(pk=callback.pk).update(state=CallbackState.PROCESSED)

    with pytest.raises(InvalidCallbackMove, match="no longer received"):
        callback_move(callback, to_state=CallbackState.FAILED)

    callback.refresh_from_db()
    assert callback.state == CallbackState.PROCESSED


def test_a_bulk_move_changes_only_rows_in_its_from_states():
    received, verifying, processed = (
        stored(CallbackState.RECEIVED),
        stored(CallbackState.VERIFYING),
        stored(CallbackState.PROCESSED),
    )

    moved = callbacks_move(
        InboundCallback.objects.all(),
        from_states=(CallbackState.RECEIVED, CallbackState.VERIFYING),
        to_state=CallbackState.FAILED,
    )

    assert moved == 2
    states = dict(InboundCallback.objects.values_list("pk", "state"))
    assert states == {
        received.pk: CallbackState.FAILED,
        verifying.pk: CallbackState.FAILED,
        processed.pk: CallbackState.PROCESSED,
    }


def test_a_bulk_move_from_a_state_the_table_does_not_allow_is_refused():
    stored(CallbackState.PROCESSED)

    with pytest.raises(InvalidCallbackMove):
        callbacks_move(
            InboundCallback.objects.all(),
            from_states=(CallbackState.RECEIVED, CallbackState.PROCESSED),
            to_state=CallbackState.FAILED,
        )

    assert InboundCallback.objects.get().state == CallbackState.PROCESSED
