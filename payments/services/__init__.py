"""Payment writes: the one transition function (:mod:`.transitions`), starting a payment with
an STK Push (:mod:`.initiation`), and recovery by STK Query and expiry (:mod:`.recovery`).
What a result does to a payment is decided in :mod:`payments.outcomes`.

The public names are importable from here; each lives in the module named for its seam.
"""

from .initiation import (
    build_callback_url,
    payment_create,
    payment_initiate,
    payment_initiation_interrupted,
)
from .recovery import QueryOutcome, payment_query, payments_due_for_query, payments_expire
from .transitions import (
    ALLOWED_TRANSITIONS,
    EVENT_REASON_MAX,
    InvalidTransition,
    TransitionRequest,
    TransitionResult,
    event_reason,
    payment_attach_receipt,
    payment_clear_review,
    payment_failure_is_final,
    payment_flag,
    payment_record_event,
    payment_transition,
    payment_transition_many,
)

__all__ = [
    "ALLOWED_TRANSITIONS",
    "EVENT_REASON_MAX",
    "InvalidTransition",
    "QueryOutcome",
    "TransitionRequest",
    "TransitionResult",
    "build_callback_url",
    "event_reason",
    "payment_attach_receipt",
    "payment_clear_review",
    "payment_create",
    "payment_failure_is_final",
    "payment_flag",
    "payment_initiate",
    "payment_initiation_interrupted",
    "payment_query",
    "payment_record_event",
    "payment_transition",
    "payment_transition_many",
    "payments_due_for_query",
    "payments_expire",
]
