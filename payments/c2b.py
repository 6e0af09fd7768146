"""C2B payments: paybill and till payments the customer makes from the phone.

- :func:`c2b_validate` answers a validation request from the account's rules, with Daraja's
  codes (``0`` accepted, ``C2B00012`` invalid account number, ``C2B00013`` invalid amount,
  ``C2B00015`` invalid shortcode, ``C2B00016`` other error).
- :func:`payment_receive` records a confirmation (or any later evidence of C2B money) as a
  payment, once per receipt: the same TransID again changes nothing; a confirmation of an STK
  Push paid into the same shortcode (Daraja's double notification) credits that push's
  payment instead of making a second one, whichever of the two notifications comes first.

Every new C2B payment is created INITIATED and moved to SUCCESS by the transition function,
with its audit events, and emits ``payment.received`` (and ``payment.succeeded``, so a
receiver that credits on that one hears of it) into the outbox in the same transaction.
"""

from __future__ import annotations

import hashlib
import logging
import re
import secrets
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from core.logging import ctx
from core.models import hash_secret
from core.phones import InvalidPhoneNumber, normalize_phone
from daraja.c2b import C2BNotification, MsisdnForm

from .events import RECEIVED, emit_payment_event
from .known_phones import phone_of_hash, phones_remember
from .models import (
    Channel,
    EventKind,
    EventSource,
    KnownReference,
    MpesaAccount,
    Payment,
    PaymentEvent,
    PaymentStatus,
)
from .outcomes import Evidence, Verdict, payment_apply_evidence
from .services.transitions import payment_flag, payment_record_event, payment_transition

logger = logging.getLogger(__name__)

ACCEPTED = "0"
INVALID_MSISDN = "C2B00011"
INVALID_ACCOUNT = "C2B00012"
INVALID_AMOUNT = "C2B00013"
INVALID_KYC = "C2B00014"
INVALID_SHORTCODE = "C2B00015"
OTHER_ERROR = "C2B00016"

# How far back a confirmation looks for the STK Push it may be the double notification of.
STK_MATCH_WINDOW = timedelta(hours=24)


@dataclass(frozen=True)
class ValidationAnswer:
    code: str
    reason: str  # ours, for the log and the admin (Daraja only sees ResultDesc)

    @property
    def accepted(self) -> bool:
        return self.code == ACCEPTED

    def body(self, third_party_trans_id: str = "") -> dict[str, str]:
        """What Daraja gets back: ``ResultCode`` and ``ResultDesc``, and the request's
        ``ThirdPartyTransID`` echoed when it carried one."""
        body = {
            "ResultCode": self.code,
            "ResultDesc": "Accepted" if self.accepted else "Rejected",
        }
        if third_party_trans_id:
            body["ThirdPartyTransID"] = third_party_trans_id
        return body


def c2b_validate(account: MpesaAccount, notification: C2BNotification) -> ValidationAnswer:
    """The account's rules, in order: the shortcode, the amount limits, the account number's
    pattern, the known references (and the amount one of them expects)."""
    if not account.enabled:
        return ValidationAnswer(INVALID_SHORTCODE, "the account is disabled")
    if notification.shortcode != account.shortcode:
        return ValidationAnswer(
            INVALID_SHORTCODE,
            f"shortcode {notification.shortcode} is not this account's ({account.shortcode})",
        )
    amount = notification.amount
    if account.min_amount is not None and amount < account.min_amount:
        return ValidationAnswer(INVALID_AMOUNT, f"{amount} is below {account.min_amount}")
    if account.max_amount is not None and amount > account.max_amount:
        return ValidationAnswer(INVALID_AMOUNT, f"{amount} is above {account.max_amount}")
    reference = notification.bill_ref_number
    if account.account_pattern:
        try:
            fits = re.fullmatch(account.account_pattern, reference) is not None
        except re.error:
            return ValidationAnswer(OTHER_ERROR, "the account's pattern is not valid")
        if not fits:
            return ValidationAnswer(
                INVALID_ACCOUNT, f"account number {reference!r} does not match the pattern"
            )
    if account.require_known_reference:
        known = KnownReference.objects.filter(
            account=account, key=KnownReference.key_of(reference), active=True
        ).first()
        if known is None:
            return ValidationAnswer(INVALID_ACCOUNT, f"account number {reference!r} is not known")
        if known.amount is not None and known.amount != amount:
            return ValidationAnswer(
                INVALID_AMOUNT, f"{reference!r} expects {known.amount}, not {amount}"
            )
    return ValidationAnswer(ACCEPTED, "accepted")


