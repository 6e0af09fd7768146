"""Webhook tasks: the delivery pump, woken after events commit and run by the beat."""

from __future__ import annotations

from typing import Any

from celery import shared_task

from .services import webhooks_pump


@shared_task(name="webhooks.tasks.pump_webhooks", ignore_result=True)
def pump_webhooks() -> dict[str, Any]:
    """Fan new events out and deliver what is due for up to WEBHOOK_PUMP_SECONDS; when there
    is more, another pump follows at once (a backlog is worked off without waiting for the
    beat). Any number may run at once: claims skip each other's rows."""
    result = webhooks_pump()
    if result.more:
        pump_webhooks.apply_async()
    return {
        "fanned_out": result.fanned_out,
        "attempted": result.attempted,
        "delivered": result.delivered,
        "more": result.more,
    }
