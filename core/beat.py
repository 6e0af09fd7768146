"""Celery beat's scheduler, with a heartbeat: ``/health/ready`` knows beat is alive because
its scheduler loop writes it, not because some task ran (core.health)."""

from __future__ import annotations

import logging
import time
from typing import Any

from celery.beat import PersistentScheduler

logger = logging.getLogger(__name__)


class HeartbeatScheduler(PersistentScheduler):
    """Celery's default scheduler (a schedule file), recording a beat heartbeat at most once
    per HEARTBEAT_INTERVAL from its loop. A heartbeat that cannot be written (the database
    is down) is logged and tried again on the next tick; the schedule goes on."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._last_heartbeat = 0.0

    def tick(self, *args: Any, **kwargs: Any) -> float:
        from django.conf import settings

        interval = float(settings.HEARTBEAT_INTERVAL)
        now = time.monotonic()
        if now - self._last_heartbeat >= interval:
            self._record()
            self._last_heartbeat = now
        return min(super().tick(*args, **kwargs), interval)

    def _record(self) -> None:
        from django.db import close_old_connections

        from .health import BEAT, heartbeat

        try:
            close_old_connections()
            heartbeat(BEAT)
        except Exception as exc:
            logger.warning("beat heartbeat not recorded: %s", type(exc).__name__)