def payer_agrees(sent: str, phone: str) -> bool | None:
    """Whether the MSISDN M-Pesa sent (plain, masked or SHA-256) can be ``phone``
    (``2547…``): True, False, or None when it says nothing (empty, or masked to nothing)."""
    text = "".join(sent.split())
    if not text:
        return None
    if re.fullmatch(r"[0-9a-fA-F]{64}", text):
        return hashlib.sha256(phone.encode()).hexdigest() == text.lower()
    if text.lstrip("+").isdigit():
        try:
            return normalize_phone(text) == phone
        except InvalidPhoneNumber:
            return False
    visible = re.split(r"[*xX]+", text)
    prefix, suffix = visible[0], visible[-1] if len(visible) > 1 else ""
    if not prefix and not suffix:
        return None
    return phone.startswith(prefix) and phone.endswith(suffix)


@dataclass(frozen=True)
class Received:
    """What :func:`payment_receive` did: ``verdict`` APPLIED (a new payment, or the STK
    payment it credited), DUPLICATE (the receipt is already recorded) or REVIEW."""

    verdict: Verdict
    payment: Payment
    detail: str
    created: bool = False


def payment_receive(
    *,
    account: MpesaAccount,
    notification: C2BNotification,
    source: str = EventSource.C2B,
    callback_id: int | None = None,
    record: dict[str, Any] | None = None,
) -> Received:
    """Record C2B money once. Runs in one transaction; safe to repeat and to race (the
    receipt's unique constraint decides between two concurrent confirmations)."""
    facts = {**notification.evidence(), **(record or {})}
    if callback_id is not None:
        facts["callback_id"] = callback_id
    with transaction.atomic():
        existing = (
            Payment.objects.select_for_update()
            .filter(mpesa_receipt_number=notification.trans_id)
            .first()
        )
        if existing is not None:
            return _already_recorded(existing, notification, source, callback_id, facts)
        stk = _stk_payment_for(account, notification)
        if stk is not None:
            evidence = Evidence(
                source=source,
                succeeded=True,
                receipt_number=notification.trans_id,
                amount=notification.amount,
                transaction_date=notification.trans_time,
                phone_number=notification.msisdn,
                record={**facts, "double_notification": True},
                reason="C2B confirmation of the STK Push (double notification)",
                callback_id=callback_id,
            )
            outcome = payment_apply_evidence(payment=stk, evidence=evidence, locked=True)
            if outcome.verdict in (Verdict.APPLIED, Verdict.DUPLICATE):
                return Received(outcome.verdict, stk, "credited the STK Push it confirms")
        try:
            with transaction.atomic():
                payment = _create(account, notification, source, callback_id, facts)
        except IntegrityError:
            # A concurrent confirmation of the same receipt won: this one is its duplicate.
            existing = Payment.objects.select_for_update().get(
                mpesa_receipt_number=notification.trans_id
            )
            return _already_recorded(existing, notification, source, callback_id, facts)
    logger.info(
        "C2B payment received",
        extra=ctx(payment_id=payment.pk, shortcode=account.shortcode),
    )
    if payment.needs_review:
        return Received(Verdict.REVIEW, payment, "recorded, kept for review", created=True)
    return Received(Verdict.APPLIED, payment, "recorded", created=True)


def _already_recorded(
    existing: Payment,
    notification: C2BNotification,
    source: str,
    callback_id: int | None,
    facts: dict[str, Any],
) -> Received:
    if existing.amount != notification.amount and existing.paid_amount != notification.amount:
        reason = (
            f"C2B notification of receipt {notification.trans_id} for {notification.amount}, "
            f"recorded for {existing.paid_amount or existing.amount}"
        )
        payment_flag(
            payment=existing, source=source, reason=reason, evidence=facts, callback_id=callback_id
        )
        return Received(Verdict.REVIEW, existing, reason)
    if existing.channel == Channel.STK and not _noted(existing, source):
        # The first C2B notice of an STK Push already credited: on its trail, once.
        payment_record_event(
            payment=existing,
            kind=EventKind.NOTE,
            source=source,
            reason="C2B confirmation of the same receipt (double notification)",
            evidence={**facts, "double_notification": True},
            callback_id=callback_id,
        )
    return Received(Verdict.DUPLICATE, existing, f"receipt {notification.trans_id} recorded")


