"""Daraja's callback endpoint: store first, answer fast, process later.

No API key and no CSRF (Daraja cannot send them); the per-payment token in the path is what
ties a callback to a payment. A callback whose token belongs to a payment is stored whole and
answered 200 in milliseconds, whatever its body (empty, non-JSON, wrongly shaped): processing
decides the rest. A callback refused here (a missing, malformed or unknown token, an
oversized body, or in ``enforce`` mode a source address outside the allowlist) is recorded as
``rejected`` and never processed; unless its token is a payment's, only its body's SHA-256
and a prefix are kept, for a bounded number per source address (callbacks.limits).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable

from django.conf import settings
from django.db import InterfaceError, OperationalError
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt

from core.logging import ctx
from core.metrics import CALLBACKS_RECEIVED, count
from core.net import client_ip, ip_allowed

from .journal import JournalFull, journal_append, journal_drain_soon
from .models import CallbackKind
from .services import callback_receive, callback_refuse, token_payment
from .services.intake import kept_headers

logger = logging.getLogger(__name__)

_ACCEPTED = b'{"ResultCode": 0, "ResultDesc": "Accepted"}'
# Tokens we issue are secrets.token_urlsafe(32): 43 URL-safe characters.
_TOKEN = re.compile(r"^[A-Za-z0-9_-]{20,128}$")


def _error(status: int, code: str, message: str) -> JsonResponse:
    return JsonResponse({"error": {"code": code, "message": message}}, status=status)


def _accepted() -> HttpResponse:
    return HttpResponse(_ACCEPTED, content_type="application/json")


# The database cannot take the request now (down, restarting, unreachable).
DATABASE_DOWN = (OperationalError, InterfaceError)


def journaled(
    request: HttpRequest, kind: str, token: str, body: bytes, error: Exception
) -> HttpResponse | None:
    """Keep a request the database could not take in this host's journal. None when it is
    kept (the caller answers as usual); else the response saying it was not."""
    if len(body) > settings.CALLBACK_MAX_BODY_BYTES:
        return _error(413, "payload_too_large", "Body too large.")
    try:
        journal_append(
            kind=kind,
            token=token,
            body=body,
            content_type=request.META.get("CONTENT_TYPE", ""),
            headers=kept_headers(request.headers),
            source_ip=client_ip(request),
        )
    except (JournalFull, OSError) as exc:
        count(CALLBACKS_RECEIVED, route=kind, outcome="lost")
        logger.error(
            "request lost: the database and the journal are both unavailable",
            extra=ctx(kind=kind, database=type(error).__name__, journal=str(exc)[:200]),
        )
        return _error(500, "unavailable", "Could not store the request; send it again.")
    count(CALLBACKS_RECEIVED, route=kind, outcome="journaled")
    return None


def receive_or_journal(
    request: HttpRequest,
    token: str,
    kind: str,
    handle: Callable[[HttpRequest, str, bytes], HttpResponse],
    when_journaled: Callable[[], HttpResponse],
) -> HttpResponse:
    """Every inbound route: POST only; the body read once (up to one byte over the limit);
    ``handle`` stores and answers it; if the database cannot take it, it is journaled and
    answered with ``when_journaled()``. After a request is stored, a journal left by an
    outage is drained in the background."""
    if request.method != "POST":
        refusal = _error(405, "method_not_allowed", "Daraja's requests must be POSTed.")
        refusal["Allow"] = "POST"
        return refusal
    body = request.read(settings.CALLBACK_MAX_BODY_BYTES + 1)
    try:
        response = handle(request, token, body)
    except DATABASE_DOWN as exc:
        return journaled(request, kind, token, body, exc) or when_journaled()
    journal_drain_soon()
    return response


@csrf_exempt
def stk_callback(request: HttpRequest, token: str = "") -> HttpResponse:
    return receive_or_journal(request, token, CallbackKind.STK, _stk_callback, _accepted)


def _stk_callback(request: HttpRequest, token: str, body: bytes) -> HttpResponse:
    limit = settings.CALLBACK_MAX_BODY_BYTES
    ip = client_ip(request)
    well_formed = bool(_TOKEN.match(token))
    payment = token_payment(token) if well_formed else None
    common = {
        "body": body,
        "content_type": request.META.get("CONTENT_TYPE", ""),
        "headers": request.headers,
        "source_ip": ip,
        "token": token,
    }
    if len(body) > limit:
        callback_refuse(
            error=f"body larger than {limit} bytes (truncated)", payment=payment, **common
        )
        logger.warning("oversized callback refused", extra=ctx(limit=limit))
        return _error(413, "payload_too_large", f"Body over {limit} bytes.")

    mode = settings.MPESA_CALLBACK_IP_MODE
    from_daraja = ip_allowed(ip, settings.MPESA_CALLBACK_ALLOWED_IPS)
    outsider = mode != "off" and not from_daraja
    if outsider and mode == "enforce":
        callback_refuse(
            error=f"source address {ip} is not on the callback allowlist",
            payment=payment,
            source_flagged=True,
            **common,
        )
        logger.warning("callback from a non-allowlisted address refused", extra=ctx(ip=ip))
        return _error(403, "forbidden_source", "This address may not post callbacks.")
    if payment is None:
        # Answer like any other callback: a forger learns nothing about what we accept.
        if not token:
            error, reason = "callback URL has no token", "callback without a token"
        elif not well_formed:
            error, reason = "missing or malformed callback token", "callback with a malformed token"
        else:
            error, reason = "unknown callback token", "callback with an unknown token"
        callback_refuse(
            error=error,
            flag_reason=reason,
            source_flagged=outsider,
            from_daraja=from_daraja,
            **common,
        )
        logger.warning("callback with a missing or unknown token refused", extra=ctx(ip=ip))
        return _accepted()
    callback = callback_receive(source_flagged=outsider, **common)
    if outsider:
        logger.warning(
            "callback from a non-allowlisted address", extra=ctx(callback_id=callback.pk, ip=ip)
        )
    logger.info("callback stored", extra=ctx(callback_id=callback.pk, bytes=len(body)))
    return _accepted()
