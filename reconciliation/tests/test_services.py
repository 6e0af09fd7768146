"""Each break class from a fixture built for it, through the import service, on the test
database's engine (SQLite: the Python engine; PostgreSQL: the SQL engine); resolution and
its audit; idempotent import."""

import datetime as dt
import json
from decimal import Decimal

import pytest

from core.services import api_client_create
from payments.models import EventSource, Payment, PaymentEvent, PaymentStatus
from reconciliation.credit import BreakAction, BreakResolutionError
from reconciliation.imports import statement_import
from reconciliation.models import (
    Break,
    BreakEvent,
    BreakStatus,
    LineMatch,
    Resolution,
    Statement,
    StatementLine,
    StatementReject,
)
from reconciliation.services import break_resolve, run_auto_resolve

from .builders import (
    PERIOD_START,
    Preamble,
    Row,
    charge_row,
    eat,
    g2_csv,
    make_payment,
    pay_row,
)

pytestmark = pytest.mark.django_db


def reconcile(rows, *, preamble=None, client=None, **kwargs):
    data = g2_csv(rows, preamble=preamble or Preamble())
    return statement_import(data=data, file_name="statement.csv", client=client, **kwargs)


def results(run):
    return {
        line.receipt_number: (line.match.result, line.match.payment_id, line.match.match_method)
        for line in StatementLine.objects.filter(statement_id=run.statement_id).select_related(
            "match"
        )
    }


def by_line(run):
    return {
        line.line_no: (line.receipt_number, line.match.result, line.match.payment_id)
        for line in StatementLine.objects.filter(statement_id=run.statement_id).select_related(
            "match"
        )
    }


def the_breaks(run):
    return list(Break.objects.filter(run=run).order_by("id"))


def classes(run):
    return {name: totals["count"] for name, totals in run.summary["classes"].items()}


def test_an_exact_receipt_match_of_a_success_payment_is_matched_with_no_break():
    paid = make_payment(amount=500, receipt="TK5XA1BC2D", when=eat("05-11-2025 10:00:00"))

    run = reconcile([pay_row("TK5XA1BC2D", 500, "05-11-2025 10:00:00")]).run

    assert results(run) == {"TK5XA1BC2D": ("matched", paid.pk, "receipt")}
    assert the_breaks(run) == []
    assert run.summary["bridge"]["residual"] == "0.00"
    assert run.summary["bridge"]["difference"] == "0.00"


def test_a_success_payment_without_a_receipt_is_matched_by_the_tolerance_pass():
    # Success by STK Query leaves no receipt: amount, payer, time and account decide.
    paid = make_payment(amount=500, receipt=None, when=eat("05-11-2025 10:00:00"))

    run = reconcile([pay_row("TK5XA1BC2D", 500, "05-11-2025 10:00:40")]).run

    assert results(run) == {"TK5XA1BC2D": ("matched", paid.pk, "tolerance")}
    assert the_breaks(run) == []


def test_the_tolerance_pass_needs_every_key_to_agree():
    make_payment(amount=500, receipt=None, when=eat("05-11-2025 10:00:00"))
    rows = [
        pay_row("TK5XA1BC2A", 501, "05-11-2025 10:00:10"),  # amount
        pay_row("TK5XA1BC2B", 500, "05-11-2025 10:00:10", phone="254722000999"),  # payer
        pay_row("TK5XA1BC2C", 500, "05-11-2025 10:15:00"),  # time window (10 min)
        pay_row("TK5XA1BC2D", 500, "05-11-2025 10:00:10", account="99999999"),  # account
    ]

    run = reconcile(rows).run

    assert {r for r, *_ in results(run).values()} == {"unknown_payment"}


def test_the_time_window_is_configurable():
    make_payment(
        amount=500, receipt=None, status=PaymentStatus.PENDING, when=eat("05-11-2025 10:00:00")
    )

    run = reconcile(
        [pay_row("TK5XA1BC2D", 500, "05-11-2025 10:15:00")], time_window_seconds=3600
    ).run

    assert results(run)["TK5XA1BC2D"][0] == "not_success"


def test_an_amount_mismatch_is_a_break_with_the_difference_as_bridge_amount():
    paid = make_payment(amount=500, receipt="TK5XA1BC2D")

    run = reconcile([pay_row("TK5XA1BC2D", 499, "05-11-2025 10:00:00")]).run

    (brk,) = the_breaks(run)
    assert brk.kind == "amount_mismatch"
    assert brk.payment_id == paid.pk
    assert (brk.statement_amount, brk.our_amount, brk.bridge_amount) == (
        Decimal("499.00"),
        Decimal("500.00"),
        Decimal("-1.00"),
    )
    assert run.summary["bridge"]["explained"]["amount_mismatch"] == "-1.00"
    assert run.summary["bridge"]["residual"] == "0.00"


