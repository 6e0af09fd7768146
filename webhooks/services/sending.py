"""One delivery attempt: the event's body, signed per Standard Webhooks with every secret
that still signs, POSTed with connect and total timeouts, no redirects followed, and only
the first WEBHOOK_RESPONSE_KEEP_BYTES of the answer read."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
from django.conf import settings
from standardwebhooks.webhooks import Webhook

from events.models import Event

from .targets import UnsafeTarget, check_target

USER_AGENT = "mpesa-payments-webhooks/1"


def event_body(event: Event) -> bytes:
    """What a receiver gets: the event's id, type, time, API version and object."""
    return json.dumps(
        {
            "id": event.id,
            "type": event.type,
            "timestamp": event.created_at.astimezone(UTC).isoformat().replace("+00:00", "Z"),
            "api_version": event.api_version,
            "data": event.data,
        },
        separators=(",", ":"),
        ensure_ascii=False,
    ).encode()


def signed_headers(event_id: str, body: bytes, secrets: list[str], now: datetime) -> dict[str, str]:
    signatures = " ".join(
        Webhook(secret).sign(msg_id=event_id, timestamp=now, data=body) for secret in secrets
    )
    return {
        "content-type": "application/json",
        "user-agent": USER_AGENT,
        "webhook-id": event_id,
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": signatures,
    }


@dataclass(frozen=True)
class AttemptResult:
    delivery_id: int
    endpoint_id: Any
    started_at: datetime
    latency_ms: int
    status_code: int | None
    error: str
    response_body: str

    @property
    def delivered(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


def attempt(
    client: httpx.Client,
    *,
    delivery_id: int,
    endpoint_id: Any,
    url: str,
    event_id: str,
    body: bytes,
    secrets: list[str],
) -> AttemptResult:
    """Send once; never raises (every failure is a result)."""
    started = datetime.now(UTC)
    clock = time.monotonic()
    status: int | None = None
    error = ""
    kept = b""
    try:
        if not secrets:
            raise UnsafeTarget("the endpoint has no signing secret")
        # What the URL says (https, no credentials, no private literal); its host's addresses
        # are checked by the client's transport as it connects (targets.http_client), so a
        # name is resolved once a connection, not once more for every delivery.
        check_target(url, resolve=False)
        headers = signed_headers(event_id, body, secrets, started)
        with client.stream("POST", url, content=body, headers=headers) as response:
            status = response.status_code
            limit = settings.WEBHOOK_RESPONSE_KEEP_BYTES
            deadline = clock + settings.WEBHOOK_TIMEOUT
            for chunk in response.iter_raw():
                if len(kept) < limit:
                    kept += chunk[: limit - len(kept)]
                if len(kept) >= limit or time.monotonic() > deadline:
                    break
        if not 200 <= status < 300:
            error = f"HTTP {status}" + (
                " (redirects are not followed)" if 300 <= status < 400 else ""
            )
    except UnsafeTarget as exc:
        error = f"refused: {exc}"
    except httpx.TimeoutException as exc:
        error = f"timed out ({type(exc).__name__})"
    except httpx.HTTPError as exc:
        error = f"{type(exc).__name__}: {exc}"[:500]
    return AttemptResult(
        delivery_id=delivery_id,
        endpoint_id=endpoint_id,
        started_at=started,
        latency_ms=int((time.monotonic() - clock) * 1000),
        status_code=status,
        error=error[:500],
        response_body=kept.decode("utf-8", errors="replace"),
    )
