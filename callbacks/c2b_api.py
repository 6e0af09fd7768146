"""Daraja's C2B URLs, one pair per M-Pesa account (``/c2b/<token>/validation/`` and
``/c2b/<token>/confirmation/``): no API key and no CSRF; the account's token in the path is
what ties a request to the account.

- Validation: answered at once from the account's rules (``payments.c2b.c2b_validate``) with
  ``ResultCode`` ``0`` or a ``C2B0001x`` code; the request is stored whole with the answer,
  in one INSERT, accepted or not.
- Confirmation: stored whole and answered ``{"ResultCode": 0, "ResultDesc": "Success"}`` at
  once, like an STK callback; the inbox's workers record the payment
  (``payments.c2b.payment_receive``).

A request with an unknown token, an oversized body, or (``enforce``) a source outside the
allowlist is recorded as ``rejected``, as STK callbacks are.
"""

from __future__ import annotations

import json
import logging

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.views.decorators.csrf import csrf_exempt

from core.logging import ctx
from core.net import client_ip, ip_allowed
from daraja.c2b import parse_c2b_notification
from daraja.parsing import PayloadError
from payments.accounts import account_of_token
from payments.c2b import OTHER_ERROR, ValidationAnswer, c2b_validate
from payments.models import MpesaAccount

from .api import _TOKEN, _error, receive_or_journal
from .models import CallbackKind, CallbackState
from .services import callback_receive, callback_refuse

logger = logging.getLogger(__name__)

_CONFIRMED = b'{"ResultCode": 0, "ResultDesc": "Success"}'


def _json(body: dict[str, str]) -> HttpResponse:
    return HttpResponse(json.dumps(body), content_type="application/json")


def _screen(
    request: HttpRequest, token: str, kind: str, body: bytes
) -> tuple[dict[str, object], MpesaAccount | None, bool, HttpResponse | None]:
    """Check what every C2B request must pass: the size, the token, the source address.
    Returns the fields to store it with, the account, whether the source is outside the
    allowlist, and the response when it is refused here."""
    common: dict[str, object] = {
        "content_type": request.META.get("CONTENT_TYPE", ""),
        "headers": request.headers,
        "source_ip": client_ip(request),
        "token": token,
        "kind": kind,
    }
    limit = settings.CALLBACK_MAX_BODY_BYTES
    # A confirmation is stored whatever the account's state: a few seconds' old view of the
    # account will do. Validation reads the account's rules as they are now.
    cached = kind == CallbackKind.C2B_CONFIRMATION
    account = account_of_token(token, cached=cached) if _TOKEN.match(token) else None
    ip = str(common["source_ip"]) if common["source_ip"] else None
    if len(body) > limit:
        callback_refuse(
            body=body,
            error=f"body larger than {limit} bytes (truncated)",
            known_token=account is not None,
            **common,  # type: ignore[arg-type]
        )
        return common, account, False, _error(413, "payload_too_large", f"Over {limit} B.")
    mode = settings.MPESA_CALLBACK_IP_MODE
    from_daraja = ip_allowed(ip, settings.MPESA_CALLBACK_ALLOWED_IPS)
    outsider = mode != "off" and not from_daraja
    if outsider and mode == "enforce":
        callback_refuse(
            body=body,
            error=f"source address {ip} is not on the callback allowlist",
            known_token=account is not None,
            source_flagged=True,
            **common,  # type: ignore[arg-type]
        )
        logger.warning("C2B request from a non-allowlisted address refused", extra=ctx(ip=ip))
        return common, account, True, _error(403, "forbidden_source", "Not allowed.")
    if account is None:
        callback_refuse(
            body=body,
            error="unknown C2B URL token" if token else "C2B URL has no token",
            source_flagged=outsider,
            from_daraja=from_daraja,
            **common,  # type: ignore[arg-type]
        )
        logger.warning("C2B request with an unknown token refused", extra=ctx(ip=ip))
    return common, account, outsider, None


@csrf_exempt
def c2b_validation(request: HttpRequest, token: str = "") -> HttpResponse:
    """With the database down, the request is kept in the journal and not answered (503):
    M-Pesa then applies the account's ResponseType, the merchant's own choice for a
    validation URL that cannot answer."""
    return receive_or_journal(
        request,
        token,
        CallbackKind.C2B_VALIDATION,
        _validation,
        lambda: _error(503, "unavailable", "Cannot validate now."),
    )


@csrf_exempt
def c2b_confirmation(request: HttpRequest, token: str = "") -> HttpResponse:
    """With the database down, the confirmation is kept in the journal and answered as
    usual: Daraja does not send it again."""
    return receive_or_journal(
        request,
        token,
        CallbackKind.C2B_CONFIRMATION,
        _confirmation,
        lambda: HttpResponse(_CONFIRMED, content_type="application/json"),
    )


def _validation(request: HttpRequest, token: str, body: bytes) -> HttpResponse:
    common, account, outsider, refused = _screen(request, token, CallbackKind.C2B_VALIDATION, body)
    if refused is not None:
        return refused
    if account is None:
        return _json(ValidationAnswer(OTHER_ERROR, "unknown token").body())
    third_party = ""
    try:
        notification = parse_c2b_notification(body)
    except PayloadError as exc:
        answer = ValidationAnswer(OTHER_ERROR, f"unreadable request: {exc}")
    else:
        third_party = notification.third_party_trans_id
        answer = c2b_validate(account, notification)
    reply = answer.body(third_party)
    callback_receive(
        body=body,
        source_flagged=outsider,
        state=CallbackState.PROCESSED if answer.accepted else CallbackState.REJECTED,
        error="" if answer.accepted else answer.reason,
        answer=reply,
        **common,  # type: ignore[arg-type]
    )
    logger.info(
        "C2B validation answered",
        extra=ctx(shortcode=account.shortcode, code=answer.code, reason=answer.reason),
    )
    return _json(reply)


def _confirmation(request: HttpRequest, token: str, body: bytes) -> HttpResponse:
    common, account, outsider, refused = _screen(
        request, token, CallbackKind.C2B_CONFIRMATION, body
    )
    if refused is not None:
        return refused
    if account is not None:
        callback = callback_receive(body=body, source_flagged=outsider, **common)  # type: ignore[arg-type]
        logger.info("C2B confirmation stored", extra=ctx(callback_id=callback.pk))
    # The same answer for an unknown token: a forger learns nothing.
    return HttpResponse(_CONFIRMED, content_type="application/json")
