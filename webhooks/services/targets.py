"""Where a webhook may go: the SSRF guard (``core.ssrf``) with this project's settings.

With WEBHOOK_ALLOW_PRIVATE_TARGETS off (production), an endpoint must be https and every
address its host resolves to must be public: checked when the endpoint is saved, and again
when each request connects (the transport connects only to an address it checked, so a DNS
answer that changes in between is caught). Redirects are never followed.
"""

from __future__ import annotations

import httpx
from django.conf import settings

from core import ssrf

UnsafeTarget = ssrf.UnsafeURL


def check_target(url: str, *, resolve: bool = True) -> None:
    """Raise UnsafeTarget, naming the problem, for a URL a webhook may not be sent to."""
    allow = settings.WEBHOOK_ALLOW_PRIVATE_TARGETS
    ssrf.check_url(url, allow_private=allow, require_https=not allow, resolve_host=resolve)


def http_client(max_connections: int) -> httpx.Client:
    """A client for deliveries: no redirects, the timeouts of the settings, and connections
    only to addresses the guard allows."""
    return ssrf.safe_client(
        allow_private=settings.WEBHOOK_ALLOW_PRIVATE_TARGETS,
        timeout=httpx.Timeout(settings.WEBHOOK_TIMEOUT, connect=settings.WEBHOOK_CONNECT_TIMEOUT),
        limits=httpx.Limits(
            max_connections=max_connections, max_keepalive_connections=max_connections
        ),
    )
