from decimal import Decimal
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from callbacks.models import InboundCallback
from payments.models import EventKind, EventSource, Payment, PaymentEvent, PaymentStatus
from payments.services import payment_create, payment_transition

pytestmark = pytest.mark.django_db
S = PaymentStatus


def run(*args):
    out = StringIO()
    try:
        call_command("check_invariants", *args, stdout=out)
    except CommandError:
        return False, out.getvalue()
    return True, out.getvalue()


def paid_payment(receipt="UKR1OKOKOK"):
    payment, _ = payment_create(
        client=None,
        phone_number="254712345678",
        amount=Decimal(10),
        account_reference="A",
        description="B",
    )
    payment = payment_transition(
        payment=payment,
        to_status=S.PENDING,
        source="daraja",
        fields={"checkout_request_id": f"ws_{receipt}"},
    ).payment
    callback = InboundCallback.objects.create(body=b"{}", dedupe_key="x", state="processed")
    return payment_transition(
        payment=payment,
        to_status=S.SUCCESS,
        source=EventSource.CALLBACK,
        callback_id=callback.pk,
        fields={"mpesa_receipt_number": receipt, "paid_amount": Decimal(10)},
    ).payment


def test_clean_books_pass():
    paid_payment()
    ok, out = run("--settled")
    assert ok and "OK" in out


def test_success_without_evidence_is_named():
    payment = paid_payment()
    Payment.objects.filter(pk=payment.pk).update(status=S.SUCCESS)
    other, _ = payment_create(
        client=None,
        phone_number="254712345678",
        amount=Decimal(5),
        account_reference="A",
        description="B",
    )
    PaymentEvent.objects.create(
        payment=other,
        kind=EventKind.TRANSITION,
        from_status=S.INITIATED,
        to_status=S.SUCCESS,
        source=EventSource.ADMIN,
    )
    Payment.objects.filter(pk=other.pk).update(status=S.SUCCESS)
    ok, out = run()
    assert not ok
    assert f"success_without_evidence: payment {other.pk}" in out


def test_amount_mismatch_is_named():
    payment = paid_payment()
    Payment.objects.filter(pk=payment.pk).update(paid_amount=Decimal(9))
    ok, out = run()
    assert not ok and f"amount_mismatch: payment {payment.pk} asked 10.00, credited 9.00" in out


def test_status_change_without_event_is_named():
    payment = paid_payment()
    Payment.objects.filter(pk=payment.pk).update(status=S.FAILED)
    ok, out = run()
    assert not ok and "status_without_event" in out


def test_forbidden_sequence_is_named():
    payment = paid_payment()
    PaymentEvent.objects.create(
        payment=payment,
        kind=EventKind.TRANSITION,
        from_status=S.SUCCESS,
        to_status=S.FAILED,
        source=EventSource.ADMIN,
    )
    Payment.objects.filter(pk=payment.pk).update(status=S.FAILED)
    ok, out = run()
    assert not ok and "SUCCESS→FAILED is not allowed" in out


def test_a_callback_left_waiting_is_named_when_settled():
    InboundCallback.objects.create(body=b"{}", dedupe_key="x")
    assert run()[0]  # still within the re-drive grace period
    ok, out = run("--settled")
    assert not ok and "callback_left_behind" in out
