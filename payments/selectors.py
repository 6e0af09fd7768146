"""Payment reads."""

from __future__ import annotations

import re
import uuid

from django.db.models import Q, QuerySet

from core.models import ApiClient
from core.phones import InvalidPhoneNumber, normalize_phone

from .accounts import key_accounts
from .models import Payment, PaymentEvent

# What a search term looks like decides where it is looked up: each shape has an index
# (equality and prefix) so that a search reads a few index entries, not every payment.
_CHECKOUT_PREFIX = "ws_CO_"
_SEPARATORS = re.compile(r"[\s\-().]")
# A receipt is 10 uppercase letters and digits (e.g. UKR1ABCDEF); a prefix of one counts
# from 3 characters.
_RECEIPT_PREFIX = re.compile(r"[A-Za-z][A-Za-z0-9]{2,9}")
# Beginnings of a Kenyan mobile number, in the forms normalize_phone reads: 07…/01…, 2547…,
# +2547… (at least 4 digits of the 12, so that a prefix narrows the search).
_PHONE_PREFIX = re.compile(r"(?:0([17][0-9]{2,8})|\+?254([17][0-9]{0,8}))")


def payment_list(*, client: ApiClient, key: ApiClient | None = None) -> QuerySet[Payment]:
    """Payments of one API client only: a client never sees another's payments. ``key``: the
    API key asking; one limited to accounts sees only the payments on those accounts."""
    payments = Payment.objects.filter(client=client).order_by("-created_at", "-id")
    limited = key_accounts(key) if key is not None else None
    if limited is not None:
        payments = payments.filter(account__in=limited)
    return payments


def payment_search(queryset: QuerySet[Payment], term: str) -> QuerySet[Payment]:
    """The payments ``term`` names, recognised from its shape:

    * a UUID: that payment;
    * ``ws_CO_…``: CheckoutRequestIDs starting with it (a whole one is its own prefix);
    * a Kenyan mobile number in any form (``0712 345 678``, ``+254712345678``, ``712345678``):
      that number's payments, normalised as the API stores it;
    * the beginning of one (``07123``, ``2547123``): numbers starting with it;
    * a receipt or the start of one (``UKR1ABCDEF``, ``ukr1a``): receipts starting with it,
      in capitals;
    * and always, except for a UUID or a CheckoutRequestID: account references starting with
      the term as typed.

    Every lookup is an equality or ``LIKE 'prefix%'`` on an indexed column.
    """
    term = term.strip()
    if not term:
        return queryset
    if len(term) in (32, 36):
        try:
            return queryset.filter(pk=uuid.UUID(term))
        except ValueError:
            pass
    if term.lower().startswith(_CHECKOUT_PREFIX.lower()):
        return queryset.filter(
            checkout_request_id__startswith=_CHECKOUT_PREFIX + term[len(_CHECKOUT_PREFIX) :]
        )
    condition = Q(account_reference__startswith=term)
    try:
        condition |= Q(phone_number=normalize_phone(term))
    except InvalidPhoneNumber:
        digits = _SEPARATORS.sub("", term)
        match = _PHONE_PREFIX.fullmatch(digits)
        if match:
            condition |= Q(phone_number__startswith="254" + (match.group(1) or match.group(2)))
    if _RECEIPT_PREFIX.fullmatch(term):
        condition |= Q(mpesa_receipt_number__startswith=term.upper())
    return queryset.filter(condition)


def payment_events(*, payment: Payment) -> QuerySet[PaymentEvent]:
    return PaymentEvent.objects.filter(payment=payment).order_by("created_at", "id")
