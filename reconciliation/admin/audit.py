"""The audit trail, read-only: break events and credit approvals."""

from __future__ import annotations

from django.contrib import admin
from django.urls import reverse
from django.utils.html import format_html
from django.utils.safestring import SafeString

from core.admin_display import plain

from ..models import (
    ApprovalStatus,
    BreakEvent,
    CreditApproval,
)
from .common import (
    ReadOnlyAdminMixin,
    table,
)


@admin.register(BreakEvent)
class BreakEventAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ["created_at", "break_record", "action", "actor", "reason"]
    list_filter = ["action", "created_at"]
    search_fields = ["=break_record__id", "actor", "reason"]
    readonly_fields = ["created_at", "break_record", "action", "actor", "reason", "evidence_table"]
    fields = list(readonly_fields)

    @admin.display(description="Evidence")
    def evidence_table(self, obj: BreakEvent) -> SafeString:
        return table([(key, plain(value)) for key, value in (obj.evidence or {}).items()])


@admin.register(CreditApproval)
class CreditApprovalAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """Credits asked for on a statement line for payments M-Pesa failed: the pending ones wait
    for a second person (approve them from the break)."""

    list_display = [
        "requested_at",
        "status",
        "break_link",
        "payment",
        "requested_by",
        "decided_by",
        "decided_at",
    ]
    list_filter = ["status", "requested_at"]
    search_fields = ["=break_record__id", "=payment__id", "requested_by", "decided_by"]
    readonly_fields = [f.name for f in CreditApproval._meta.fields] + ["break_link"]

    @admin.display(description="Break")
    def break_link(self, obj: CreditApproval) -> str:
        if obj.status == ApprovalStatus.PENDING:
            url = reverse("admin:reconciliation_break_approve", args=[obj.break_record_id])
            return format_html(
                '{} <a class="button" href="{}">Approve…</a>', obj.break_record_id, url
            )
        url = reverse("admin:reconciliation_break_change", args=[obj.break_record_id])
        return format_html('<a href="{}">{}</a>', url, obj.break_record_id)
