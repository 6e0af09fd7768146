"""Starting a payment: the STK Push flow. Slow I/O (the Daraja call) happens outside any
transaction; what Daraja answered is recorded through the transition function."""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable
from decimal import Decimal
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from core.db import in_transaction
from core.logging import ctx
from core.models import ApiClient, hash_secret
from daraja.errors import (
    DarajaError,
    DarajaProtocolError,
    DarajaServerError,
    DarajaTransportError,
    DarajaUnreachableError,
)

from ..accounts import account_client, account_transaction_type, default_account
from ..known_phones import phones_remember
from ..models import EventKind, EventSource, MpesaAccount, Payment, PaymentEvent, PaymentStatus
from .transitions import InvalidTransition, payment_record_event, payment_transition

logger = logging.getLogger(__name__)


def build_callback_url(token: str) -> str:
    return f"{settings.MPESA_CALLBACK_URL.rstrip('/')}/{token}/"


def payment_create(
    *,
    client: ApiClient | None,
    phone_number: str,
    amount: Decimal,
    account_reference: str,
    description: str,
    account: MpesaAccount | None = None,
    on_created: Callable[[Payment], None] | None = None,
) -> tuple[Payment, str]:
    """Save the payment INITIATED with its first event and commit. Returns it with the
    callback token (only its hash is stored). ``account``: the paybill or till it is pushed
    from (default: the MPESA_* settings' account). ``on_created`` runs in the same
    transaction (the API records the payment on its Idempotency-Key there)."""
    token = secrets.token_urlsafe(32)
    account = account or default_account()
    transaction_type = account_transaction_type(account)
    with transaction.atomic():
        payment = Payment.objects.create(
            client=client,
            account=account,
            amount=amount,
            phone_number=phone_number,
            account_reference=account_reference,
            description=description,
            transaction_type=transaction_type,
            callback_token_hash=hash_secret(token),
        )
        phones_remember([phone_number])
        PaymentEvent.objects.create(
            payment=payment,
            kind=EventKind.CREATED,
            to_status=PaymentStatus.INITIATED,
            source=EventSource.API,
            actor=client.name if client else "",
            evidence={
                "amount": str(amount),
                "account_reference": account_reference,
                "shortcode": account.shortcode,
            },
        )
        if on_created is not None:
            on_created(payment)
    return payment, token


