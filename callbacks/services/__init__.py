"""Callback inbox writes: receive (store raw, fast), process (hand the result to the payment,
which decides), drain in batches, verify by query, re-drive, replay, purge old bodies. Every
change of a callback's state goes through :mod:`callbacks.services.states`.

The public names are importable from here; each lives in the module named for its seam.
"""

from .batch import DrainResult, callbacks_drain_batch
from .intake import callback_receive, callback_refuse, flag_checkout_target, token_payment
from .process import (
    TRANSIENT_ERRORS,
    VERDICT_STATES,
    ProcessOutcome,
    RetryLater,
    callback_mark_failed,
    callback_process,
    callback_record_attempt_error,
    stk_evidence,
)
from .purge import PURGEABLE_STATES, callback_bodies_purge
from .replay import (
    REPLAY_ACTION,
    CallbackNotReplayable,
    callback_public_error,
    callback_replay,
    callbacks_redrive,
    payment_callback_replay,
)
from .states import (
    ALLOWED_MOVES,
    InvalidCallbackMove,
    callback_move,
    callbacks_move,
    callbacks_move_rows,
    check_move,
)
from .verify import VerifyLater, callback_verify, needs_verification
from .wakeup import callback_enqueue, callback_wake, drain_enqueue, verify_enqueue, wakeup_reset

__all__ = [
    "ALLOWED_MOVES",
    "PURGEABLE_STATES",
    "REPLAY_ACTION",
    "TRANSIENT_ERRORS",
    "VERDICT_STATES",
    "CallbackNotReplayable",
    "DrainResult",
    "InvalidCallbackMove",
    "ProcessOutcome",
    "RetryLater",
    "VerifyLater",
    "callback_bodies_purge",
    "callback_enqueue",
    "callback_mark_failed",
    "callback_move",
    "callback_process",
    "callback_public_error",
    "callback_receive",
    "callback_record_attempt_error",
    "callback_refuse",
    "callback_replay",
    "callback_verify",
    "callback_wake",
    "callbacks_drain_batch",
    "callbacks_move",
    "callbacks_move_rows",
    "callbacks_redrive",
    "check_move",
    "drain_enqueue",
    "flag_checkout_target",
    "needs_verification",
    "payment_callback_replay",
    "stk_evidence",
    "token_payment",
    "verify_enqueue",
    "wakeup_reset",
]
