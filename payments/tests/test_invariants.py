from decimal import Decimal
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from callbacks.models import InboundCallback
from payments.models import EventKind, EventSource, Payment, PaymentEvent, PaymentStatus
from testsupport.factories import PaymentFactory

pytestmark = pytest.mark.django_db


def run(*args):
    out = StringIO()
    try:
        call_command("check_invariants", *args, stdout=out)
    except CommandError:
        return False, out.getvalue()
    return True, out.getvalue()


def test_clean_books_pass():
    PaymentFactory(success=True, receipt="UKR1OKOKOK")
    ok, out = run("--settled")
    assert ok and "OK" in out


def test_success_without_evidence_is_named():
    payment = PaymentFactory(success=True, receipt="UKR1OKOKOK")
    Payment.objects.filter(pk=payment.pk).update(status=PaymentStatus.SUCCESS)
    other = PaymentFactory(initiated=True, amount=5)
    PaymentEvent.objects.create(
        payment=other,
        kind=EventKind.TRANSITION,
        from_status=PaymentStatus.INITIATED,
        to_status=PaymentStatus.SUCCESS,
        source=EventSource.ADMIN,
    )
    Payment.objects.filter(pk=other.pk).update(status=PaymentStatus.SUCCESS)
    ok, out = run()
    assert not ok
    assert f"success_without_evidence: payment {other.pk}" in out


def test_amount_mismatch_is_named():
    payment = PaymentFactory(success=True, receipt="UKR1OKOKOK")
    Payment.objects.filter(pk=payment.pk).update(paid_amount=Decimal(9))
    ok, out = run()
    assert not ok and f"amount_mismatch: payment {payment.pk} asked 10.00, credited 9.00" in out


def test_status_change_without_event_is_named():
    payment = PaymentFactory(success=True, receipt="UKR1OKOKOK")
    Payment.objects.filter(pk=payment.pk).update(status=PaymentStatus.FAILED)
    ok, out = run()
    assert not ok and "status_without_event" in out


def test_forbidden_sequence_is_named():
    payment = PaymentFactory(success=True, receipt="UKR1OKOKOK")
    PaymentEvent.objects.create(
        payment=payment,
        kind=EventKind.TRANSITION,
        from_status=PaymentStatus.SUCCESS,
        to_status=PaymentStatus.FAILED,
        source=EventSource.ADMIN,
    )
    Payment.objects.filter(pk=payment.pk).update(status=PaymentStatus.FAILED)
    ok, out = run()
    assert not ok and "SUCCESS→FAILED is not allowed" in out


def test_a_callback_left_waiting_is_named_when_settled():
    InboundCallback.objects.create(body=b"{}", dedupe_key="x")
    assert run()[0]  # still within the re-drive grace period
    ok, out = run("--settled")
    assert not ok and "callback_left_behind" in out