def test_money_in_the_statement_unknown_to_us_is_a_break():
    run = reconcile([pay_row("TK5XA1BC2D", 750, "05-11-2025 10:00:00")]).run

    (brk,) = the_breaks(run)
    assert (brk.kind, brk.payment_id, brk.bridge_amount) == (
        "unknown_payment",
        None,
        Decimal("750.00"),
    )
    assert brk.line.receipt_number == "TK5XA1BC2D"


def test_an_exact_match_of_a_pending_payment_moves_it_to_success_automatically():
    pending = make_payment(amount=500, receipt="TK5XA1BC2D", status=PaymentStatus.PENDING)

    result = reconcile([pay_row("TK5XA1BC2D", 500, "05-11-2025 10:00:00")])

    (brk,) = the_breaks(result.run)
    assert brk.kind == "not_success" and brk.auto_resolvable
    assert (brk.status, brk.resolution, brk.resolved_by) == (
        "resolved",
        "credited",
        "reconciliation",
    )
    pending.refresh_from_db()
    assert pending.status == PaymentStatus.SUCCESS
    assert pending.paid_amount == Decimal("500.00")
    assert pending.transaction_date == eat("05-11-2025 10:00:00")
    event = PaymentEvent.objects.filter(payment=pending, to_status=PaymentStatus.SUCCESS).get()
    assert event.source == EventSource.RECONCILIATION
    assert event.evidence["receipt_number"] == "TK5XA1BC2D"
    assert event.evidence["statement_id"] == result.statement.pk
    assert event.evidence["line_no"] == 8  # six preamble rows, then the header
    assert result.run.summary["auto_resolved"] == 1
    assert BreakEvent.objects.filter(break_record=brk, action="resolved:credited").exists()


def test_exact_matches_are_not_automatic_when_the_amounts_differ_or_the_failure_is_final():
    differs = make_payment(amount=500, receipt="TK5XA1BC2D", status=PaymentStatus.PENDING)
    final = make_payment(
        amount=80, receipt="TK5XA1BC2E", status=PaymentStatus.FAILED, failure_final=True
    )
    rows = [
        pay_row("TK5XA1BC2D", 400, "05-11-2025 10:00:00"),
        pay_row("TK5XA1BC2E", 80, "05-11-2025 10:01:00"),
    ]

    run = reconcile(rows).run

    assert {(b.kind, b.auto_resolvable, b.status) for b in the_breaks(run)} == {
        ("not_success", False, "open")
    }
    differs.refresh_from_db()
    final.refresh_from_db()
    assert (differs.status, final.status) == (PaymentStatus.PENDING, PaymentStatus.FAILED)


def test_a_failed_payment_the_statement_shows_paid_is_moved_to_success_by_a_person():
    expired = make_payment(
        amount=300, receipt=None, status=PaymentStatus.FAILED, when=eat("05-11-2025 10:00:00")
    )

    run = reconcile([pay_row("TK5XA1BC2D", 300, "05-11-2025 10:00:30")]).run

    (brk,) = the_breaks(run)
    assert (brk.kind, brk.payment_id, brk.auto_resolvable, brk.status) == (
        "not_success",
        expired.pk,
        False,
        "open",
    )
    expired.refresh_from_db()
    assert expired.status == PaymentStatus.FAILED  # a tolerance match waits for a person

    break_resolve(
        break_id=brk.pk, action=BreakAction.MATCH, actor="alice", reason="customer's SMS matches"
    )

    expired.refresh_from_db()
    assert expired.status == PaymentStatus.SUCCESS
    assert expired.mpesa_receipt_number == "TK5XA1BC2D"
    event = PaymentEvent.objects.filter(payment=expired, to_status=PaymentStatus.SUCCESS).get()
    assert (event.source, event.actor) == (EventSource.RECONCILIATION, "alice")
    assert "customer's SMS matches" in event.reason
    brk.refresh_from_db()
    assert (brk.status, brk.resolution, brk.resolved_by) == ("resolved", "credited", "alice")


