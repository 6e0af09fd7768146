"""Celery tasks for core: the idempotency-key purge (beat)."""

from __future__ import annotations

import logging

from celery import shared_task

from core.logging import ctx

from .services import idempotency_keys_purge

logger = logging.getLogger(__name__)


@shared_task(ignore_result=True)
def purge_idempotency_keys() -> int:
    """Beat: delete idempotency keys older than IDEMPOTENCY_KEY_RETENTION_SECONDS."""
    purged = idempotency_keys_purge()
    if purged:
        logger.info("idempotency keys purged", extra=ctx(count=purged))
    return purged


@shared_task(ignore_result=True, expires=60)
def heartbeat() -> None:
    """Beat, every HEARTBEAT_INTERVAL: a worker took this task, so workers are alive
    (``/health/ready``). ``expires``: one left waiting while no worker ran is dropped, not
    counted later as a sign of life."""
    from .health import WORKER
    from .health import heartbeat as record

    record(WORKER)
