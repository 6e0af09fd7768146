"""Working without a shared service: Redis (the cache and the broker) is a wake-up call and a
speed-up, the database is the truth. Where a request goes on without Redis (a throttle that
fails open, a Daraja token fetched by the process itself, a wake-up left to the beat drain),
it reports here: a warning at most every LOG_EVERY seconds per kind (with the count since
the last one), and a counter per kind that /metrics shows
(``mpesa_degraded_total{what=...}``, counted by the process that answers the scrape).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter

from .logging import ctx

logger = logging.getLogger(__name__)

LOG_EVERY = 10.0

_lock = threading.Lock()
_counts: Counter[str] = Counter()
_logged_at: dict[str, float] = {}
_logged_count: Counter[str] = Counter()


def degraded(what: str, error: BaseException, message: str) -> None:
    """Count one request that went on without a shared service, and log it (rate-limited).
    ``error`` is named by its type only: its text can carry host names."""
    now = time.monotonic()
    with _lock:
        _counts[what] += 1
        last = _logged_at.get(what)
        if last is not None and now - last < LOG_EVERY:
            return
        since = _counts[what] - _logged_count[what]
        _logged_at[what] = now
        _logged_count[what] = _counts[what]
    logger.warning(message, extra=ctx(what=what, error=type(error).__name__, count=since))


def degraded_counts() -> dict[str, int]:
    with _lock:
        return dict(_counts)
