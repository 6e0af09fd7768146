"""Statements: the list, a statement's rejects, and the upload page (stored and queued, read
by a worker)."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

from core.admin_display import ADMIN_CSS, amount_html, plain
from core.models import ApiClient

from ..formats.limits import StatementFormatError
from ..imports import statement_accept
from ..models import (
    Statement,
    StatementReject,
)
from .common import (
    ReadOnlyAdminMixin,
    max_upload_bytes,
    period_cell,
    run_state,
    table,
)


class StatementRejectInline(ReadOnlyAdminMixin, admin.TabularInline):
    model = StatementReject
    extra = 0
    can_delete = False
    fields = ("row_number", "reason", "row_as_read")
    readonly_fields = fields
    max_num = 0
    show_change_link = False

    @admin.display(description="Row as read")
    def row_as_read(self, obj: StatementReject) -> str:
        return plain(obj.raw)


class StatementUploadForm(forms.Form):
    file = forms.FileField(
        help_text="The M-Pesa statement: G2 XLS, XLSX or CSV from the org portal, or a Daraja "
        "Pull Transactions response (JSON)."
    )
    client = forms.ModelChoiceField(
        queryset=ApiClient.objects.filter(revoked_at__isnull=True).order_by("name"),
        required=False,
        empty_label="(no API client)",
        help_text="The API client whose payments this statement is matched against; its runs "
        "and breaks are then visible to that client through the API.",
    )
    time_window_seconds = forms.IntegerField(
        required=False,
        min_value=0,
        max_value=7 * 86400,
        help_text="How far apart a line and a payment may be in time to match without a "
        "receipt (empty: RECONCILIATION_MATCH_WINDOW_SECONDS).",
    )
    auto_resolve = forms.BooleanField(
        required=False,
        initial=True,
        help_text="Move PENDING/FAILED payments that the statement proves paid (same receipt, "
        "same amount) to SUCCESS automatically.",
    )


@admin.register(Statement)
class StatementAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = [
        "id",
        "file_name",
        "short_code",
        "period",
        "lines",
        "rejects",
        "client",
        "uploaded_by",
        "created_at",
        "run_link",
    ]
    list_filter = ["file_format", "created_at"]
    search_fields = ["file_name", "=checksum", "short_code", "account_holder"]
    date_hierarchy = "created_at"
    fieldsets = [
        (
            None,
            {
                "fields": [
                    "run_link",
                    "file_name",
                    "file_format",
                    "client",
                    "uploaded_by",
                    "created_at",
                    "size_bytes",
                    "checksum",
                ]
            },
        ),
        (
            "Preamble",
            {
                "fields": [
                    "account_holder",
                    "short_code",
                    "account_name",
                    "period_start",
                    "period_end",
                    "report_time",
                    "balances",
                    "metadata_table",
                ]
            },
        ),
        ("Rows", {"fields": ["header_row", "line_count", "reject_count", "skipped_table"]}),
    ]
    readonly_fields = [
        "run_link",
        "file_name",
        "file_format",
        "client",
        "uploaded_by",
        "created_at",
        "size_bytes",
        "checksum",
        "account_holder",
        "short_code",
        "account_name",
        "period_start",
        "period_end",
        "report_time",
        "balances",
        "metadata_table",
        "header_row",
        "line_count",
        "reject_count",
        "skipped_table",
    ]
    inlines = [StatementRejectInline]
    list_select_related = ["client", "run"]

    class Media:
        css = ADMIN_CSS

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return bool(request.user.has_perm("reconciliation.add_statement"))

    @admin.display(description="Lines", ordering="line_count")
    def lines(self, obj: Statement) -> int:
        return obj.line_count

    @admin.display(description="Rejects", ordering="reject_count")
    def rejects(self, obj: Statement) -> int:
        return obj.reject_count

    @admin.display(description="Period (EAT)", ordering="period_start")
    def period(self, obj: Statement) -> SafeString:
        return period_cell(obj.period_start, obj.period_end)

    @admin.display(description="Balances and totals (header)")
    def balances(self, obj: Statement) -> SafeString:
        rows = [
            (label, amount_html(value))
            for label, value in [
                ("Opening balance", obj.opening_balance),
                ("Closing balance", obj.closing_balance),
                ("Available balance", obj.available_balance),
                ("Total paid in", obj.total_paid_in),
                ("Total withdrawn", obj.total_withdrawn),
            ]
            if value is not None
        ]
        return table(rows)

    @admin.display(description="Preamble as read")
    def metadata_table(self, obj: Statement) -> SafeString:
        metadata = obj.metadata or {}
        rows: list[tuple[Any, Any]] = [
            (key, table([(k, plain(v)) for k, v in value.items()]) if value else "—")
            if isinstance(value, dict)
            else (key, plain(value))
            for key, value in metadata.items()
            if key != "warnings"
        ]
        if metadata.get("warnings"):
            rows.append(
                (
                    "Warnings",
                    format_html(
                        '<ul class="warnings">{}</ul>',
                        format_html_join("", "<li>{}</li>", ((w,) for w in metadata["warnings"])),
                    ),
                )
            )
        return table(rows)

    @admin.display(description="Rows skipped (not transactions)")
    def skipped_table(self, obj: Statement) -> SafeString:
        return table(list((obj.skipped or {}).items()))

    @admin.display(description="Run")
    def run_link(self, obj: Statement) -> str:
        run = getattr(obj, "run", None)
        if run is None:
            return "—"
        url = reverse("admin:reconciliation_reconciliationrun_change", args=[run.pk])
        return format_html('<a href="{}">run #{}</a> ({})', url, run.pk, run_state(run))

    def add_view(
        self, request: HttpRequest, form_url: str = "", extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        """Upload a statement: the same service as ``POST /reconciliation/statements/``
        (:func:`~reconciliation.imports.statement_accept`: stored and queued, read by a
        worker, never in this request), then the run's page, which shows its state."""
        if not self.has_add_permission(request):
            return HttpResponse("You may not upload statements.", status=403)
        form = StatementUploadForm(request.POST or None, request.FILES or None)
        if request.method == "POST" and form.is_valid():
            upload = form.cleaned_data["file"]
            if upload.size > max_upload_bytes():
                form.add_error(
                    "file",
                    f"The file is over {max_upload_bytes()} bytes; use the reconcile_statement "
                    "command for large statements.",
                )
            else:
                try:
                    result = statement_accept(
                        data=upload.read(),
                        file_name=upload.name or "",
                        client=form.cleaned_data["client"],
                        actor=request.user.get_username(),
                        time_window_seconds=form.cleaned_data["time_window_seconds"],
                        auto_resolve=form.cleaned_data["auto_resolve"],
                    )
                except StatementFormatError as exc:
                    form.add_error("file", f"Not a readable statement: {exc}")
                else:
                    run = result.run
                    if result.created:
                        self.log_addition(request, result.statement, "Uploaded in the admin")
                        self.message_user(
                            request,
                            f"Uploaded {result.statement.file_name}: run #{run.pk} is queued; "
                            "a worker reads and matches it (reload this page to follow it).",
                            messages.SUCCESS,
                        )
                    elif result.queued:
                        self.message_user(
                            request,
                            f"This file's earlier import failed (statement #{result.statement.pk})"
                            f": run #{run.pk} is queued again.",
                            messages.WARNING,
                        )
                    else:
                        self.message_user(
                            request,
                            f"This file was imported before (statement #{result.statement.pk});"
                            f" here is its run #{run.pk}.",
                            messages.WARNING,
                        )
                    return HttpResponseRedirect(
                        reverse("admin:reconciliation_reconciliationrun_change", args=[run.pk])
                    )
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": "Upload a statement and reconcile it",
            "form": form,
            "max_upload_bytes": max_upload_bytes(),
            "media": self.media + form.media,
            **(extra_context or {}),
        }
        return TemplateResponse(request, "admin/reconciliation/statement/upload.html", context)
