"""How many refused callbacks one source address may have stored.

A refused callback (no payment has its token, a source outside the enforced allowlist, an
oversized body) is stored so that an attack is visible; but anyone can send them, so only
CALLBACK_REFUSED_RATE_LIMIT of them per source and window are stored. The rest are counted on
the last one stored. The counters live in the shared cache (one limit for every web process);
if the cache is unreachable each process counts for itself for a while (the limit still
holds, per process) and the request is answered as usual: refusing never depends on Redis.
Callbacks whose token belongs to a payment never come here.
"""

from __future__ import annotations

import ipaddress
import logging
import threading
import time
from dataclasses import dataclass

from django.conf import settings
from django.core.cache import cache

from core.logging import ctx

logger = logging.getLogger(__name__)

# After a cache error, count in the process for this long before trying the cache again, so
# that an unreachable Redis costs one timeout per process per period, not one per request.
CACHE_RETRY_AFTER = 10.0


@dataclass(frozen=True)
class Slot:
    store: bool  # store this refused callback
    count: int  # refused callbacks from this source in this window, this one included
    counted_on: int | None  # when not stored: the stored row its count is added to


def source_key(address: str | None) -> str:
    """Who is limited: an IPv4 address, or an IPv6 /64 (one subscriber's usual allocation)."""
    if not address:
        return "unknown"
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return "unknown"
    if isinstance(ip, ipaddress.IPv6Address):
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip)


class _LocalCounts:
    """The fallback: this process's counts for the current window only."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.window = -1
        self.counts: dict[str, int] = {}
        self.last: dict[str, int] = {}

    def incr(self, key: str, window: int) -> int:
        with self.lock:
            if window != self.window:
                self.window, self.counts, self.last = window, {}, {}
            self.counts[key] = self.counts.get(key, 0) + 1
            return self.counts[key]

    def set_last(self, key: str, window: int, callback_id: int) -> None:
        with self.lock:
            if window == self.window:
                self.last[key] = callback_id

    def get_last(self, key: str, window: int) -> int | None:
        with self.lock:
            return self.last.get(key) if window == self.window else None


_local = _LocalCounts()
_cache_down_until = 0.0


def limits_reset() -> None:
    """Forget this process's counts and its note that the cache is down, as a new process
    starts (tests start each case from zero this way)."""
    global _local, _cache_down_until
    _local = _LocalCounts()
    _cache_down_until = 0.0


def _cache_usable() -> bool:
    return time.monotonic() >= _cache_down_until


def _cache_failed(exc: Exception) -> None:
    global _cache_down_until
    if _cache_usable():
        logger.warning(
            "cache unreachable; refused callbacks are limited per process for now",
            extra=ctx(error=type(exc).__name__),
        )
    _cache_down_until = time.monotonic() + CACHE_RETRY_AFTER


def _window() -> tuple[int, int]:
    _, period = settings.CALLBACK_REFUSED_RATE
    return int(time.time() // period), period


def refused_slot(source_ip: str | None) -> Slot:
    """Count one refused callback from ``source_ip``; say whether it may be stored."""
    limit, _ = settings.CALLBACK_REFUSED_RATE
    window, period = _window()
    source = source_key(source_ip)
    key = f"callbacks:refused:{source}:{window}"
    count: int | None = None
    last: int | None = None
    if _cache_usable():
        try:
            cache.add(key, 0, timeout=period + 5)
            count = int(cache.incr(key))
            if count > limit:
                stored = cache.get(key + ":last")
                last = int(stored) if stored is not None else None
        except Exception as exc:  # any cache failure: count here instead
            _cache_failed(exc)
            count = None
    if count is None:
        count = _local.incr(key, window)
        last = _local.get_last(key, window)
    if count == limit + 1:
        logger.warning(
            "refused callbacks over the limit from one source: counted, not stored",
            extra=ctx(source=source, limit=settings.CALLBACK_REFUSED_RATE_LIMIT),
        )
    return Slot(store=count <= limit, count=count, counted_on=last)


def refused_stored(source_ip: str | None, callback_id: int) -> None:
    """Remember the row this window's further refused callbacks from the source count on."""
    window, period = _window()
    key = f"callbacks:refused:{source_key(source_ip)}:{window}"
    _local.set_last(key, window, callback_id)
    if _cache_usable():
        try:
            cache.set(key + ":last", callback_id, timeout=period + 5)
        except Exception as exc:
            _cache_failed(exc)