def test_success_with_us_but_absent_from_the_statement_period_is_a_break_only_in_the_period():
    missing = make_payment(amount=900, receipt="TK5ZZZZZZZ", when=eat("06-11-2025 09:00:00"))
    make_payment(amount=900, receipt="TJ5ZZZZZZZ", when=PERIOD_START - dt.timedelta(days=3))
    make_payment(
        amount=900, receipt=None, status=PaymentStatus.FAILED, when=eat("06-11-2025 09:00:00")
    )

    run = reconcile([pay_row("TK5XA1BC2D", 10, "05-11-2025 10:00:00")]).run

    kinds = {(b.kind, b.payment_id) for b in the_breaks(run)}
    assert ("missing_from_statement", missing.pk) in kinds
    assert len([k for k, _ in kinds if k == "missing_from_statement"]) == 1
    brk = Break.objects.get(run=run, kind="missing_from_statement")
    assert brk.bridge_amount == Decimal("-900.00") and brk.line is None


def test_a_repeated_statement_line_is_a_duplicate_and_claims_nothing():
    paid = make_payment(amount=500, receipt="TK5XA1BC2D")
    row = pay_row("TK5XA1BC2D", 500, "05-11-2025 10:00:00")

    run = reconcile([row, row]).run

    assert by_line(run) == {
        8: ("TK5XA1BC2D", "matched", paid.pk),
        9: ("TK5XA1BC2D", "duplicate", None),
    }
    (brk,) = the_breaks(run)
    assert (brk.kind, brk.line.line_no, brk.bridge_amount) == ("duplicate", 9, Decimal("500.00"))
    assert LineMatch.objects.filter(statement_id=run.statement_id, payment=paid).count() == 1


def test_a_charge_sharing_the_receipt_is_not_a_duplicate_nor_a_break():
    paid = make_payment(amount=500, receipt="TK5XA1BC2D")
    rows = [
        charge_row("TK5XA1BC2D", 15, "05-11-2025 10:00:00"),
        pay_row("TK5XA1BC2D", 500, "05-11-2025 10:00:00"),
    ]

    run = reconcile(rows).run

    assert by_line(run) == {
        8: ("TK5XA1BC2D", "charge", None),
        9: ("TK5XA1BC2D", "matched", paid.pk),
    }
    assert the_breaks(run) == []


def test_two_candidates_make_a_suggestion_for_a_person_not_a_match():
    first = make_payment(amount=250, status=PaymentStatus.PENDING, when=eat("05-11-2025 10:00:00"))
    second = make_payment(amount=250, status=PaymentStatus.PENDING, when=eat("05-11-2025 10:00:45"))

    run = reconcile([pay_row("TK5XA1BC2D", 250, "05-11-2025 10:01:00")]).run

    (brk,) = the_breaks(run)
    assert brk.kind == "ambiguous" and brk.payment_id is None
    assert sorted(brk.candidates) == sorted([str(first.pk), str(second.pk)])
    with pytest.raises(BreakResolutionError) as refused:
        other = make_payment(amount=250, status=PaymentStatus.PENDING, phone="254700000001")
        break_resolve(break_id=brk.pk, action="match", actor="bob", reason="r", payment_id=other.pk)
    assert refused.value.code == "not_a_candidate"

    break_resolve(
        break_id=brk.pk,
        action="match",
        actor="bob",
        reason="called the customer",
        payment_id=second.pk,
    )

    first.refresh_from_db()
    second.refresh_from_db()
    assert (first.status, second.status) == (PaymentStatus.PENDING, PaymentStatus.SUCCESS)
    match = LineMatch.objects.get(line=brk.line, statement_id=run.statement_id)
    assert (match.payment_id, match.match_method) == (second.pk, "manual")


def test_ambiguous_success_payments_are_breaks_too_and_are_settled_with_the_line():
    first = make_payment(amount=250, when=eat("05-11-2025 10:00:00"))
    second = make_payment(amount=250, when=eat("05-11-2025 10:00:45"))

    run = reconcile([pay_row("TK5XA1BC2D", 250, "05-11-2025 10:01:00")]).run

    kinds = sorted((b.kind, b.line_id is None) for b in the_breaks(run))
    assert kinds == [("ambiguous", False), ("ambiguous", True), ("ambiguous", True)]
    assert run.summary["bridge"]["residual"] == "0.00"
    assert run.summary["bridge"]["explained"]["ambiguous"] == "-250.00"
    line_break = Break.objects.get(run=run, line__isnull=False)

    break_resolve(
        break_id=line_break.pk,
        action="match",
        actor="bob",
        reason="same phone",
        payment_id=first.pk,
    )

    assert Break.objects.get(run=run, payment=first).status == BreakStatus.RESOLVED
    assert Break.objects.get(run=run, payment=second).status == BreakStatus.OPEN
    first.refresh_from_db()
    assert first.status == PaymentStatus.SUCCESS
    assert first.events.filter(kind="note", source="reconciliation").exists()


