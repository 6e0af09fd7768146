"""Outbound webhooks: delivery timeouts, retries, concurrency, and which targets are allowed."""

from __future__ import annotations

from ..env import env_bool, env_float, env_int
from .workers import CELERY_BEAT_SCHEDULE

# Endpoints on private, loopback or link-local addresses, and over plain http: for local
# development only (make run turns it on). Off: https only, public addresses only, checked
# when an endpoint is saved and again at each delivery.
WEBHOOK_ALLOW_PRIVATE_TARGETS = env_bool("WEBHOOK_ALLOW_PRIVATE_TARGETS", False)
# Per attempt: connecting, and the whole request with the answer (s).
WEBHOOK_CONNECT_TIMEOUT = env_float("WEBHOOK_CONNECT_TIMEOUT", 3.0, minimum=0.1)
WEBHOOK_TIMEOUT = env_float("WEBHOOK_TIMEOUT", 10.0, minimum=0.5)
# Bytes of an answer kept on the attempt (the rest is not read).
WEBHOOK_RESPONSE_KEEP_BYTES = env_int("WEBHOOK_RESPONSE_KEEP_BYTES", 1024, minimum=0)
# An endpoint whose every attempt has failed for this long is disabled (an event says so).
WEBHOOK_DISABLE_AFTER_HOURS = env_float("WEBHOOK_DISABLE_AFTER_HOURS", 120.0, minimum=0.1)
# After a secret rotation, the old secret keeps signing beside the new one this long.
WEBHOOK_SECRET_OVERLAP_HOURS = env_float("WEBHOOK_SECRET_OVERLAP_HOURS", 24.0, minimum=0.0)
# Requests in flight per worker process, and per endpoint within it; deliveries claimed at
# once; how long one pump task keeps claiming (s).
WEBHOOK_CONCURRENCY = env_int("WEBHOOK_CONCURRENCY", 32, minimum=1)
WEBHOOK_ENDPOINT_CONCURRENCY = env_int("WEBHOOK_ENDPOINT_CONCURRENCY", 8, minimum=1)
WEBHOOK_BATCH_SIZE = env_int("WEBHOOK_BATCH_SIZE", 200, minimum=1)
WEBHOOK_PUMP_SECONDS = env_float("WEBHOOK_PUMP_SECONDS", 5.0, minimum=0.1)
# A wake-up per web or worker process at most this often (s); the beat pumps every
# WEBHOOK_REDRIVE_INTERVAL seconds whatever happened to the wake-ups.
WEBHOOK_WAKEUP_INTERVAL = env_float("WEBHOOK_WAKEUP_INTERVAL", 0.1, minimum=0.0)
WEBHOOK_REDRIVE_INTERVAL = env_float("WEBHOOK_REDRIVE_INTERVAL", 5.0, minimum=0.5)
CELERY_BEAT_SCHEDULE["webhooks-pump"] = {
    "task": "webhooks.tasks.pump_webhooks",
    "schedule": WEBHOOK_REDRIVE_INTERVAL,
}
