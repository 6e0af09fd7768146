"""C2B money in a statement: paybill payments the customers made themselves are matched to
the payments their confirmations recorded, beside STK payments, so none of the money we
recorded is an ``unknown_payment`` break."""

import hashlib

import pytest

from daraja.c2b import parse_c2b_notification
from payments.accounts import account_create
from payments.c2b import payment_receive
from payments.models import Channel, MpesaAccount, Payment
from testsupport import c2b_body

from .builders import eat, make_payment, pay_row
from .test_services import reconcile, results, the_breaks

pytestmark = pytest.mark.django_db


@pytest.fixture
def shop() -> MpesaAccount:
    account, _ = account_create(name="Shop", shortcode="600984")
    return account


def received(shop: MpesaAccount, trans_id: str, amount: str, when: str, **body) -> Payment:
    moment = eat(when)
    notification = parse_c2b_notification(
        c2b_body(
            trans_id=trans_id,
            amount=amount,
            trans_time=moment.strftime("%Y%m%d%H%M%S"),
            bill_ref="37941535",
            **body,
        )
    )
    payment = payment_receive(account=shop, notification=notification).payment
    # Recorded when its confirmation came, a moment after the customer paid.
    Payment.objects.filter(pk=payment.pk).update(created_at=moment)
    return payment


def test_stk_and_c2b_lines_all_match_the_money_we_recorded(shop):
    stk = make_payment(amount=500, receipt="TK5XA1BC2D", when=eat("05-11-2025 10:00:00"))
    paybill = received(shop, "TK5XB2CD3E", "1200.00", "05-11-2025 11:00:00")
    hashed = received(
        shop,
        "TK5XC3DE4F",
        "75.00",
        "05-11-2025 12:30:00",
        msisdn=hashlib.sha256(b"254722000108").hexdigest(),
        first_name="XXXXXX",
    )
    assert {paybill.channel, hashed.channel} == {Channel.PAYBILL}

    run = reconcile(
        [
            pay_row("TK5XA1BC2D", 500, "05-11-2025 10:00:00"),
            pay_row("TK5XB2CD3E", 1200, "05-11-2025 11:00:00"),
            pay_row("TK5XC3DE4F", 75, "05-11-2025 12:30:00"),
        ]
    ).run

    assert results(run) == {
        "TK5XA1BC2D": ("matched", stk.pk, "receipt"),
        "TK5XB2CD3E": ("matched", paybill.pk, "receipt"),
        "TK5XC3DE4F": ("matched", hashed.pk, "receipt"),
    }
    assert the_breaks(run) == []


def test_a_c2b_line_whose_confirmation_never_came_is_still_a_break(shop):
    received(shop, "TK5XB2CD3E", "1200.00", "05-11-2025 11:00:00")
    run = reconcile(
        [
            pay_row("TK5XB2CD3E", 1200, "05-11-2025 11:00:00"),
            pay_row("TK5XD4EF5G", 300, "05-11-2025 11:30:00"),
        ]
    ).run
    (brk,) = the_breaks(run)
    assert (brk.kind, brk.line.receipt_number) == ("unknown_payment", "TK5XD4EF5G")