def test_charges_fees_and_sweeps_are_classified_not_breaks():
    rows = [
        charge_row("TK5XA1BC2D", 15, "05-11-2025 10:00:00"),
        Row(
            receipt="TK5XA1BC2E",
            completed="05-11-2025 11:00:00",
            withdrawn="-50.00",
            reason="Statement Fee",
            details="Statement Fee",
            party="",
            account="",
        ),
        Row(
            receipt="TK5XA1BC2F",
            completed="05-11-2025 23:30:00",
            withdrawn="-15,000.00",
            reason="Utility Account to Organization Settlement Account",
            details="Utility Account to Organization Settlement Account",
            party="",
            account="",
        ),
        pay_row("TK5XA1BC2G", 5, "05-11-2025 10:00:00", status="Cancelled"),
    ]

    run = reconcile(rows).run

    assert classes(run) == {"charge": 1, "fee": 1, "sweep": 1, "not_completed": 1}
    assert the_breaks(run) == []
    assert run.summary["classes"]["sweep"]["statement_amount"] == "15000.00"
    assert run.summary["bridge"]["statement_total"] == "0.00"


def test_the_bridge_explains_the_whole_difference_with_no_residual():
    make_payment(amount=100, receipt="TK5AAAAAA1", when=eat("05-11-2025 10:00:00"))  # matched
    make_payment(amount=200, receipt="TK5AAAAAA2", when=eat("05-11-2025 11:00:00"))  # mismatch
    make_payment(amount=300, receipt="TK5AAAAAA3", when=eat("05-11-2025 12:00:00"))  # missing
    make_payment(
        amount=40, receipt="TK5AAAAAA4", status=PaymentStatus.FAILED, failure_final=True
    )  # not_success
    rows = [
        pay_row("TK5AAAAAA1", 100, "05-11-2025 10:00:00"),
        pay_row("TK5AAAAAA2", 210, "05-11-2025 11:00:00"),
        pay_row("TK5AAAAAA4", 40, "05-11-2025 13:00:00"),
        pay_row("TK5AAAAAA5", 7, "05-11-2025 14:00:00"),  # unknown
        pay_row("TK5AAAAAA5", 7, "05-11-2025 14:00:00"),  # duplicate
        charge_row("TK5AAAAAA1", 5, "05-11-2025 10:00:00"),
    ]

    run = reconcile(rows).run

    bridge = run.summary["bridge"]
    assert bridge["statement_total"] == "364.00"
    assert bridge["our_total"] == "600.00"
    assert bridge["difference"] == "-236.00"
    assert bridge["explained"] == {
        "amount_mismatch": "10.00",
        "duplicate": "7.00",
        "missing_from_statement": "-300.00",
        "not_success": "40.00",
        "unknown_payment": "7.00",
    }
    assert bridge["residual"] == "0.00"
    assert classes(run) == {
        "matched": 1,
        "amount_mismatch": 1,
        "not_success": 1,
        "unknown_payment": 1,
        "duplicate": 1,
        "charge": 1,
        "missing_from_statement": 1,
    }
    assert run.summary["breaks"] == 5


def test_header_totals_that_do_not_add_up_are_a_warning_not_a_failure():
    preamble = Preamble(total_paid_in=Decimal("999"), opening=Decimal("0"), closing=Decimal("5"))

    run = reconcile([pay_row("TK5XA1BC2D", 10, "05-11-2025 10:00:00")], preamble=preamble).run

    warnings = " ".join(run.summary["warnings"])
    assert "Total Paid In" in warnings and "closing balance" in warnings


def test_the_same_file_imported_twice_is_imported_once():
    data = g2_csv([pay_row("TK5XA1BC2D", 10, "05-11-2025 10:00:00")], preamble=Preamble())

    first = statement_import(data=data, file_name="a.csv")
    second = statement_import(data=data, file_name="copy-of-a.csv")

    assert first.created and not second.created
    assert second.run.pk == first.run.pk
    assert Statement.objects.count() == 1
    assert StatementLine.objects.count() == 1


