"""What the reconciliation admin pages share: read-only admin, small HTML tables, the run's
state and period cells, the upload limit, a payment's link."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.http import HttpRequest
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

from core.admin_display import change_url, money, status_badge, when
from payments.models import Payment

from ..models import (
    ReconciliationRun,
    ResultClass,
    RunState,
)

# A payment found by its amount alone is looked for this close to the statement line's time
# (created_at is indexed; amount is not), so that the search stays cheap on a large table.
AMOUNT_SEARCH_DAYS = 3
SEARCH_LIMIT = 25


class ReadOnlyAdminMixin:
    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


def table(rows: list[tuple[Any, Any]]) -> SafeString:
    """Label/value rows as an HTML table (for JSON mappings a person reads)."""
    if not rows:
        return format_html("{}", "—")
    body = format_html_join("", "<tr><th>{}</th><td>{}</td></tr>", rows)
    return format_html('<table class="figures">{}</table>', body)


def class_label(name: str) -> str:
    try:
        return str(ResultClass(name).label)
    except ValueError:
        return name


def run_state(run: ReconciliationRun) -> str:
    """What the run is doing: queued, reading the file (with the rows read so far),
    matching, completed, or failed with the reason."""
    if run.state == RunState.PARSING and run.rows_read:
        return f"Reading the file ({run.rows_read:,} rows read)"
    if run.state == RunState.FAILED and run.error:
        return f"Failed: {run.error}"
    return str(run.get_state_display())


def period_cell(start: Any, end: Any) -> SafeString:
    """A period on two lines (from, to), each to the second in EAT, for a narrow column."""
    if start is None and end is None:
        return format_html("{}", "—")
    return format_html(
        '<span class="nowrap">{}</span><br><span class="nowrap">{}</span>', when(start), when(end)
    )


def max_upload_bytes() -> int:
    return settings.RECONCILIATION_MAX_UPLOAD_BYTES


def payment_link(payment: Payment | None) -> SafeString:
    if payment is None:
        return format_html("{}", "—")
    url = change_url("admin:payments_payment_change", payment.pk)
    return format_html(
        '<a href="{}">{}</a> {} <span class="amount">{}</span>',
        url,
        str(payment.pk)[:8],
        status_badge(payment.status),
        money(payment.amount),
    )
