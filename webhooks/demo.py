"""The demo page's webhook panel (``/demo/payments/<id>/webhooks/``, with the demo page): each
event of the payment, its deliveries to the demo merchant's endpoints, and what the demo
receiver made of them (verified or refused)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from django.conf import settings
from django.http import Http404, HttpRequest, JsonResponse
from django.views.decorators.http import require_GET

from events.models import Event

from .demo_receiver import LOG_FILE
from .models import Delivery


def _received() -> dict[str, dict[str, Any]]:
    """The demo receiver's log, by webhook id (its last line for each)."""
    path = Path(settings.VAR_DIR) / LOG_FILE
    found: dict[str, dict[str, Any]] = {}
    try:
        lines = path.read_text().splitlines()[-2000:]
    except OSError:
        return found
    for line in lines:
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict) and record.get("webhook_id"):
            found[str(record["webhook_id"])] = record
    return found


@require_GET
def demo_payment_webhooks(request: HttpRequest, payment_id: str) -> JsonResponse:
    if not settings.DEMO_ENABLED:
        raise Http404("The demo page is disabled (DEMO_ENABLED=false).")
    events = list(Event.objects.filter(object_id=str(payment_id)).order_by("created_at", "id"))
    deliveries: dict[str, list[Delivery]] = {}
    for delivery in Delivery.objects.filter(event__in=events).select_related("endpoint"):
        deliveries.setdefault(delivery.event_id, []).append(delivery)
    received = _received()
    return JsonResponse(
        {
            "events": [
                {
                    "id": event.id,
                    "type": event.type,
                    "created_at": event.created_at.isoformat(),
                    "deliveries": [
                        {
                            "endpoint": delivery.endpoint.url,
                            "state": delivery.state,
                            "attempts": delivery.attempts,
                            "last_status_code": delivery.last_status_code,
                            "last_error": delivery.last_error,
                        }
                        for delivery in deliveries.get(event.id, [])
                    ],
                    "receiver": received.get(event.id),
                }
                for event in events
            ]
        }
    )
