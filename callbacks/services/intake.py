"""Receiving callbacks: store the request as received (fast, one INSERT), or record one
refused at intake; then wake up its processing."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping

from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from core.metrics import CALLBACKS_RECEIVED, count
from core.models import hash_secret
from daraja.parsing import PayloadError, StkCallback, parse_stk_callback
from payments.models import EventKind, EventSource, Payment
from payments.services import payment_record_event

from ..models import CallbackKind, CallbackState, InboundCallback
from .wakeup import callback_wake

# Headers worth keeping for forensics; cookies and authorization are never stored.
KEPT_HEADERS = (
    "Content-Type",
    "Content-Length",
    "User-Agent",
    "X-Forwarded-For",
    "X-Real-IP",
    "X-Request-ID",
    "Host",
)


def kept_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """The headers worth keeping, each cut to 500 characters."""
    return {name: headers[name][:500] for name in KEPT_HEADERS if name in headers}


# --- Receive --------------------------------------------------------------------------------


def callback_receive(
    *,
    body: bytes,
    content_type: str,
    headers: Mapping[str, str],
    source_ip: str | None,
    token: str,
    kind: str = CallbackKind.STK,
    state: str = CallbackState.RECEIVED,
    error: str = "",
    source_flagged: bool = False,
    answer: dict[str, str] | None = None,
) -> InboundCallback:
    """Store the request as received, then (after commit) wake up its processing.

    One INSERT, committed on its own (no explicit transaction: BEGIN and COMMIT would double
    the round trips of the hottest path). Called inside a transaction, the wake-up waits for
    its commit as usual; in autocommit, ``on_commit`` runs it as soon as the row is stored."""
    callback = InboundCallback.objects.create(
        kind=kind,
        body=body,
        content_type=content_type[:200],
        headers=kept_headers(headers),
        source_ip=source_ip,
        source_flagged=source_flagged,
        token_hash=hash_secret(token) if token else "",
        dedupe_key=hashlib.sha256(body).hexdigest(),
        body_size=len(body),
        state=state,
        last_error=error,
        processed_at=timezone.now() if state != CallbackState.RECEIVED else None,
        answer=answer,
    )
    if state == CallbackState.RECEIVED:
        transaction.on_commit(lambda: callback_wake(callback_id=callback.pk))
    outcome = "stored" if state != CallbackState.REJECTED else "refused"
    count(CALLBACKS_RECEIVED, route=kind, outcome=outcome)
    return callback


def token_payment(token: str) -> Payment | None:
    """The payment whose callback URL carries ``token``, if any (one indexed lookup). Only
    its id is loaded: intake needs no more, and building the whole row was a sixth of a
    callback's intake CPU."""
    if not token:
        return None
    return Payment.objects.only("pk").filter(callback_token_hash=hash_secret(token)).first()


def callback_refuse(
    *,
    body: bytes,
    content_type: str,
    headers: Mapping[str, str],
    source_ip: str | None,
    token: str,
    error: str,
    payment: Payment | None = None,
    source_flagged: bool = False,
    flag_reason: str = "",
    from_daraja: bool = False,
    known_token: bool = False,
    kind: str = CallbackKind.STK,
) -> InboundCallback | None:
    """Record a callback refused at intake, as ``rejected``; never processed.

    With ``payment`` (its token is that payment's, e.g. a genuine callback from an address
    the allowlist does not know yet) the row is linked and, unless oversized, stored whole,
    like any callback with a valid token. Otherwise only the body's SHA-256, size and
    CALLBACK_REFUSED_BODY_PREFIX_BYTES of it are stored, for at most
    CALLBACK_REFUSED_RATE_LIMIT per source address; past that, the refusal is counted on the
    last row stored for the source and None is returned. ``flag_reason``: a forged token;
    the payment the body's CheckoutRequestID names gets a flag saying so. ``from_daraja``:
    the source is on MPESA_CALLBACK_ALLOWED_IPS, Daraja's own addresses, which no flood comes
    from; such a callback (a genuine one whose payment we do not have, e.g. after a database
    restore: answered 200, Daraja will not send it again) is stored whole and never limited,
    like one with a payment. ``known_token``: the path's token is one we issued (a C2B
    account's): stored whole, like a payment's."""
    from ..limits import refused_slot, refused_stored

    count(CALLBACKS_RECEIVED, route=kind, outcome="refused")
    whole = payment is not None or from_daraja or known_token
    if not whole:
        slot = refused_slot(source_ip)
        if not slot.store:
            if slot.counted_on is not None:
                InboundCallback.objects.filter(pk=slot.counted_on).update(
                    refused_unstored=F("refused_unstored") + 1
                )
            return None
    limit = settings.CALLBACK_MAX_BODY_BYTES
    keep = limit if whole else settings.CALLBACK_REFUSED_BODY_PREFIX_BYTES
    parsed: StkCallback | None = None
    if len(body) <= limit and kind == CallbackKind.STK:
        try:
            parsed = parse_stk_callback(body)
        except PayloadError:
            parsed = None
    callback = InboundCallback.objects.create(
        kind=kind,
        body=body[:keep],
        body_size=len(body),
        body_complete=len(body) <= keep,
        content_type=content_type[:200],
        headers=kept_headers(headers),
        source_ip=source_ip,
        source_flagged=source_flagged,
        token_hash=hash_secret(token) if token else "",
        payment=payment,
        dedupe_key=hashlib.sha256(body).hexdigest(),
        checkout_request_id=parsed.checkout_request_id[:128] if parsed else "",
        state=CallbackState.REJECTED,
        last_error=error,
        processed_at=timezone.now(),
    )
    if not whole:
        refused_stored(source_ip, callback.pk)
    if flag_reason and parsed is not None:
        flag_checkout_target(parsed, callback, flag_reason)
    return callback


def flag_checkout_target(parsed: StkCallback, callback: InboundCallback, reason: str) -> None:
    """A callback that does not authenticate (no token, a forged one) names a payment by its
    CheckoutRequestID: put the attempt on that payment's trail."""
    target = Payment.objects.filter(checkout_request_id=parsed.checkout_request_id).first()
    if target is not None:
        payment_record_event(
            payment=target,
            kind=EventKind.FLAGGED,
            source=EventSource.CALLBACK,
            reason=reason,
            evidence={"callback_id": callback.pk, **parsed.evidence()},
            callback_id=callback.pk,
        )
