"""The "Reconciliation" section of a payment's admin page: the statement lines that claim the
payment and the breaks that name it, linked. Registered with the payments admin, which
cannot import reconciliation (it sits below)."""

from __future__ import annotations

from typing import Any

from django.db.models import Q
from django.urls import reverse
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

from core.admin_display import money, when
from payments.admin import register_payment_section
from payments.models import Payment

from ..models import Break, LineMatch


def payment_reconciliation(obj: Payment) -> SafeString:
    """The statement lines that claim this payment and the breaks that name it, linked."""
    matches = list(LineMatch.objects.filter(payment=obj).select_related("line", "statement__run"))
    breaks = list(
        Break.objects.filter(Q(payment=obj) | Q(resolved_payment=obj))
        .select_related("line", "run")
        .order_by("id")
    )
    if not matches and not breaks:
        return format_html("{}", "not on any reconciled statement")
    rows: list[tuple[Any, ...]] = []
    for match in matches:
        run = getattr(match.statement, "run", None)
        run_cell = (
            format_html(
                '<a href="{}">run #{}</a>',
                reverse("admin:reconciliation_reconciliationrun_change", args=[run.pk]),
                run.pk,
            )
            if run
            else "—"
        )
        line_breaks = [b for b in breaks if b.line_id == match.line_id]
        rows.append(
            (
                run_cell,
                format_html(
                    '<a href="{}">{}</a> row {}',
                    reverse("admin:reconciliation_statement_change", args=[match.statement_id]),
                    match.statement.file_name or f"statement #{match.statement_id}",
                    match.line.line_no,
                ),
                match.line.receipt_number,
                when(match.line.completed_at),
                money(match.amount),
                match.get_result_display(),
                _break_links(line_breaks),
            )
        )
    for brk in breaks:
        if any(brk.line_id == m.line_id for m in matches):
            continue
        rows.append(
            (
                format_html(
                    '<a href="{}">run #{}</a>',
                    reverse("admin:reconciliation_reconciliationrun_change", args=[brk.run_id]),
                    brk.run_id,
                ),
                f"row {brk.line.line_no}" if brk.line else "no line",
                brk.line.receipt_number if brk.line else "—",
                when(brk.line.completed_at) if brk.line else "—",
                money(brk.statement_amount),
                brk.get_kind_display(),
                _break_links([brk]),
            )
        )
    head = SafeString(
        "<thead><tr><th>Run</th><th>Statement line</th><th>Receipt</th><th>Completed</th>"
        '<th class="amount">Amount</th><th>Class</th><th>Break</th></tr></thead>'
    )
    body = format_html_join(
        "",
        '<tr><td class="nowrap">{}</td><td>{}</td><td>{}</td><td class="nowrap">{}</td>'
        '<td class="amount">{}</td><td>{}</td><td class="nowrap">{}</td></tr>',
        rows,
    )
    return format_html(
        '<table class="figures" id="payment-reconciliation">{}{}</table>', head, body
    )


def _break_links(breaks: list[Any]) -> SafeString:
    if not breaks:
        return format_html("{}", "—")
    return format_html_join(
        ", ",
        '<a href="{}">break {}</a> ({})',
        (
            (
                reverse("admin:reconciliation_break_change", args=[brk.pk]),
                brk.pk,
                brk.get_status_display().lower(),
            )
            for brk in breaks
        ),
    )


register_payment_section("reconciliation", "Reconciliation", payment_reconciliation)
