"""Pull Transactions: the recovery layer for C2B. Daraja does not send a confirmation again,
so a confirmation lost on the way (our outage, a network fault) would be money we never
recorded: each account with ``pull_enabled`` has its recent transactions pulled periodically
(the beat runs :func:`pull_due_accounts`) and whatever no confirmation brought is recorded by
the same function as a confirmation (``payments.c2b.payment_receive``, source ``pull``, the
pulled transaction kept as evidence).

Each pull reads the window from a little before the end of the last one pulled whole
(``pulled_until``, less PULL_OVERLAP) to now, page by page (``OffSetValue``) until an empty
page, and never further back than Daraja keeps (48 hours). A failed pull changes nothing
but the account's ``pull_failing_since``/``pull_last_error`` and is logged as an error (the
alert); the next one reads the same window again.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import F
from django.utils import timezone

from core.logging import ctx
from daraja.c2b import BUY_GOODS, PAY_BILL, C2BNotification
from daraja.client import DarajaClient
from daraja.errors import DarajaError
from daraja.parsing import PayloadError
from daraja.pull import PulledTransaction, page_transactions, parse_pulled

from .accounts import account_client
from .c2b import payment_receive
from .models import EventSource, MpesaAccount
from .outcomes import Verdict

logger = logging.getLogger(__name__)

# How far back Daraja answers a query.
PULL_REACH = timedelta(hours=48)
# Each window starts this much before the last one ended: a transaction completed at the
# edge (or listed late) is read again, and recorded once.
PULL_OVERLAP = timedelta(minutes=10)
MAX_PAGES = 1000


@dataclass
class PullResult:
    read: int = 0
    recorded: int = 0  # new payments: confirmations that never came
    known: int = 0
    refused: int = 0  # transactions that could not be read or were kept for review
    error: str = ""


def as_notification(account: MpesaAccount, pulled: PulledTransaction) -> C2BNotification:
    return C2BNotification(
        transaction_type=BUY_GOODS if pulled.is_till else PAY_BILL,
        trans_id=pulled.trans_id,
        trans_time=pulled.trans_time,
        amount=pulled.amount,
        shortcode=account.shortcode,
        bill_ref_number=pulled.bill_ref_number,
        invoice_number="",
        third_party_trans_id="",
        org_account_balance=None,
        msisdn=pulled.msisdn,
        first_name=pulled.sender,
        middle_name="",
        last_name="",
    )


def account_pull(
    account: MpesaAccount, *, now: datetime | None = None, client: DarajaClient | None = None
) -> PullResult:
    """Pull the account's recent transactions and record those no confirmation brought."""
    now = now or timezone.now()
    start = max(now - PULL_REACH, (account.pulled_until or now - PULL_REACH) - PULL_OVERLAP)
    daraja = client or account_client(account)
    result = PullResult()
    offset = 0
    try:
        for _ in range(MAX_PAGES):
            page = page_transactions(
                daraja.pull_query(shortcode=account.shortcode, start=start, end=now, offset=offset)
            )
            if not page:
                break
            offset += len(page)
            for item in page:
                _record(account, item, result)
        else:
            raise PayloadError(f"more than {MAX_PAGES} pages: stopped")
    except (DarajaError, PayloadError) as exc:
        result.error = str(exc)
        MpesaAccount.objects.filter(pk=account.pk, pull_failing_since__isnull=True).update(
            pull_failing_since=now
        )
        MpesaAccount.objects.filter(pk=account.pk).update(pull_last_error=result.error[:2000])
        logger.error(
            "C2B pull failed",
            extra=ctx(shortcode=account.shortcode, error=result.error[:200], offset=offset),
        )
        return result
    MpesaAccount.objects.filter(pk=account.pk).update(
        pulled_until=now, pull_failing_since=None, pull_last_error=""
    )
    account.pulled_until = now
    log = logger.warning if result.recorded else logger.info
    log(
        "C2B pull",
        extra=ctx(
            shortcode=account.shortcode,
            read=result.read,
            recovered=result.recorded,
            refused=result.refused,
        ),
    )
    return result


def _record(account: MpesaAccount, item: object, result: PullResult) -> None:
    result.read += 1
    try:
        pulled = parse_pulled(item)
    except PayloadError as exc:
        result.refused += 1
        logger.error(
            "pulled transaction unreadable", extra=ctx(shortcode=account.shortcode, error=str(exc))
        )
        return
    received = payment_receive(
        account=account,
        notification=as_notification(account, pulled),
        source=EventSource.PULL,
        record={"pulled": {"transaction_type": pulled.transaction_type, "msisdn": pulled.msisdn}},
    )
    if received.created:
        result.recorded += 1
    elif received.verdict == Verdict.REVIEW:
        result.refused += 1
    else:
        result.known += 1


def pull_due_accounts(*, now: datetime | None = None) -> dict[str, PullResult]:
    """Pull every enabled account whose last pull is PULL_INTERVAL old (the beat's job)."""
    now = now or timezone.now()
    interval = timedelta(seconds=settings.C2B_PULL_INTERVAL)
    results: dict[str, PullResult] = {}
    due = MpesaAccount.objects.filter(enabled=True, pull_enabled=True).exclude(
        pulled_until__gt=now - interval
    )
    for account in due.order_by(F("pulled_until").asc(nulls_first=True)):
        results[account.shortcode] = account_pull(account, now=now)
    return results
