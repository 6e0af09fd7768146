"""Webhook services: endpoints and their secrets, the fan-out of events into deliveries, the
delivery pump, and redelivery. The public names are importable from here."""

from .endpoints import (
    ENDPOINT_DISABLED,
    TEST,
    InvalidEndpoint,
    endpoint_create,
    endpoint_data,
    endpoint_disable,
    endpoint_send_test,
    endpoint_update,
)
from .fanout import webhooks_fanout
from .pump import MAX_ATTEMPTS, RETRY_DELAYS, PumpResult, retry_delay, webhooks_pump
from .redeliver import RedeliverRefused, deliveries_redeliver_failed, event_redeliver
from .secrets import endpoint_secret_add, endpoint_secret_rotate, new_secret, signing_secrets
from .sending import event_body, signed_headers
from .types import EVENT_TYPES, check_event_types
from .wakeup import wakeup_reset, webhooks_wake

__all__ = [
    "ENDPOINT_DISABLED",
    "EVENT_TYPES",
    "MAX_ATTEMPTS",
    "RETRY_DELAYS",
    "TEST",
    "InvalidEndpoint",
    "PumpResult",
    "RedeliverRefused",
    "check_event_types",
    "deliveries_redeliver_failed",
    "endpoint_create",
    "endpoint_data",
    "endpoint_disable",
    "endpoint_secret_add",
    "endpoint_secret_rotate",
    "endpoint_send_test",
    "endpoint_update",
    "event_body",
    "event_redeliver",
    "new_secret",
    "retry_delay",
    "signed_headers",
    "signing_secrets",
    "wakeup_reset",
    "webhooks_fanout",
    "webhooks_pump",
    "webhooks_wake",
]
