"""Signing secrets: made here, shown once, stored encrypted, rotated with an overlap."""

from __future__ import annotations

import base64
import secrets
from datetime import timedelta

from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from core.crypto import decrypt, encrypt

from ..models import Endpoint, EndpointSecret

PREFIX = "whsec_"


def new_secret() -> str:
    """A Standard Webhooks secret: ``whsec_`` and 32 random bytes in base64."""
    return PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


def endpoint_secret_add(endpoint: Endpoint) -> str:
    """A new signing secret for ``endpoint``; returns it (the only time it is shown)."""
    secret = new_secret()
    EndpointSecret.objects.create(endpoint=endpoint, encrypted=encrypt(secret))
    return secret


def endpoint_secret_rotate(endpoint: Endpoint, *, overlap: timedelta | None = None) -> str:
    """Replace the signing secret. The ones it replaces keep signing beside it for
    ``overlap`` (WEBHOOK_SECRET_OVERLAP_HOURS), so a receiver can switch without a gap."""
    if overlap is None:
        overlap = timedelta(hours=settings.WEBHOOK_SECRET_OVERLAP_HOURS)
    expires = timezone.now() + overlap
    EndpointSecret.objects.filter(endpoint=endpoint).filter(
        Q(expires_at__isnull=True) | Q(expires_at__gt=expires)
    ).update(expires_at=expires)
    return endpoint_secret_add(endpoint)


def signing_secrets(endpoint_ids: list[object]) -> dict[object, list[str]]:
    """Each endpoint's secrets that still sign, newest first, decrypted."""
    now = timezone.now()
    found: dict[object, list[str]] = {}
    rows = (
        EndpointSecret.objects.filter(endpoint_id__in=endpoint_ids)
        .filter(Q(expires_at__isnull=True) | Q(expires_at__gt=now))
        .order_by("-created_at", "-id")
        .values_list("endpoint_id", "encrypted")
    )
    for endpoint_id, encrypted in rows:
        found.setdefault(endpoint_id, []).append(decrypt(encrypted))
    return found
