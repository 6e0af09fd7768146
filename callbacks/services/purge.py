"""Retention of raw bodies: refused and invalid callbacks that concern no payment lose
their body after CALLBACK_BODY_RETENTION_DAYS; the row, the body's SHA-256 and size stay."""

from __future__ import annotations

import logging
from datetime import timedelta

from django.conf import settings
from django.db.models import Exists, OuterRef
from django.utils import timezone

from core.logging import ctx
from core.net import ip_allowed
from payments.models import Payment, PaymentEvent

from ..models import CallbackState, InboundCallback

logger = logging.getLogger(__name__)

# Only these states' bodies are ever purged, and only for callbacks linked to no payment,
# whose token is no payment's, named by no payment's event and sent from no address of
# MPESA_CALLBACK_ALLOWED_IPS: a refused or unreadable request nobody's payment depends on.
# Evidence of money (processed, duplicate, ignored, review, orphan, failed, anything linked to
# or carrying the token of a payment, a forgery flagged on the payment it aimed at, what
# Daraja itself sent for a payment we do not have) is kept.
PURGEABLE_STATES = (CallbackState.REJECTED, CallbackState.INVALID)


def callback_bodies_purge(*, older_than_days: int | None = None, batch_size: int = 1000) -> int:
    """Empty the stored bodies of refused and invalid callbacks that concern no payment, did
    not come from Daraja's addresses (MPESA_CALLBACK_ALLOWED_IPS) and arrived more than
    ``older_than_days`` (CALLBACK_BODY_RETENTION_DAYS) ago. The row stays, with the body's
    SHA-256, its size, the headers and the error. Returns how many."""
    days = settings.CALLBACK_BODY_RETENTION_DAYS if older_than_days is None else older_than_days
    cutoff = timezone.now() - timedelta(days=days)
    due = InboundCallback.objects.filter(
        state__in=PURGEABLE_STATES,
        payment__isnull=True,
        received_at__lt=cutoff,
        body_purged_at__isnull=True,
    ).exclude(
        Exists(PaymentEvent.objects.filter(callback_id=OuterRef("pk")))
        # A payment's token in the path: ours, even if not linked (refused callbacks were
        # stored unlinked before they were linked at intake; the migration linked invalid ones).
        | Exists(
            Payment.objects.filter(callback_token_hash=OuterRef("token_hash")).exclude(
                callback_token_hash=""
            )
        )
    )
    allowlist = settings.MPESA_CALLBACK_ALLOWED_IPS
    total = 0
    after = 0
    while True:
        rows = list(
            due.filter(id__gt=after).order_by("id").values_list("id", "source_ip")[:batch_size]
        )
        if not rows:
            break
        after = rows[-1][0]
        ids = [pk for pk, source in rows if not ip_allowed(source, allowlist)]
        total += InboundCallback.objects.filter(pk__in=ids, payment__isnull=True).update(
            body=b"", body_complete=False, body_purged_at=timezone.now()
        )
    if total:
        logger.info("purged refused and invalid callback bodies", extra=ctx(count=total, days=days))
    return total
