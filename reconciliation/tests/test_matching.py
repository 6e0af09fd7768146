"""The matching rules in isolation (the reference the SQL engine is held to)."""

import datetime as dt
import uuid
from decimal import Decimal

import pytest

from reconciliation.matching import (
    PAYMENT,
    PAYMENT_REASON_TYPES,
    LineFacts,
    PaymentFacts,
    Period,
    account_key,
    line_account,
    line_kind,
    mask_consistent,
    match,
    payer_mask,
)

UTC = dt.UTC
T0 = dt.datetime(2025, 11, 5, 7, 0, tzinfo=UTC)
WINDOW = dt.timedelta(minutes=10)


@pytest.mark.parametrize(
    ("mask", "phone", "consistent"),
    [
        ("25472****108", "254722000108", True),
        ("25472****108", "254722000109", False),
        ("079****284", "254790000284", True),
        ("079****284", "254780000284", False),
        ("011****220", "254110000220", True),
        ("25411****550", "254110000550", True),
        ("2547******462", "254712345462", True),
        ("0722000108", "254722000108", True),
        ("254722000108", "254722000108", True),
        ("722000108", "254722000108", True),
        ("+254722000108", "254722000108", True),
        ("0722000108", "254722000109", False),
        ("****", "254722000108", False),
        ("", "254722000108", False),
        ("25472****", "254722000108", False),
        ("hashed-ab12cd", "254722000108", False),
    ],
)
def test_a_masked_number_is_consistent_when_its_visible_digits_agree(mask, phone, consistent):
    assert mask_consistent(mask, phone) is consistent


def test_the_payer_comes_from_other_party_info_or_else_from_details():
    assert payer_mask(other_party="25472****108 - JOHN **** DOE", details="") == "25472****108"
    assert payer_mask(other_party="0722000108 – MARY", details="") == "0722000108"
    assert (
        payer_mask(other_party="", details="Pay Bill Online from 079****615 - jane Acc. 87")
        == "079****615"
    )
    assert payer_mask(other_party="", details="Pay Bill Charge") == ""


def test_the_account_comes_from_ac_no_or_else_from_details():
    assert line_account(account="37941535", details="") == "37941535"
    assert line_account(account="", details="Pay Bill from x - Y Acc. 8713732") == "8713732"
    assert account_key(" inv 12a ") == "INV12A"


@pytest.mark.parametrize(
    ("status", "reason", "details", "direction", "amount", "kind"),
    [
        ("Completed", "Pay Utility", "", "in", Decimal(1), PAYMENT),
        ("COMPLETED", "Pay Bill Online", "", "in", Decimal(1), PAYMENT),
        ("Completed", "Pay Utility with OD via STK", "", "in", Decimal(1), PAYMENT),
        ("", "c2b-pay-bill-debit", "", "in", Decimal(1), PAYMENT),
        ("Completed", "Pay Bill Charge", "", "out", Decimal(1), "charge"),
        ("Completed", "", "Business Payment Charge", "out", Decimal(1), "charge"),
        ("Completed", "Statement Fee", "", "out", Decimal(1), "fee"),
        (
            "Completed",
            "Utility Account to Organization Settlement Account",
            "",
            "out",
            Decimal(1),
            "sweep",
        ),
        ("Completed", "Business Payment to Customer", "", "out", Decimal(1), "other"),
        ("Completed", "Reversal", "", "in", Decimal(1), PAYMENT),
        ("Completed", "Pay Utility", "", "in", Decimal(0), "other"),
        ("Failed", "Pay Utility", "", "in", Decimal(1), "not_completed"),
        ("Cancelled", "Pay Bill Charge", "", "out", Decimal(1), "not_completed"),
    ],
)
def test_lines_are_classified(status, reason, details, direction, amount, kind):
    assert (
        line_kind(
            status=status, reason_type=reason, details=details, direction=direction, amount=amount
        )
        == kind
    )


def test_no_known_payment_reason_type_contains_a_classifying_word():
    # The SQL engine tests the known reason types first; this keeps it equal to the rules.
    for reason in PAYMENT_REASON_TYPES:
        assert (
            line_kind(status="", reason_type=reason, details="", direction="out", amount=Decimal(1))
            == "other"
        )


def line(n, receipt, amount, *, at=T0, kind=PAYMENT, party="25472****108 - X", account="A1"):
    return LineFacts(
        line_no=n,
        receipt=receipt,
        completed_at=at,
        amount=Decimal(amount),
        kind=kind,
        other_party=party,
        account=account,
    )


def payment(
    status, amount, *, receipt=None, at=T0, phone="254722000108", account="A1", final=False
):
    return PaymentFacts(
        id=uuid.uuid4(),
        status=status,
        amount=Decimal(amount),
        phone=phone,
        account_reference=account,
        receipt=receipt,
        time=at,
        failure_final=final,
    )


def test_a_tie_is_a_suggestion_for_a_person_not_a_match():
    first = payment("PENDING", 100, at=T0 - dt.timedelta(seconds=30))
    second = payment("PENDING", 100, at=T0 - dt.timedelta(seconds=60))

    result = match([line(2, "TK1", 100)], [first, second], window=WINDOW, period=None)

    outcome = result.lines[2]
    assert outcome.result == "ambiguous"
    assert outcome.payment_id is None
    assert set(outcome.candidates) == {str(first.id), str(second.id)}


def test_a_payment_two_lines_could_claim_is_claimed_by_neither():
    only = payment("SUCCESS", 100)

    result = match(
        [line(2, "TK1", 100), line(3, "TK2", 100)],
        [only],
        window=WINDOW,
        period=Period(T0 - dt.timedelta(days=1), T0 + dt.timedelta(days=1)),
    )

    assert result.lines[2].result == result.lines[3].result == "ambiguous"
    assert result.payments[only.id].kind == "ambiguous"
    assert result.payments[only.id].candidates == ("2", "3")


def test_a_line_and_a_payment_that_are_each_others_only_candidate_pair_up():
    pending = payment("PENDING", 100, at=T0 - dt.timedelta(minutes=9))
    elsewhere = payment("PENDING", 100, at=T0 + dt.timedelta(minutes=11))

    result = match([line(2, "TK1", 100)], [pending, elsewhere], window=WINDOW, period=None)

    assert result.lines[2].result == "not_success"
    assert result.lines[2].payment_id == pending.id
    assert result.lines[2].method == "tolerance"
    assert result.lines[2].auto_resolvable is False


def test_a_payment_with_a_receipt_is_never_a_tolerance_candidate():
    success = payment("SUCCESS", 100, receipt="TK9")

    result = match([line(2, "TK1", 100)], [success], window=WINDOW, period=None)

    assert result.lines[2].result == "unknown_payment"


def test_exact_matches_of_final_failures_are_not_automatic():
    failed = payment("FAILED", 100, receipt="TK1", final=True)
    expired = payment("FAILED", 100, receipt="TK2")

    result = match(
        [line(2, "TK1", 100), line(3, "TK2", 100)], [failed, expired], window=WINDOW, period=None
    )

    assert result.lines[2].result == result.lines[3].result == "not_success"
    assert result.lines[2].auto_resolvable is False
    assert result.lines[3].auto_resolvable is True
