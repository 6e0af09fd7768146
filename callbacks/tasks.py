"""Celery tasks for the inbox. Thin: they take ids and call one service; safe to run twice."""

from __future__ import annotations

import logging
import random

from celery import shared_task
from django.conf import settings
from django.db import InterfaceError, OperationalError

from core.logging import ctx

from .services import (
    RetryLater,
    callback_enqueue,
    callback_mark_failed,
    callback_process,
    callback_record_attempt_error,
    callbacks_redrive,
)

logger = logging.getLogger(__name__)

TRANSIENT_ERRORS = (OperationalError, InterfaceError)


@shared_task(
    bind=True,
    acks_late=True,
    reject_on_worker_lost=True,
    max_retries=None,
    ignore_result=True,
)
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
        # Exponential backoff with full jitter, capped at 5 minutes.
        countdown = min(300.0, 2.0**attempt)
        countdown = countdown / 2 + (countdown / 2) * random.random()
        logger.warning(
            "transient error processing callback; retrying",
            extra=ctx(callback_id=callback_id, attempt=attempt, error=type(exc).__name__),
        )
        raise self.retry(exc=exc, countdown=countdown) from None
    except Exception as exc:
        # A bug or an unexpected shape: park with the traceback, ready to replay after a fix.
        _park(callback_id, exc)
        logger.exception("callback processing failed", extra=ctx(callback_id=callback_id))
        return "failed"


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


@shared_task(ignore_result=True)
def redrive_callbacks() -> int:
    return callbacks_redrive()
