"""Celery tasks for reconciliation: thin, id-based, safe to run twice.

Imports run where they are called (the API, the command); what can lag behind is the automatic
move to SUCCESS of payments a statement proves paid, which runs after the import commits. The
re-drive finds runs whose exact matches are still open (a worker died, a lock timed out) and
resolves them.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from celery import shared_task
from django.utils import timezone

from core.logging import ctx

from .models import Break, BreakStatus, ReconciliationRun, ResultClass
from .services import run_auto_resolve

logger = logging.getLogger(__name__)


@shared_task(acks_late=True, reject_on_worker_lost=True, ignore_result=True)
def auto_resolve_run(run_id: int) -> int:
    run = ReconciliationRun.objects.filter(pk=run_id).first()
    if run is None:
        return 0
    resolved = run_auto_resolve(run=run)
    logger.info("reconciliation auto-resolve", extra=ctx(run_id=run_id, resolved=resolved))
    return resolved


@shared_task(ignore_result=True)
def redrive_auto_resolve(older_than_seconds: float = 300.0) -> int:
    """Beat: enqueue runs with exact matches still waiting to be applied (not of runs
    imported with auto_resolve=false: those wait for a person)."""
    horizon = timezone.now() - timedelta(seconds=older_than_seconds)
    run_ids = list(
        Break.objects.filter(
            status=BreakStatus.OPEN,
            auto_resolvable=True,
            kind=ResultClass.NOT_SUCCESS,
            created_at__lte=horizon,
            run__auto_resolve=True,
        )
        .values_list("run_id", flat=True)
        .distinct()[:100]
    )
    for run_id in run_ids:
        auto_resolve_run.delay(run_id)
    return len(run_ids)
