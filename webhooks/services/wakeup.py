"""Waking the delivery pump after events commit: at most every WEBHOOK_WAKEUP_INTERVAL
seconds per process (one pump takes every due delivery), never raising. A lost wake-up only
delays: the beat pumps every WEBHOOK_REDRIVE_INTERVAL seconds."""

from __future__ import annotations

import logging
import threading
import time

from django.conf import settings

from core.logging import ctx

logger = logging.getLogger(__name__)

_last = 0.0
_lock = threading.Lock()


def wakeup_reset() -> None:
    """Forget when this process last woke the pump (as a new process starts)."""
    global _last
    with _lock:
        _last = 0.0


def webhooks_wake(count: int = 1) -> None:
    """After ``count`` events committed: publish a pump task unless one was published from
    this process within WEBHOOK_WAKEUP_INTERVAL seconds."""
    global _last
    now = time.monotonic()
    with _lock:
        if now - _last < settings.WEBHOOK_WAKEUP_INTERVAL:
            return
        _last = now
    from ..tasks import pump_webhooks

    try:
        pump_webhooks.apply_async()
    except Exception as exc:  # broker down: the beat pumps later
        logger.warning(
            "webhook pump not woken; the beat will pump", extra=ctx(error=type(exc).__name__)
        )
