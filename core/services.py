"""Writes for API clients and idempotency keys."""

from __future__ import annotations

import hashlib
import json
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from .models import ApiClient, IdempotencyKey, Scope, default_scopes, hash_secret

API_KEY_PREFIX = "mpk"


@dataclass(frozen=True)
class NewApiKey:
    client: ApiClient
    key: str  # shown once, never stored


def _new_key() -> tuple[str, str]:
    prefix = secrets.token_hex(4)
    return prefix, f"{API_KEY_PREFIX}_{prefix}_{secrets.token_urlsafe(32)}"


def checked_scopes(scopes: list[str] | tuple[str, ...]) -> list[str]:
    """The scopes in :class:`Scope`'s order, each once; an unknown one is a ValueError."""
    unknown = sorted(set(scopes) - set(Scope.values))
    if unknown:
        raise ValueError(f"unknown scope(s) {unknown}; the scopes are {Scope.values}")
    return [scope for scope in Scope.values if scope in scopes]


def api_client_create(
    *,
    name: str,
    scopes: list[str] | tuple[str, ...] | None = None,
    acts_for: ApiClient | None = None,
) -> NewApiKey:
    """A new key; it takes payments only unless ``scopes`` says otherwise. ``acts_for``: a
    second key of that client's merchant (it sees the same payments and statements, and is
    a different person when a credit needs a second one's approval)."""
    granted = checked_scopes(default_scopes() if scopes is None else scopes)
    if not granted:
        raise ValueError("an API key needs at least one scope")
    if acts_for is not None:
        acts_for = acts_for.owner  # one level: a key for a key is a key for its merchant
    prefix, key = _new_key()
    client = ApiClient.objects.create(
        name=name,
        key_prefix=prefix,
        key_hash=hash_secret(key),
        scopes=granted,
        acts_for=acts_for,
    )
    return NewApiKey(client=client, key=key)


def api_client_rotate_key(*, client: ApiClient) -> NewApiKey:
    """A new key for the same client: it sees the client's payments; the old key stops working.

    Only a key's hash is stored, so an existing key cannot be shown again; rotating is how a
    client that lost its key gets one for the same payments."""
    prefix, key = _new_key()
    client.key_prefix = prefix
    client.key_hash = hash_secret(key)
    client.save(update_fields=["key_prefix", "key_hash"])
    return NewApiKey(client=client, key=key)


def api_client_revoke(*, client: ApiClient) -> ApiClient:
    if client.revoked_at is None:
        client.revoked_at = timezone.now()
        client.save(update_fields=["revoked_at"])
    return client


def api_client_touch(*, client: ApiClient) -> None:
    """Record use, at most once a minute per key (not a write per request)."""
    now = timezone.now()
    if client.last_used_at is None or now - client.last_used_at > timedelta(minutes=1):
        ApiClient.objects.filter(pk=client.pk).update(last_used_at=now)
        client.last_used_at = now


