"""Endpoints: create (with the secret shown once), change, disable and enable, on the record
as events; a test event to one endpoint."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from django.db import transaction
from django.utils import timezone

from core.logging import ctx
from core.models import ApiClient
from events.models import Event
from events.services import event_emit

from ..models import Delivery, Endpoint
from .secrets import endpoint_secret_add
from .targets import UnsafeTarget, check_target
from .types import check_event_types

logger = logging.getLogger(__name__)

ENDPOINT_DISABLED = "webhook.endpoint_disabled"
TEST = "webhook.test"


class InvalidEndpoint(ValueError):
    """An endpoint that cannot be saved: ``field`` names what is wrong."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


def endpoint_data(endpoint: Endpoint) -> dict[str, object]:
    return {
        "id": str(endpoint.id),
        "url": endpoint.url,
        "description": endpoint.description,
        "event_types": list(endpoint.event_types),
        "enabled": endpoint.enabled,
        "disabled_reason": endpoint.disabled_reason,
    }


def _checked(url: str | None, event_types: Sequence[str] | None) -> None:
    if url is not None:
        try:
            check_target(url)
        except UnsafeTarget as exc:
            raise InvalidEndpoint("url", str(exc)) from None
    if event_types is not None:
        unknown = check_event_types(event_types)
        if unknown:
            raise InvalidEndpoint("event_types", unknown)


def endpoint_create(
    *, client: ApiClient, url: str, description: str = "", event_types: Sequence[str] = ()
) -> tuple[Endpoint, str]:
    """A new endpoint and its signing secret (returned once, stored encrypted)."""
    _checked(url, event_types)
    with transaction.atomic():
        endpoint = Endpoint.objects.create(
            client=client, url=url, description=description, event_types=list(event_types)
        )
        secret = endpoint_secret_add(endpoint)
    logger.info("webhook endpoint created", extra=ctx(endpoint_id=str(endpoint.id)))
    return endpoint, secret


def endpoint_update(
    endpoint: Endpoint,
    *,
    url: str | None = None,
    description: str | None = None,
    event_types: Sequence[str] | None = None,
    enabled: bool | None = None,
) -> Endpoint:
    _checked(url if url is not None and url != endpoint.url else None, event_types)
    if url is not None:
        endpoint.url = url
    if description is not None:
        endpoint.description = description
    if event_types is not None:
        endpoint.event_types = list(event_types)
    if enabled is True and not endpoint.enabled:
        endpoint.enabled = True
        endpoint.disabled_reason = ""
        endpoint.disabled_at = None
        endpoint.failing_since = None
    elif enabled is False and endpoint.enabled:
        endpoint.enabled = False
        endpoint.disabled_reason = "disabled by its owner"
        endpoint.disabled_at = timezone.now()
    endpoint.save()
    return endpoint


def endpoint_disable(endpoint: Endpoint, *, reason: str, by_system: bool) -> None:
    """Stop delivering to ``endpoint`` (its deliveries wait, pending, until it is enabled),
    with a ``webhook.endpoint_disabled`` event for its owner's other endpoints."""
    with transaction.atomic():
        changed = Endpoint.objects.filter(pk=endpoint.pk, enabled=True).update(
            enabled=False, disabled_reason=reason[:300], disabled_at=timezone.now()
        )
        if not changed:
            return
        endpoint.refresh_from_db()
        event_emit(
            type=ENDPOINT_DISABLED,
            data={**endpoint_data(endpoint), "by_system": by_system},
            client_id=endpoint.client_id,
            object_id=str(endpoint.id),
        )
    logger.warning(
        "webhook endpoint disabled", extra=ctx(endpoint_id=str(endpoint.id), reason=reason)
    )


def endpoint_send_test(endpoint: Endpoint) -> Delivery:
    """A ``webhook.test`` event delivered to this endpoint only (whatever types it wants)."""
    with transaction.atomic():
        event = event_emit(
            type=TEST,
            data={"endpoint": str(endpoint.id), "message": "A test event from M-Pesa payments."},
            client_id=endpoint.client_id,
            object_id=str(endpoint.id),
        )
        Event.objects.filter(pk=event.pk).update(dispatched_at=timezone.now())
        return Delivery.objects.create(event=event, endpoint=endpoint)
