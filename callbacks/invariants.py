"""The inbox's invariant (core.ops.find_violations runs it): no callback is left behind."""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from core.ops import Violation

from .models import CallbackState, InboundCallback


def callbacks_left_behind(settled: bool) -> list[Violation]:
    """A callback still ``received`` after the re-drive sweeper had its chance (``settled``:
    any callback still waiting)."""
    waiting = InboundCallback.objects.filter(state=CallbackState.RECEIVED)
    if not settled:
        # Still legitimately waiting if the re-drive sweeper has not had its chance yet.
        grace = timedelta(
            seconds=settings.CALLBACK_REDRIVE_AFTER + 2 * settings.CALLBACK_REDRIVE_INTERVAL
        )
        cutoff = timezone.now() - grace
        waiting = waiting.filter(received_at__lt=cutoff).filter(
            Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lt=cutoff)
        )
    return [
        Violation(
            "callback_left_behind",
            f"callback {pk} is neither processed, failed nor due for re-drive",
        )
        for pk in waiting.values_list("pk", flat=True)
    ]
