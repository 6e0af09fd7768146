"""Celery tasks for reconciliation: thin, id-based, safe to run twice.

A statement uploaded through the API or the admin is read and matched here
(:func:`process_statement`), never in the web request; the database is the truth (a run's
state), the message only a wake-up, and the sweeper wakes up queued runs whose message was
lost and runs whose worker stopped. What can also lag behind is the automatic move to SUCCESS
of payments a statement proves paid, which runs after the import commits: its re-drive finds
runs whose exact matches are still open (a worker died, a lock timed out) and resolves them.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from celery import shared_task
from django.conf import settings
from django.utils import timezone

from core.logging import ctx

from .imports import statement_process, statements_sweep
from .models import Break, BreakStatus, ReconciliationRun, ResultClass
from .services import run_auto_resolve

logger = logging.getLogger(__name__)


@shared_task(
    acks_late=True,
    reject_on_worker_lost=True,
    ignore_result=True,
    # A backstop for the import's own time limit (which interrupts the reading itself): the
    # worker process is replaced, and the sweeper takes the run back.
    time_limit=int(settings.RECONCILIATION_IMPORT_TIME_LIMIT_SECONDS) + 120,
)
def process_statement(run_id: int) -> str:
    run = statement_process(run_id=run_id)
    if run is None:
        return "nothing to do"
    logger.info(
        "statement import", extra=ctx(run_id=run_id, state=run.state, attempts=run.attempts)
    )
    return str(run.state)


@shared_task(ignore_result=True)
def sweep_statement_imports() -> int:
    """Beat: wake up queued statement imports whose wake-up was lost, and take back those
    whose worker stopped."""
    return statements_sweep()


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
