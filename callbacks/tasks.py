"""Celery tasks for the inbox. Thin: they take ids and call one service; safe to run twice."""

from __future__ import annotations

import logging
import random
import time

from celery import shared_task
from django.conf import settings

from core.logging import ctx

from .journal import journal_drain
from .services import (
    TRANSIENT_ERRORS,
    RetryLater,
    VerifyLater,
    callback_bodies_purge,
    callback_enqueue,
    callback_mark_failed,
    callback_process,
    callback_record_attempt_error,
    callback_verify,
    callbacks_drain_batch,
    callbacks_redrive,
    drain_enqueue,
)

logger = logging.getLogger(__name__)

# A drain task hands over to a fresh task after this long, so one wake-up cannot hold a
# worker process forever under a constant stream.
DRAIN_TIME_BUDGET = 20.0


def _backoff(attempt: int) -> float:
    """Exponential backoff with jitter, capped at 5 minutes."""
    ceiling = min(300.0, 2.0**attempt)
    return ceiling / 2 + random.uniform(0, ceiling / 2)


@shared_task(bind=True, acks_late=True, reject_on_worker_lost=True, ignore_result=True)
def process_callback(self, callback_id: int) -> str:
    try:
        return callback_process(callback_id=callback_id).state
    except RetryLater as exc:
        # Too early (payment still initiating): publish a delayed retry. If that publish is
        # lost, the re-drive sweeper finds the row (still "received").
        callback_enqueue(callback_id=callback_id, countdown=exc.countdown)
        return "retry"
    except TRANSIENT_ERRORS as exc:
        attempt = self.request.retries + 1
        if attempt >= settings.CALLBACK_MAX_ATTEMPTS:
            _park(callback_id, exc)
            return "failed"
        _note(callback_id, exc)
        logger.warning(
            "transient error processing callback; retrying",
            extra=ctx(callback_id=callback_id, attempt=attempt, error=type(exc).__name__),
        )
        raise self.retry(exc=exc, countdown=_backoff(attempt)) from None
    except Exception as exc:
        # A bug or an unexpected shape: park with the traceback, ready to replay after a fix.
        _park(callback_id, exc)
        logger.exception("callback processing failed", extra=ctx(callback_id=callback_id))
        return "failed"


@shared_task(
    bind=True, acks_late=True, reject_on_worker_lost=True, ignore_result=True, max_retries=None
)
def drain_callbacks(self) -> int:
    """Drain stored callbacks in batches until none is left (or the time budget is spent)."""
    started = time.monotonic()
    total = 0
    retry_in: float | None = None
    try:
        while True:
            result = callbacks_drain_batch()
            total += result.processed
            if result.retry_in is not None:
                retry_in = result.retry_in if retry_in is None else min(retry_in, result.retry_in)
            if result.processed == 0:
                break
            if time.monotonic() - started > DRAIN_TIME_BUDGET:
                drain_enqueue()  # more may be waiting: hand over to a fresh task
                break
    except TRANSIENT_ERRORS as exc:
        attempt = self.request.retries + 1
        logger.warning(
            "transient error draining callbacks; retrying",
            extra=ctx(attempt=attempt, error=type(exc).__name__),
        )
        raise self.retry(exc=exc, countdown=_backoff(min(attempt, 8))) from None
    if retry_in is not None:
        drain_enqueue(countdown=retry_in)
    if total:
        logger.info("drained callbacks", extra=ctx(count=total))
    return total


def _park(callback_id: int, exc: BaseException) -> None:
    try:
        callback_mark_failed(callback_id=callback_id, error=exc)
    except TRANSIENT_ERRORS:
        logger.warning(
            "could not record failure; re-drive will retry", extra=ctx(callback_id=callback_id)
        )


def _note(callback_id: int, exc: BaseException) -> None:
    try:
        callback_record_attempt_error(callback_id=callback_id, error=exc)
    except TRANSIENT_ERRORS:
        pass


@shared_task(bind=True, acks_late=True, reject_on_worker_lost=True, ignore_result=True)
def verify_callback(self, callback_id: int) -> str:
    try:
        return callback_verify(callback_id=callback_id)
    except VerifyLater as exc:
        attempt = self.request.retries + 1
        if attempt > 12:
            return "gave up for now"  # still VERIFYING: the re-drive sweeper asks again later
        raise self.retry(countdown=_backoff(min(attempt, 6)), max_retries=12, exc=exc) from None
    except TRANSIENT_ERRORS as exc:
        raise self.retry(countdown=_backoff(3), max_retries=12, exc=exc) from None


@shared_task(ignore_result=True)
def redrive_callbacks() -> int:
    return callbacks_redrive()


@shared_task(ignore_result=True)
def purge_callback_bodies() -> int:
    """The retention policy for raw bodies (CALLBACK_BODY_RETENTION_DAYS), daily on beat."""
    return callback_bodies_purge()


@shared_task(ignore_result=True)
def drain_journal() -> int:
    """Beat: move what the web processes on this host journaled while the database was down
    into the inbox (callbacks.journal)."""
    return journal_drain()
