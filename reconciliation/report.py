"""What both engines produce (:class:`EngineReport`, per-class totals, phase timings) and the
run summary and bridge built from it, in the order the API and the admin show it."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from .matching import Period
from .models import (
    BREAK_CLASSES,
    ResultClass,
    Statement,
)

ZERO = Decimal("0.00")
LINE_CLASSES = [c for c in ResultClass.values if c != ResultClass.MISSING_FROM_STATEMENT]


class Timer:
    """Wall-clock time per phase, in milliseconds, for the run's ``timings``."""

    def __init__(self) -> None:
        self.phases: dict[str, int] = {}

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            elapsed = int((time.perf_counter() - start) * 1000)
            self.phases[name] = self.phases.get(name, 0) + elapsed


@dataclass
class ClassTotals:
    count: int = 0
    statement_amount: Decimal = ZERO
    our_amount: Decimal = ZERO
    bridge_amount: Decimal = ZERO


@dataclass
class EngineReport:
    """Aggregates an engine hands to :func:`build_summary`."""

    classes: dict[str, ClassTotals] = field(default_factory=dict)
    statement_total: Decimal = ZERO  # Σ payment lines
    our_total: Decimal = ZERO  # Σ SUCCESS payments in the period, matched, or candidates
    rows_paid_in: Decimal = ZERO
    rows_withdrawn: Decimal = ZERO
    line_count: int = 0
    reject_count: int = 0
    skipped: dict[str, int] = field(default_factory=dict)
    period: Period | None = None
    first_line_at: dt.datetime | None = None
    last_line_at: dt.datetime | None = None
    # How the PostgreSQL engine read a CSV's rows: "arrow", "parallel" or "rows".
    load_method: str = ""


def money(value: Decimal | None) -> str:
    return format((value or ZERO).quantize(Decimal("0.01")), "f")


def statement_period(
    statement: Statement, first: dt.datetime | None, last: dt.datetime | None
) -> Period | None:
    """The preamble's Time Period when there is one, else the span of the lines."""
    if statement.period_start and statement.period_end:
        return Period(statement.period_start, statement.period_end)
    if first is not None and last is not None:
        return Period(first, last)
    return None


def build_summary(
    *, statement: Statement, report: EngineReport, window_seconds: int
) -> dict[str, Any]:
    """Counts and totals per class, and the bridge: statement total − our total = Σ explained
    differences (the breaks' bridge amounts) + residual, where the residual should be 0."""
    classes = {
        name: {
            "count": totals.count,
            "statement_amount": money(totals.statement_amount),
            "our_amount": money(totals.our_amount),
        }
        for name, totals in sorted(report.classes.items())
    }
    explained = {
        name: money(totals.bridge_amount)
        for name, totals in sorted(report.classes.items())
        if name in BREAK_CLASSES
    }
    explained_total = sum(
        (t.bridge_amount for n, t in report.classes.items() if n in BREAK_CLASSES), ZERO
    )
    difference = report.statement_total - report.our_total
    warnings = list(statement.metadata.get("warnings", []))
    checks: dict[str, Any] = {
        "rows_paid_in": money(report.rows_paid_in),
        "rows_withdrawn": money(report.rows_withdrawn),
    }
    if statement.total_paid_in is not None:
        checks["header_total_paid_in"] = money(statement.total_paid_in)
        if abs(statement.total_paid_in) != report.rows_paid_in:
            warnings.append(
                f"Total Paid In in the header is {money(statement.total_paid_in)} but the rows "
                f"add up to {money(report.rows_paid_in)}: the export may be a subset"
            )
    if statement.total_withdrawn is not None:
        checks["header_total_withdrawn"] = money(statement.total_withdrawn)
        if abs(statement.total_withdrawn) != report.rows_withdrawn:
            warnings.append(
                f"Total Withdrawn in the header is {money(statement.total_withdrawn)} but the "
                f"rows add up to {money(report.rows_withdrawn)}: the export may be a subset"
            )
    if statement.opening_balance is not None and statement.closing_balance is not None:
        expected = statement.opening_balance + report.rows_paid_in - report.rows_withdrawn
        checks["balance_expected_closing"] = money(expected)
        if expected != statement.closing_balance:
            warnings.append(
                f"opening balance + paid in − withdrawn = {money(expected)}, but the closing "
                f"balance is {money(statement.closing_balance)}: the export may be a subset"
            )
    period = report.period
    breaks_open = sum(t.count for n, t in report.classes.items() if n in BREAK_CLASSES)
    return {
        "statement_id": statement.pk,
        "file_name": statement.file_name,
        "file_format": statement.file_format,
        "lines": report.line_count,
        "rejects": report.reject_count,
        "skipped_rows": report.skipped,
        "period": {
            "start": period.start.isoformat() if period else None,
            "end": period.end.isoformat() if period else None,
            "from_header": bool(statement.period_start and statement.period_end),
        },
        "time_window_seconds": window_seconds,
        "classes": classes,
        "breaks": breaks_open,
        "bridge": {
            "statement_total": money(report.statement_total),
            "our_total": money(report.our_total),
            "difference": money(difference),
            "explained": explained,
            "explained_total": money(explained_total),
            "residual": money(difference - explained_total),
        },
        "checks": checks,
        "warnings": warnings,
    }


SUMMARY_KEYS = (
    "statement_id",
    "file_name",
    "file_format",
    "lines",
    "rejects",
    "skipped_rows",
    "period",
    "time_window_seconds",
    "classes",
    "breaks",
    "bridge",
    "checks",
    "warnings",
)
CLASS_KEYS = ("count", "statement_amount", "our_amount")
BRIDGE_KEYS = (
    "statement_total",
    "our_total",
    "difference",
    "explained",
    "explained_total",
    "residual",
)


def summary_in_order(summary: dict[str, Any]) -> dict[str, Any]:
    """A stored summary with its keys in the order :func:`build_summary` writes them: the
    bridge reads top to bottom, the classes alphabetically (PostgreSQL's jsonb keeps keys
    in an order of its own)."""

    def ordered(values: dict[str, Any], keys: Iterable[str]) -> dict[str, Any]:
        out = {key: values[key] for key in keys if key in values}
        out.update((key, value) for key, value in sorted(values.items()) if key not in out)
        return out

    if not summary:
        return summary
    out = ordered(summary, SUMMARY_KEYS)
    if isinstance(out.get("classes"), dict):
        out["classes"] = {
            name: ordered(totals, CLASS_KEYS) if isinstance(totals, dict) else totals
            for name, totals in ordered(out["classes"], ()).items()
        }
    if isinstance(out.get("period"), dict):
        out["period"] = ordered(out["period"], ("start", "end", "from_header"))
    if isinstance(out.get("bridge"), dict):
        out["bridge"] = ordered(out["bridge"], BRIDGE_KEYS)
        if isinstance(out["bridge"].get("explained"), dict):
            out["bridge"]["explained"] = ordered(out["bridge"]["explained"], ())
    return out
