"""payments.outcomes: what each kind of evidence (an STK callback's result, an STK Query
answer, a statement line) does to a payment, through the one public decision function."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from payments.models import EventKind, EventSource, Payment, PaymentEvent, PaymentStatus
from payments.outcomes import Evidence, Problem, Verdict, payment_apply_evidence
from payments.services import payments_expire
from testsupport.factories import PaymentFactory

pytestmark = pytest.mark.django_db

CHECKOUT = "ws_CO_05122026010000123712345678"
PAID_AT = datetime(2026, 12, 5, 1, 0, tzinfo=UTC)


def success(source: str, *, amount: str = "10.00", receipt: str = "UKR1OUTC01") -> Evidence:
    """A success as each source reports it: a callback says everything, STK Query only the
    result code, a statement line the receipt, amount and time but no result code."""
    if source == EventSource.CALLBACK:
        return Evidence(
            source=source,
            succeeded=True,
            result_code="0",
            result_desc="The service request is processed successfully.",
            checkout_request_id=CHECKOUT,
            receipt_number=receipt,
            amount=Decimal(amount),
            transaction_date=PAID_AT,
            phone_number="254712345678",
        )
    if source == EventSource.QUERY:
        return Evidence(source=source, succeeded=True, result_code="0", result_desc="paid")
    return Evidence(
        source=source,
        succeeded=True,
        receipt_number=receipt,
        amount=Decimal(amount),
        transaction_date=PAID_AT,
        reason=f"paid per statement line {receipt}",
    )


def failure(source: str, code: str = "1032") -> Evidence:
    return Evidence(
        source=source,
        succeeded=False,
        result_code=code,
        result_desc="Request cancelled by user",
        checkout_request_id=CHECKOUT if source == EventSource.CALLBACK else "",
    )


SOURCES = [EventSource.CALLBACK, EventSource.QUERY, EventSource.RECONCILIATION]
# A statement line only ever says "paid".
FAILURE_SOURCES = [EventSource.CALLBACK, EventSource.QUERY]
# STK Query says nothing about the amount.
AMOUNT_SOURCES = [EventSource.CALLBACK, EventSource.RECONCILIATION]


def apply(payment: Payment, evidence: Evidence):
    outcome = payment_apply_evidence(payment=payment, evidence=evidence)
    payment.refresh_from_db()
    return outcome


def expired(payment: Payment, settings) -> Payment:
    settings.PAYMENTS_EXPIRE_AFTER = 0
    assert payments_expire() == 1
    payment.refresh_from_db()
    assert payment.status == PaymentStatus.FAILED and not payment.failure_final
    return payment


@pytest.mark.parametrize("source", SOURCES)
def test_a_success_credits_a_pending_payment_with_its_event(source):
    payment = PaymentFactory(checkout_request_id=CHECKOUT)

    outcome = apply(payment, success(source))

    assert (outcome.verdict, outcome.to_status) == (Verdict.APPLIED, PaymentStatus.SUCCESS)
    assert payment.status == PaymentStatus.SUCCESS and not payment.needs_review
    event = payment.events.get(to_status=PaymentStatus.SUCCESS)
    assert (event.kind, event.source, event.from_status) == (
        EventKind.TRANSITION,
        source,
        PaymentStatus.PENDING,
    )
    if source == EventSource.QUERY:
        assert payment.mpesa_receipt_number is None and payment.paid_amount is None
    else:
        assert payment.mpesa_receipt_number == "UKR1OUTC01"
        assert payment.paid_amount == Decimal("10.00") and payment.transaction_date == PAID_AT


@pytest.mark.parametrize("source", FAILURE_SOURCES)
def test_a_failure_fails_a_pending_payment_finally_per_the_catalogue(source):
    payment = PaymentFactory(checkout_request_id=CHECKOUT)

    outcome = apply(payment, failure(source))

    assert outcome.verdict == Verdict.APPLIED
    assert payment.status == PaymentStatus.FAILED
    assert (payment.result_code, payment.failure_final) == ("1032", True)
    assert payment.events.get(to_status=PaymentStatus.FAILED).source == source


def test_a_still_processing_code_is_recorded_as_a_failure_that_is_not_final():
    payment = PaymentFactory(checkout_request_id=CHECKOUT)

    apply(payment, failure(EventSource.CALLBACK, code="4999"))

    assert payment.status == PaymentStatus.FAILED and not payment.failure_final


@pytest.mark.parametrize("source", SOURCES)
def test_a_late_success_after_we_stopped_waiting_credits_the_payment(source, settings):
    payment = expired(PaymentFactory(checkout_request_id=CHECKOUT), settings)

    outcome = apply(payment, success(source))

    assert outcome.verdict == Verdict.APPLIED
    assert payment.status == PaymentStatus.SUCCESS
    event = payment.events.get(to_status=PaymentStatus.SUCCESS)
    assert event.from_status == PaymentStatus.FAILED and event.source == source


@pytest.mark.parametrize("source", SOURCES)
def test_a_success_after_a_failure_mpesa_gave_is_kept_for_review(source):
    payment = PaymentFactory(checkout_request_id=CHECKOUT)
    apply(payment, failure(EventSource.CALLBACK))

    outcome = apply(payment, success(source))

    assert (outcome.verdict, outcome.problem) == (Verdict.REVIEW, Problem.FINAL_FAILURE)
    assert payment.status == PaymentStatus.FAILED and payment.needs_review
    assert payment.events.filter(kind=EventKind.FLAGGED, source=source).count() == 1


def test_a_second_persons_approval_credits_a_failure_mpesa_gave():
    payment = PaymentFactory(checkout_request_id=CHECKOUT)
    apply(payment, failure(EventSource.CALLBACK))
    approved = success(EventSource.RECONCILIATION)
    approved = Evidence(**{**approved.__dict__, "approved": True})

    outcome = apply(payment, approved)

    assert outcome.verdict == Verdict.APPLIED and payment.status == PaymentStatus.SUCCESS


@pytest.mark.parametrize("source", AMOUNT_SOURCES)
def test_a_success_for_another_amount_is_kept_for_review_not_credited(source):
    payment = PaymentFactory(checkout_request_id=CHECKOUT)

    outcome = apply(payment, success(source, amount="99.00"))

    assert (outcome.verdict, outcome.problem) == (Verdict.REVIEW, Problem.AMOUNT_MISMATCH)
    assert payment.status == PaymentStatus.PENDING and payment.needs_review
    flag = payment.events.get(kind=EventKind.FLAGGED)
    assert flag.source == source and "amount mismatch" in flag.reason


@pytest.mark.parametrize("source", SOURCES)
def test_the_same_success_again_changes_nothing(source):
    payment = PaymentFactory(checkout_request_id=CHECKOUT)
    apply(payment, success(source))
    events = PaymentEvent.objects.count()

    outcome = apply(payment, success(source))

    assert outcome.verdict == Verdict.DUPLICATE
    assert payment.status == PaymentStatus.SUCCESS and not payment.needs_review
    assert PaymentEvent.objects.count() == events


@pytest.mark.parametrize("source", FAILURE_SOURCES)
def test_the_same_failure_again_changes_nothing(source):
    payment = PaymentFactory(checkout_request_id=CHECKOUT)
    apply(payment, failure(source))
    events = PaymentEvent.objects.count()

    outcome = apply(payment, failure(source))

    assert outcome.verdict == Verdict.DUPLICATE and payment.status == PaymentStatus.FAILED
    assert PaymentEvent.objects.count() == events


@pytest.mark.parametrize("source", FAILURE_SOURCES)
def test_success_never_moves_back_on_a_failure(source):
    payment = PaymentFactory(checkout_request_id=CHECKOUT)
    apply(payment, success(EventSource.CALLBACK))
    events = PaymentEvent.objects.count()

    outcome = apply(payment, failure(source))

    assert outcome.verdict == Verdict.IGNORED and "never moves back" in outcome.detail
    assert payment.status == PaymentStatus.SUCCESS and payment.mpesa_receipt_number
    assert PaymentEvent.objects.count() == events


@pytest.mark.parametrize("source", AMOUNT_SOURCES)
def test_a_different_success_after_success_is_kept_for_review_and_changes_nothing(source):
    payment = PaymentFactory(checkout_request_id=CHECKOUT)
    apply(payment, success(EventSource.CALLBACK))

    outcome = apply(payment, success(source, receipt="UKR1OTHER9"))

    assert (outcome.verdict, outcome.problem) == (Verdict.REVIEW, Problem.DIFFERENT_SUCCESS)
    assert payment.status == PaymentStatus.SUCCESS
    assert payment.mpesa_receipt_number == "UKR1OUTC01" and payment.needs_review


@pytest.mark.parametrize("source", AMOUNT_SOURCES)
def test_a_receipt_is_attached_to_a_success_confirmed_by_query(source):
    payment = PaymentFactory(checkout_request_id=CHECKOUT)
    apply(payment, success(EventSource.QUERY))

    outcome = apply(payment, success(source))

    assert (outcome.verdict, outcome.detail) == (Verdict.APPLIED, "receipt attached")
    assert payment.mpesa_receipt_number == "UKR1OUTC01"
    note = payment.events.get(kind=EventKind.NOTE)
    assert note.source == source and "UKR1OUTC01" in note.reason


@pytest.mark.parametrize("source", AMOUNT_SOURCES)
def test_a_receipt_another_payment_holds_is_kept_for_review(source):
    first, second = (
        PaymentFactory(checkout_request_id=CHECKOUT),
        PaymentFactory(checkout_request_id="ws_CO_SECOND"),
    )
    apply(first, success(EventSource.CALLBACK))
    evidence = success(source)
    if source == EventSource.CALLBACK:
        evidence = Evidence(**{**evidence.__dict__, "checkout_request_id": "ws_CO_SECOND"})

    outcome = apply(second, evidence)

    assert (outcome.verdict, outcome.problem) == (Verdict.REVIEW, Problem.RECEIPT_TAKEN)
    assert second.status == PaymentStatus.PENDING and second.needs_review


def test_an_unconfirmed_success_waits_for_the_query_when_verification_is_on(settings):
    settings.MPESA_VERIFY_SUCCESS = "always"
    payment = PaymentFactory(checkout_request_id=CHECKOUT)
    unconfirmed = Evidence(**{**success(EventSource.CALLBACK).__dict__, "verified": False})

    outcome = apply(payment, unconfirmed)

    assert outcome.verdict == Verdict.UNCONFIRMED and payment.status == PaymentStatus.PENDING
    assert apply(payment, success(EventSource.CALLBACK)).verdict == Verdict.APPLIED