def test_a_clients_statement_is_matched_against_its_own_payments_only():
    shop = api_client_create(name="shop").client
    other = api_client_create(name="other").client
    mine = make_payment(amount=10, receipt="TK5XA1BC2D", client=shop)
    make_payment(amount=20, receipt="TK5XA1BC2E", client=other)
    rows = [
        pay_row("TK5XA1BC2D", 10, "05-11-2025 10:00:00"),
        pay_row("TK5XA1BC2E", 20, "05-11-2025 10:01:00"),
    ]

    run = reconcile(rows, client=shop).run

    assert results(run) == {
        "TK5XA1BC2D": ("matched", mine.pk, "receipt"),
        "TK5XA1BC2E": ("unknown_payment", None, ""),
    }
    # The same bytes from another client are that client's statement.
    again = reconcile(rows, client=other)
    assert again.created


def test_rejected_rows_are_stored_with_their_row_number_and_counted():
    rows = [
        pay_row("TK5XA1BC2D", 10, "05-11-2025 10:00:00"),
        Row(receipt="TK5XA1BC2E", completed="05-11-2025 10:00:00", paid_in="ten"),
    ]

    result = reconcile(rows)

    (reject,) = StatementReject.objects.filter(statement=result.statement)
    assert reject.row_number == 9  # six preamble rows, the header, then the data
    assert "not an amount" in reject.reason
    assert reject.raw[0] == "TK5XA1BC2E"
    assert result.run.summary["rejects"] == 1
    assert result.statement.reject_count == 1


def test_accepting_a_break_needs_a_reason_and_is_audited_once():
    run = reconcile([pay_row("TK5XA1BC2D", 750, "05-11-2025 10:00:00")]).run
    (brk,) = the_breaks(run)

    with pytest.raises(BreakResolutionError) as no_reason:
        break_resolve(break_id=brk.pk, action=BreakAction.ACCEPT, actor="carol", reason="  ")
    assert no_reason.value.code == "reason_required"

    break_resolve(break_id=brk.pk, action=BreakAction.ACCEPT, actor="carol", reason="test payment")

    brk.refresh_from_db()
    assert (brk.status, brk.resolution, brk.resolved_by, brk.resolution_reason) == (
        "resolved",
        Resolution.ACCEPTED,
        "carol",
        "test payment",
    )
    assert brk.resolved_at is not None
    with pytest.raises(BreakResolutionError) as again:
        break_resolve(break_id=brk.pk, action=BreakAction.ACCEPT, actor="dan", reason="again")
    assert again.value.code == "already_resolved"
    assert list(BreakEvent.objects.filter(break_record=brk).values_list("action", "actor")) == [
        ("resolved:accepted", "carol")
    ]


def test_only_line_breaks_that_need_a_payment_can_be_matched():
    make_payment(amount=500, receipt="TK5XA1BC2D")
    run = reconcile([pay_row("TK5XA1BC2D", 499, "05-11-2025 10:00:00")]).run
    (brk,) = the_breaks(run)

    with pytest.raises(BreakResolutionError) as refused:
        break_resolve(break_id=brk.pk, action=BreakAction.MATCH, actor="x", reason="y")

    assert refused.value.code == "not_matchable"


def test_a_payment_already_claimed_by_another_line_cannot_be_matched_again():
    # Confirmed without a receipt, claimed by the tolerance pass (which stores no receipt).
    paid = make_payment(amount=750, receipt=None, when=eat("05-11-2025 10:00:00"))
    run = reconcile(
        [
            pay_row("TK5XA1BC2D", 750, "05-11-2025 10:00:40"),
            pay_row("TK5XA1BC2E", 750, "05-11-2025 11:00:00"),
        ]
    ).run
    assert results(run)["TK5XA1BC2D"] == ("matched", paid.pk, "tolerance")
    unknown = Break.objects.get(run=run, kind="unknown_payment")

    with pytest.raises(BreakResolutionError) as refused:
        break_resolve(
            break_id=unknown.pk, action="match", actor="x", reason="y", payment_id=paid.pk
        )

    assert refused.value.code == "payment_already_matched"


