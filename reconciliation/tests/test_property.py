"""Property test: for generated payments and statements with planted differences, the
PostgreSQL engine and the small pure-Python reference matcher (:mod:`reconciliation.matching`)
agree exactly, line by line and payment by payment, and so do their summaries."""

import datetime as dt
from decimal import Decimal

import pytest
from django.db import transaction
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reconciliation import matching
from reconciliation.engines import python as python_engine
from reconciliation.formats import parse_statement
from reconciliation.imports import statement_import
from reconciliation.models import Break, LineMatch, Statement
from reconciliation.report import EngineReport, statement_period
from reconciliation.report import money as summary_money

from .builders import Preamble, Row, eat, g2_csv, g2_time, make_payment, money

pytestmark = [pytest.mark.services, pytest.mark.django_db]

BASE = eat("05-11-2025 10:00:00")
PHONES = ["254722000108", "254722000109", "254711000220"]
ACCOUNTS = ["INV1", "INV2", "inv 1"]
AMOUNTS = [Decimal("10.00"), Decimal("10.50"), Decimal("250.00")]
RECEIPTS = [f"TK5AAAAAA{i}" for i in range(6)]
STATUSES = ["SUCCESS", "SUCCESS", "PENDING", "FAILED", "INITIATED"]

payment_strategy = st.fixed_dictionaries(
    {
        "status": st.sampled_from(STATUSES),
        "amount": st.sampled_from(AMOUNTS),
        "phone": st.sampled_from(PHONES),
        "account": st.sampled_from(ACCOUNTS),
        "receipt": st.one_of(st.none(), st.sampled_from(RECEIPTS)),
        # Now and then a day or more away: too old or too new for the period's receipts.
        "minute": st.one_of(st.integers(-40, 160), st.sampled_from([-1500, -1441, 1601, 1700])),
        "with_date": st.booleans(),
        "final": st.booleans(),
    }
)
line_strategy = st.fixed_dictionaries(
    {
        "receipt": st.sampled_from([*RECEIPTS, "TK5BBBBBB1", "TK5BBBBBB2"]),
        "amount": st.sampled_from(AMOUNTS),
        "minute": st.integers(-40, 160),
        "second": st.integers(0, 59),
        "kind": st.sampled_from(["pay", "pay", "pay", "online", "charge", "sweep", "failed"]),
        "phone": st.sampled_from(PHONES),
        "mask": st.sampled_from(["prefix", "local", "full", "details", "none"]),
        "account": st.sampled_from([*ACCOUNTS, "INV9", ""]),
    }
)


def statement_row(line: dict) -> Row:
    moment = BASE + dt.timedelta(minutes=line["minute"], seconds=line["second"])
    phone = line["phone"]
    party = {
        "prefix": f"{phone[:5]}****{phone[-3:]} - JOHN **** DOE",
        "local": f"0{phone[3:5]}****{phone[-3:]} - jane roe",
        "full": f"{phone} - MARY",
        "details": "",
        "none": "",
    }[line["mask"]]
    account = line["account"]
    details = None
    if line["mask"] == "details":
        details = f"Pay Bill from 0{phone[3:5]}****{phone[-3:]} - ANN Acc. {account or 'INV1'}"
    elif line["mask"] == "none":
        details = "Pay Bill"
    kind = line["kind"]
    if kind in ("charge", "sweep"):
        reason = (
            "Pay Bill Charge"
            if kind == "charge"
            else "Utility Account to Organization Settlement Account"
        )
        return Row(
            receipt=line["receipt"],
            completed=g2_time(moment),
            withdrawn="-" + money(line["amount"]),
            reason=reason,
            details=reason,
            party="",
            account="",
        )
    return Row(
        receipt=line["receipt"],
        completed=g2_time(moment),
        paid_in=money(line["amount"]),
        reason="Pay Bill Online" if kind == "online" else "Pay Utility",
        status="Failed" if kind == "failed" else "Completed",
        party=party,
        account=(" " + account) if account else "",
        details=details,
    )


def reference(statement: Statement, data: bytes, window: int):
    lines, _rejects, _skipped = python_engine.read_lines(parse_statement(data))
    payments = python_engine.payment_facts(client_id=None)
    first = min((line.completed_at for line in lines), default=None)
    last = max((line.completed_at for line in lines), default=None)
    period = statement_period(statement, first, last)
    result = matching.match(
        python_engine.line_facts(lines),
        payments,
        window=dt.timedelta(seconds=window),
        period=period,
    )
    report = EngineReport()
    python_engine.fill_report(
        report, lines=lines, result=result, payments={p.id: p for p in payments}, period=period
    )
    return result, report


@settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    payments=st.lists(payment_strategy, max_size=12),
    lines=st.lists(line_strategy, max_size=12),
    with_preamble=st.booleans(),
    window=st.sampled_from([60, 600, 3600]),
)
def test_the_sql_engine_agrees_with_the_reference_matcher(
    db, payments, lines, with_preamble, window
):
    with transaction.atomic():
        seen: set[str] = set()
        for spec in payments:
            receipt = spec["receipt"] if spec["receipt"] not in seen else None
            if receipt:
                seen.add(receipt)
            make_payment(
                amount=spec["amount"],
                status=spec["status"],
                receipt=receipt,
                phone=spec["phone"],
                account=spec["account"],
                when=BASE + dt.timedelta(minutes=spec["minute"]),
                transaction_date=spec["with_date"],
                failure_final=spec["final"] and spec["status"] == "FAILED",
            )
        preamble = Preamble() if with_preamble else None
        data = g2_csv([statement_row(line) for line in lines], preamble=preamble)

        run = statement_import(
            data=data, time_window_seconds=window, auto_resolve=False, engine="postgresql"
        ).run

        expected, report = reference(run.statement, data, window)
        matches = {
            m.line_id % 100_000_000: m
            for m in LineMatch.objects.filter(statement_id=run.statement_id)
        }
        line_breaks = {
            b.line.line_no: b
            for b in Break.objects.filter(run=run, line__isnull=False).select_related("line")
        }
        got_lines = {
            n: (
                m.result,
                m.payment_id,
                m.match_method,
                tuple(line_breaks[n].candidates) if n in line_breaks else (),
                line_breaks[n].auto_resolvable if n in line_breaks else False,
            )
            for n, m in matches.items()
        }
        want_lines = {
            n: (r.result, r.payment_id, r.method, r.candidates, r.auto_resolvable)
            for n, r in expected.lines.items()
        }
        assert got_lines == want_lines
        got_payments = {
            b.payment_id: (b.kind, tuple(b.candidates))
            for b in Break.objects.filter(run=run, line__isnull=True)
        }
        want_payments = {pid: (b.kind, b.candidates) for pid, b in expected.payments.items()}
        assert got_payments == want_payments
        # The summaries agree too, and the bridge leaves nothing unexplained.
        summary = run.summary
        assert {k: v["count"] for k, v in summary["classes"].items()} == {
            k: v.count for k, v in report.classes.items()
        }
        for name, totals in report.classes.items():
            assert summary["classes"][name]["statement_amount"] == summary_money(
                totals.statement_amount
            )
            assert summary["classes"][name]["our_amount"] == summary_money(totals.our_amount)
        assert summary["bridge"]["statement_total"] == summary_money(report.statement_total)
        assert summary["bridge"]["our_total"] == summary_money(report.our_total)
        assert summary["bridge"]["residual"] == "0.00"
        transaction.set_rollback(True)