def _noted(payment: Payment, source: str) -> bool:
    return PaymentEvent.objects.filter(payment=payment, kind=EventKind.NOTE, source=source).exists()


def _stk_payment_for(account: MpesaAccount, notification: C2BNotification) -> Payment | None:
    """The one STK Push this confirmation can be the double notification of: pushed from this
    account (a push made before accounts existed: to the MPESA_* shortcode), waiting for its
    result (or FAILED only because we stopped waiting), for the same amount and account
    reference (exactly: the confirmation of a push carries the push's AccountReference, and the
    equality is served by the account reference's index), and whose phone the MSISDN agrees
    with. None when there is none, or more than one."""
    if not notification.bill_ref_number:
        return None
    pushed_here = Q(account=account)
    if account.shortcode in {settings.MPESA_SHORTCODE, settings.MPESA_TILL_NUMBER} - {""}:
        pushed_here |= Q(account__isnull=True)
    since = timezone.now() - STK_MATCH_WINDOW
    candidates = list(
        Payment.objects.select_for_update()
        .filter(pushed_here)
        .filter(
            channel=Channel.STK,
            amount=notification.amount,
            account_reference=notification.bill_ref_number,
            mpesa_receipt_number__isnull=True,
            created_at__gte=since,
        )
        .filter(
            Q(status__in=(PaymentStatus.INITIATED, PaymentStatus.PENDING))
            | Q(status=PaymentStatus.FAILED, failure_final=False)
        )
        .order_by("pk")[:10]
    )
    agreeing = [p for p in candidates if payer_agrees(notification.msisdn, p.phone_number)]
    if len(agreeing) == 1:
        return agreeing[0]
    if not agreeing and notification.msisdn_form == MsisdnForm.NONE and len(candidates) == 1:
        return candidates[0]
    return None


def _create(
    account: MpesaAccount,
    notification: C2BNotification,
    source: str,
    callback_id: int | None,
    facts: dict[str, Any],
) -> Payment:
    phone = ""
    if notification.msisdn_form == MsisdnForm.PLAIN:
        try:
            phone = normalize_phone(notification.msisdn)
        except InvalidPhoneNumber:
            phone = ""
        else:
            phones_remember([phone])
    elif notification.msisdn_form == MsisdnForm.HASHED:
        # A customer we know (a number some payment showed), matched by its hash.
        phone = phone_of_hash(notification.msisdn)
    channel = Channel.TILL if notification.channel == "till" else Channel.PAYBILL
    payment = Payment.objects.create(
        client=account.client,
        account=account,
        channel=channel,
        amount=notification.amount,
        phone_number=phone,
        payer_phone=notification.msisdn,
        payer_name=notification.payer_name[:150],
        account_reference="",
        bill_ref_number=notification.bill_ref_number,
        description="",
        transaction_type=notification.transaction_type
        or ("Buy Goods" if channel == Channel.TILL else "Pay Bill"),
        # C2B money has no callback URL; the column is unique, so it gets a random hash.
        callback_token_hash=hash_secret(secrets.token_urlsafe(32)),
    )
    PaymentEvent.objects.create(
        payment=payment,
        kind=EventKind.CREATED,
        to_status=PaymentStatus.INITIATED,
        source=source,
        evidence=facts,
        callback_id=callback_id,
    )
    payment_transition(
        payment=payment,
        to_status=PaymentStatus.SUCCESS,
        source=source,
        reason=f"{payment.get_channel_display()} payment received",
        evidence=facts,
        callback_id=callback_id,
        fields={
            "mpesa_receipt_number": notification.trans_id,
            "transaction_date": notification.trans_time,
            "paid_amount": notification.amount,
            "result_code": "0",
            "result_desc": "C2B payment received",
        },
        locked=True,
    )
    emit_payment_event(RECEIVED, payment)
    if notification.shortcode != account.shortcode:
        payment_flag(
            payment=payment,
            source=source,
            reason=f"received on shortcode {notification.shortcode} through the URL of "
            f"account {account.shortcode}",
            evidence=facts,
            callback_id=callback_id,
        )
    return payment
