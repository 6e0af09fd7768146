"""Waking up processing after a callback is stored: its own task (``task`` mode) or a
rate-limited drain wake-up (``batch`` mode). Publishing never raises: a broker outage is
logged, and the beat drain and re-drive pick the stored rows up later."""

from __future__ import annotations

import threading
import time
from typing import Any

from django.conf import settings

from core.degraded import degraded

_last_wakeup = 0.0
_trailing_wakeup = 0.0
_wakeup_lock = threading.Lock()


def wakeup_reset() -> None:
    """Forget when this process last woke the drain, as a new process starts (the next
    callback wakes it at once; tests start each case this way)."""
    global _last_wakeup, _trailing_wakeup
    with _wakeup_lock:
        _last_wakeup = _trailing_wakeup = 0.0


def callback_wake(*, callback_id: int) -> bool:
    """After a callback is stored: in ``task`` mode publish its own task; in ``batch`` mode
    publish a drain wake-up at most every CALLBACK_WAKEUP_INTERVAL seconds per process (the
    drain takes every stored callback, so one wake-up serves many). A callback arriving inside
    the window gets one delayed wake-up at the window's end, so none waits for the beat."""
    if settings.CALLBACK_PROCESSING == "task":
        return callback_enqueue(callback_id=callback_id)
    global _last_wakeup, _trailing_wakeup
    interval = settings.CALLBACK_WAKEUP_INTERVAL
    now = time.monotonic()
    with _wakeup_lock:
        if now - _last_wakeup >= interval:
            _last_wakeup = now
            countdown = None
        elif now >= _trailing_wakeup:
            _trailing_wakeup = _last_wakeup + interval
            countdown = max(_trailing_wakeup - now, 0.01)
        else:
            return True  # a delayed wake-up for this window is already on its way
    return drain_enqueue(countdown=countdown)


def _publish(task: Any, args: tuple[Any, ...], countdown: float | None, what: str) -> bool:
    """Publish, never raise: a broker outage is logged; the row is stored and the re-drive
    sweeper enqueues it later."""
    try:
        if countdown is None:
            task.apply_async(args)
        else:
            task.apply_async(args, countdown=countdown)
        return True
    except Exception as exc:
        degraded("wakeup", exc, f"could not publish ({what}); the beat drain and re-drive retry")
        return False


def callback_enqueue(*, callback_id: int, countdown: float | None = None) -> bool:
    from ..tasks import process_callback

    return _publish(process_callback, (callback_id,), countdown, f"callback {callback_id}")


def drain_enqueue(*, countdown: float | None = None) -> bool:
    from ..tasks import drain_callbacks

    return _publish(drain_callbacks, (), countdown, "drain")


def verify_enqueue(*, callback_id: int, countdown: float | None = None) -> bool:
    from ..tasks import verify_callback

    return _publish(verify_callback, (callback_id,), countdown, f"verify {callback_id}")
