"""Daraja's callback endpoint: store first, answer fast, process later.

No API key and no CSRF (Daraja cannot send them); the per-payment token in the path is what
ties a callback to a payment, checked when the callback is processed. Whatever arrives is
stored, even an empty or non-JSON body, and answered 200 in milliseconds.
"""

from __future__ import annotations

import logging

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt

from core.logging import ctx

from .models import CallbackState, InboundCallback
from .services import callback_receive

logger = logging.getLogger(__name__)

_ACCEPTED = b'{"ResultCode": 0, "ResultDesc": "Accepted"}'


@csrf_exempt
def stk_callback(request: HttpRequest, token: str = "") -> HttpResponse:
    if request.method != "POST":
        response = JsonResponse(
            {"error": {"code": "method_not_allowed", "message": "Callbacks must be POSTed."}},
            status=405,
        )
        response["Allow"] = "POST"
        return response
    limit = settings.CALLBACK_MAX_BODY_BYTES
    body = request.read(limit + 1)
    if len(body) > limit:
        # Refused, but still recorded (truncated) so the attempt is visible.
        InboundCallback.objects.create(
            body=body[:limit],
            content_type=request.content_type or "",
            source_ip=request.META.get("REMOTE_ADDR") or None,
            dedupe_key="",
            state=CallbackState.REJECTED,
            last_error=f"body larger than {limit} bytes",
        )
        logger.warning("oversized callback refused", extra=ctx(limit=limit))
        return JsonResponse(
            {"error": {"code": "payload_too_large", "message": f"Body over {limit} bytes."}},
            status=413,
        )
    callback = callback_receive(
        body=body,
        content_type=request.META.get("CONTENT_TYPE", ""),
        headers=dict(request.headers),
        source_ip=request.META.get("REMOTE_ADDR") or None,
        token=token,
    )
    logger.info("callback stored", extra=ctx(callback_id=callback.pk, bytes=len(body)))
    return HttpResponse(_ACCEPTED, content_type="application/json")