def request_fingerprint(*, endpoint: str, body: dict[str, Any]) -> str:
    canonical = json.dumps({"endpoint": endpoint, "body": body}, sort_keys=True, default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


@dataclass(frozen=True)
class IdempotencyClaim:
    """Outcome of claiming a key: ours to run (``created``), an earlier outcome to replay, or
    (``abandoned``) a key whose request stopped after making payment ``record.payment_id``:
    the caller answers with that payment as it stands and completes the key."""

    record: IdempotencyKey
    created: bool
    abandoned: bool = False


class IdempotencyConflict(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def _lease() -> timedelta:
    return timedelta(seconds=settings.IDEMPOTENCY_LEASE_SECONDS)


def _lease_over(record: IdempotencyKey, now: datetime) -> bool:
    expires = record.lease_expires_at or record.created_at + _lease()
    return expires <= now


def idempotency_claim(
    *, client: ApiClient, key: str, endpoint: str, fingerprint: str
) -> IdempotencyClaim:
    """Insert the key (committed at once, leased for IDEMPOTENCY_LEASE_SECONDS) or return the
    existing one.

    The unique constraint makes a concurrent duplicate lose the insert, so two requests with
    the same key can never both go on to call Daraja. A key still in progress past its lease
    belongs to a request that died: if it made no payment, the key is taken again (a
    conditional update, so only one retry takes it); if it did, the claim is ``abandoned``.
    """
    for _ in range(3):
        try:
            with transaction.atomic():
                record = IdempotencyKey.objects.create(
                    client=client,
                    key=key,
                    endpoint=endpoint,
                    fingerprint=fingerprint,
                    lease_expires_at=timezone.now() + _lease(),
                )
            return IdempotencyClaim(record=record, created=True)
        except IntegrityError:
            found = IdempotencyKey.objects.filter(client=client, key=key).first()
        if found is not None:  # else released or purged meanwhile: insert again
            record = found
            break
    else:
        raise IdempotencyConflict(
            "idempotency_key_in_progress",
            "A request with this Idempotency-Key is still being processed; retry shortly.",
        )
    if record.endpoint != endpoint or record.fingerprint != fingerprint:
        raise IdempotencyConflict(
            "idempotency_key_reused",
            "This Idempotency-Key was already used with a different request body or endpoint.",
        )
    if record.state == IdempotencyKey.State.COMPLETED:
        return IdempotencyClaim(record=record, created=False)
    now = timezone.now()
    if _lease_over(record, now):
        if record.payment_id is not None:
            return IdempotencyClaim(record=record, created=False, abandoned=True)
        taken = IdempotencyKey.objects.filter(
            pk=record.pk,
            state=IdempotencyKey.State.IN_PROGRESS,
            payment_id__isnull=True,
            lease_expires_at=record.lease_expires_at,
        ).update(lease_expires_at=now + _lease())
        if taken:
            record.refresh_from_db()
            return IdempotencyClaim(record=record, created=True)
    raise IdempotencyConflict(
        "idempotency_key_in_progress",
        "A request with this Idempotency-Key is still being processed; retry shortly.",
    )


def idempotency_attach(*, record: IdempotencyKey, payment_id: Any) -> None:
    """Record the payment a key's request made; called inside the transaction that creates
    the payment, so that a key never outlives its request without saying so."""
    IdempotencyKey.objects.filter(pk=record.pk).update(payment_id=payment_id)
    record.payment_id = payment_id


def idempotency_complete(
    *, record: IdempotencyKey, status: int, body: dict[str, Any], payment_id: Any = None
) -> None:
    record.state = IdempotencyKey.State.COMPLETED
    record.response_status = status
    record.response_body = body
    record.payment_id = payment_id
    record.completed_at = timezone.now()
    record.save(
        update_fields=["state", "response_status", "response_body", "payment_id", "completed_at"]
    )


def idempotency_release(*, record: IdempotencyKey) -> Any:
    """A key's request failed. Forget the key if its request made no payment (the client may
    retry and nothing was sent); otherwise keep it and return the payment's id, which the
    caller completes the key with: a retry must never send a second push."""
    released = IdempotencyKey.objects.filter(
        pk=record.pk, state=IdempotencyKey.State.IN_PROGRESS, payment_id__isnull=True
    ).delete()[0]
    if released:
        return None
    return IdempotencyKey.objects.filter(pk=record.pk).values_list("payment_id", flat=True).first()


def idempotency_keys_purge(*, now: datetime | None = None) -> int:
    """Delete keys first used more than IDEMPOTENCY_KEY_RETENTION_SECONDS ago (never one
    still leased to a running request). Returns how many."""
    now = now or timezone.now()
    horizon = now - timedelta(seconds=settings.IDEMPOTENCY_KEY_RETENTION_SECONDS)
    return (
        IdempotencyKey.objects.filter(created_at__lt=horizon)
        .exclude(state=IdempotencyKey.State.IN_PROGRESS, lease_expires_at__gt=now)
        .delete()[0]
    )