def payment_initiate(
    *,
    client: ApiClient | None,
    phone_number: str,
    amount: Decimal,
    account_reference: str,
    description: str,
    account: MpesaAccount | None = None,
    on_created: Callable[[Payment], None] | None = None,
) -> Payment:
    """The STK flow: commit INITIATED, call Daraja outside any transaction, then record
    PENDING (accepted), FAILED (refused) or leave INITIATED when the outcome is unknown.
    ``account``: the paybill or till to push from, with its own Daraja app and passkey when
    it has them (default: the MPESA_* settings' account). ``on_created`` runs in the
    transaction that creates the payment."""
    if in_transaction():
        raise RuntimeError("payment_initiate must not run inside a transaction")
    payment, token = payment_create(
        client=client,
        phone_number=phone_number,
        amount=amount,
        account_reference=account_reference,
        description=description,
        account=account,
        on_created=on_created,
    )
    assert payment.account is not None
    try:
        accepted = account_client(payment.account).stk_push(
            phone_number=phone_number,
            amount=amount,
            account_reference=account_reference,
            description=description,
            callback_url=build_callback_url(token),
        )
    except DarajaUnreachableError as exc:
        # No connection was made, so no prompt was sent: the payment failed for certain, and
        # the client is told why at once instead of waiting on an INITIATED payment.
        reason = f"STK Push not sent: {exc}.{_simulator_hint()}"
        logger.warning("stk push not sent", extra=ctx(payment_id=payment.pk, error=str(exc)))
        return payment_transition(
            payment=payment,
            to_status=PaymentStatus.FAILED,
            source=EventSource.DARAJA,
            reason=reason,
            evidence=_error_evidence(exc),
            fields={
                "result_code": "daraja_unreachable",
                "result_desc": reason[:500],
                "failure_final": True,
            },
        ).payment
    except (DarajaTransportError, DarajaServerError, DarajaProtocolError) as exc:
        # Daraja may or may not have sent the prompt: do not report a failure we cannot prove.
        Payment.objects.filter(pk=payment.pk).update(initiation_unknown=True)
        payment.initiation_unknown = True
        payment_record_event(
            payment=payment,
            kind=EventKind.NOTE,
            source=EventSource.DARAJA,
            reason=f"STK Push outcome unknown: {exc}",
            evidence=_error_evidence(exc),
        )
        logger.warning("stk push outcome unknown", extra=ctx(payment_id=payment.pk, error=str(exc)))
        return payment
    except DarajaError as exc:
        return payment_transition(
            payment=payment,
            to_status=PaymentStatus.FAILED,
            source=EventSource.DARAJA,
            reason=f"STK Push refused: {exc}",
            evidence=_error_evidence(exc),
            fields={
                "result_code": exc.error_code or "error",
                "result_desc": exc.message[:500],
                "failure_final": True,
            },
        ).payment
    ids = {
        "merchant_request_id": accepted.merchant_request_id,
        "checkout_request_id": accepted.checkout_request_id,
    }
    try:
        return payment_transition(
            payment=payment,
            to_status=PaymentStatus.PENDING,
            source=EventSource.DARAJA,
            reason=accepted.response_description,
            evidence=ids,
            fields=ids,
        ).payment
    except InvalidTransition:
        # The callback (authenticated by the payment's token) was faster than this request and
        # already decided the payment: nothing left to do here.
        payment.refresh_from_db()
        return payment
    except IntegrityError:
        # Daraja handed out a CheckoutRequestID another payment already holds. Never merge two
        # payments: keep this one INITIATED, on record, for a person to look at.
        payment_record_event(
            payment=payment,
            kind=EventKind.FLAGGED,
            source=EventSource.DARAJA,
            reason="Daraja returned a CheckoutRequestID that belongs to another payment",
            evidence=ids,
            flag=True,
        )
        payment.refresh_from_db()
        return payment


def payment_initiation_interrupted(*, payment_id: Any, reason: str) -> Payment:
    """The request that created this payment stopped before recording Daraja's answer (its
    process was killed, or a write after the push failed): Daraja may or may not have sent
    the prompt. An INITIATED payment is marked so, on its trail, once; callbacks, STK Query
    and expiry resolve it as after a lost answer. Returns the payment as it stands."""
    with transaction.atomic():
        marked = Payment.objects.filter(
            pk=payment_id, status=PaymentStatus.INITIATED, initiation_unknown=False
        ).update(initiation_unknown=True, updated_at=timezone.now())
        payment = Payment.objects.get(pk=payment_id)
        if marked:
            PaymentEvent.objects.create(
                payment=payment,
                kind=EventKind.NOTE,
                source=EventSource.SYSTEM,
                reason=f"STK Push outcome unknown: {reason}",
            )
    if marked:
        logger.warning("stk push outcome unknown", extra=ctx(payment_id=payment.pk, error=reason))
    return payment


def _simulator_hint() -> str:
    """With MPESA_ENV=simulator, how to start the simulator the settings point at."""
    if settings.MPESA_ENV != "simulator":
        return ""
    port = urlsplit(settings.MPESA_BASE_URL).port
    option = f" --port {port}" if port and port != 8001 else ""
    return f" Is the local Daraja simulator running? Start it with: python -m simulator{option}"


def _error_evidence(exc: DarajaError) -> dict[str, Any]:
    return {
        "error_type": type(exc).__name__,
        "error_code": exc.error_code,
        "error_message": exc.message,
        "http_status": exc.http_status,
        "request_id": exc.request_id,
    }
