"""Admin for the inbox: the raw body as received, processing state, errors, and replay."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

from core.admin_display import ADMIN_CSS, status_badge
from payments.admin import ReadOnlyAdminMixin

from .models import CallbackState, InboundCallback
from .services import callback_replay


@admin.register(InboundCallback)
class InboundCallbackAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = [
        "id",
        "received_at",
        "kind",
        "state_label",
        "checkout_request_id",
        "source_ip",
        "attempts",
        "payment_link",
    ]
    list_filter = ["state", "kind", "received_at"]
    date_hierarchy = "received_at"
    search_fields = ["=checkout_request_id", "=id", "=dedupe_key"]
    exclude = ["body", "token_hash"]
    readonly_fields = [
        "kind",
        "received_at",
        "raw_body",
        "body_size",
        "body_complete",
        "body_purged_at",
        "refused_unstored",
        "content_type",
        "headers_table",
        "source_ip",
        "source_flagged",
        "verified_at",
        "payment_link",
        "dedupe_key",
        "checkout_request_id",
        "state_label",
        "attempts",
        "last_error_text",
        "next_attempt_at",
        "processed_at",
        "answer",
    ]
    fields = list(readonly_fields)  # nothing else: no stored field is a form field
    actions = ["replay"]
    list_select_related = ["payment"]

    class Media:
        css = ADMIN_CSS

    # Green: done with; amber: waiting or kept for a person; red: refused or failed.
    STATE_COLOURS: dict[str, str] = {
        CallbackState.PROCESSED: "SUCCESS",
        CallbackState.DUPLICATE: "SUCCESS",
        CallbackState.RECEIVED: "PENDING",
        CallbackState.VERIFYING: "PENDING",
        CallbackState.REVIEW: "PENDING",
        CallbackState.ORPHAN: "PENDING",
        CallbackState.FAILED: "FAILED",
        CallbackState.INVALID: "FAILED",
        CallbackState.REJECTED: "FAILED",
    }

    @admin.display(description="State", ordering="state")
    def state_label(self, obj: InboundCallback) -> SafeString:
        badge = status_badge(self.STATE_COLOURS.get(obj.state, ""), obj.state)
        return format_html('<span title="{}">{}</span>', obj.get_state_display(), badge)

    @admin.display(description="Payment", ordering="payment")
    def payment_link(self, obj: InboundCallback) -> SafeString:
        if obj.payment is None:
            return format_html("{}", "—")
        url = reverse("admin:payments_payment_change", args=[obj.payment_id])
        return format_html(
            '<a href="{}">{}</a> {}',
            url,
            str(obj.payment_id)[:8],
            status_badge(obj.payment.status),
        )

    @admin.display(description="Headers")
    def headers_table(self, obj: InboundCallback) -> SafeString:
        rows = sorted((obj.headers or {}).items())
        if not rows:
            return format_html("{}", "—")
        body = format_html_join("", "<tr><th>{}</th><td>{}</td></tr>", rows)
        return format_html('<table class="figures">{}</table>', body)

    @admin.display(description="Body as received")
    def raw_body(self, obj: InboundCallback) -> str:
        if obj.body_purged_at is not None:
            return "(purged by the retention policy; dedupe key is its SHA-256)"
        note = (
            "" if obj.body_complete else f"\n… (only the first {len(bytes(obj.body))} bytes kept)"
        )
        return format_html(
            "<pre style='white-space:pre-wrap'>{}{}</pre>", obj.body_text or "(empty)", note
        )

    @admin.display(description="Last error")
    def last_error_text(self, obj: InboundCallback) -> str:
        return format_html("<pre style='white-space:pre-wrap'>{}</pre>", obj.last_error or "—")

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # The list's replay action needs it; a callback itself is evidence and is never
        # changed here (its page is read-only, without Save).
        return obj is None and request.user.is_staff and request.user.is_active

    @admin.action(description="Replay selected failed/orphan callbacks")
    def replay(self, request: HttpRequest, queryset: QuerySet[InboundCallback]) -> None:
        replayable = queryset.filter(state__in=[CallbackState.FAILED, CallbackState.ORPHAN])
        count = 0
        for callback in replayable:
            callback_replay(callback_id=callback.pk, actor=request.user.get_username())
            self.log_change(request, callback, f"Replayed (was {callback.state})")
            count += 1
        self.message_user(request, f"Queued {count} callback(s) for processing.", messages.SUCCESS)