def test_a_payment_paid_with_one_receipt_cannot_explain_another():
    # A PENDING payment a person credits from one statement's line takes that line's receipt;
    # a line of another receipt, in the same or a later statement, cannot claim it too.
    pending = make_payment(
        amount=650, status=PaymentStatus.PENDING, when=eat("01-11-2025 08:00:00")
    )
    first = reconcile([pay_row("SAMEST0001", 650, "05-11-2025 10:00:00")]).run
    (unknown,) = the_breaks(first)
    break_resolve(
        break_id=unknown.pk, action="match", actor="x", reason="paid", payment_id=pending.pk
    )
    pending.refresh_from_db()
    assert (pending.status, pending.mpesa_receipt_number) == (PaymentStatus.SUCCESS, "SAMEST0001")
    second = reconcile(
        [pay_row("OTHERST001", 650, "06-11-2025 10:00:00")],
        preamble=Preamble(short_code="4125224"),
    ).run
    other = Break.objects.get(run=second, kind="unknown_payment")

    with pytest.raises(BreakResolutionError) as refused:
        break_resolve(
            break_id=other.pk, action="match", actor="x", reason="y", payment_id=pending.pk
        )

    assert refused.value.code == "receipt_differs"
    assert "SAMEST0001" in refused.value.message and "OTHERST001" in refused.value.message
    assert Break.objects.get(pk=other.pk).status == BreakStatus.OPEN


def test_a_success_payment_without_a_receipt_takes_the_line_s_when_a_person_matches_it():
    confirmed = make_payment(amount=650, when=eat("01-11-2025 08:00:00"))  # no receipt
    run = reconcile([pay_row("SAMEST0002", 650, "05-11-2025 10:00:00")]).run
    unknown = Break.objects.get(run=run, kind="unknown_payment")

    break_resolve(
        break_id=unknown.pk, action="match", actor="x", reason="same", payment_id=confirmed.pk
    )

    confirmed.refresh_from_db()
    assert confirmed.mpesa_receipt_number == "SAMEST0002"
    assert confirmed.status == PaymentStatus.SUCCESS
    note = confirmed.events.filter(source=EventSource.RECONCILIATION).get()
    assert "SAMEST0002" in note.reason
    # Its "missing from the statement" break is settled by the same match.
    assert not Break.objects.filter(run=run, status=BreakStatus.OPEN).exists()


def test_a_long_reason_is_kept_whole_on_the_break_and_on_the_payment():
    pending = make_payment(
        amount=650, status=PaymentStatus.PENDING, when=eat("01-11-2025 08:00:00")
    )
    run = reconcile([pay_row("SAMEST0003", 650, "05-11-2025 10:00:00")]).run
    unknown = Break.objects.get(run=run, kind="unknown_payment")
    reason = ("Confirmed with the customer by phone. " * 52).strip()  # 1,975 characters

    break_resolve(
        break_id=unknown.pk, action="match", actor="x", reason=reason, payment_id=pending.pk
    )

    assert BreakEvent.objects.get(break_record=unknown).reason == reason
    event = pending.events.get(to_status=PaymentStatus.SUCCESS)
    assert event.reason.endswith(reason)


def test_nul_characters_are_dropped_alike_from_lines_rejects_and_the_preamble():
    # PostgreSQL's text and jsonb cannot hold NUL: a reject carrying one failed the import.
    rows = [
        pay_row("TK5XA1BC2D", 5, "05-11-2025 10:00:00", details="a\x00b"),
        Row(receipt="TK5XA1BC2E", completed="05-11-2025 10:00:00", paid_in="x", details="c\x00d"),
    ]
    preamble = Preamble(extra=[["Operator:", "ops\x00desk"]])

    result = reconcile(rows, preamble=preamble, auto_resolve=False)

    (line,) = StatementLine.objects.filter(statement_id=result.statement.pk)
    assert line.details == "ab"
    (reject,) = StatementReject.objects.filter(statement_id=result.statement.pk)
    assert "cd" in reject.raw
    assert "\x00" not in json.dumps(result.statement.metadata)
    pull = statement_import(
        data=b'{"ResponseCode": "1000", "ResponseRefID": "a\\u0000b", "Response": [[]]}',
        auto_resolve=False,
    )
    assert pull.statement.metadata["labels"]["ResponseRefID"] == ["ab"]


def test_auto_resolution_is_safe_to_run_again():
    make_payment(amount=500, receipt="TK5XA1BC2D", status=PaymentStatus.PENDING)
    run = reconcile([pay_row("TK5XA1BC2D", 500, "05-11-2025 10:00:00")], auto_resolve=False).run

    assert run_auto_resolve(run=run) == 1
    assert run_auto_resolve(run=run) == 0
    assert (
        Payment.objects.get(mpesa_receipt_number="TK5XA1BC2D")
        .events.filter(to_status=PaymentStatus.SUCCESS)
        .count()
        == 1
    )
