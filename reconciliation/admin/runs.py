"""Reconciliation runs: the run's page (summary, classes and bridge as tables, warnings, links
to each class's breaks) and its CSV report."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from django.contrib import admin
from django.db.models import Count, Q, QuerySet
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import get_object_or_404
from django.urls import URLPattern, path, reverse
from django.utils.html import format_html
from django.utils.safestring import SafeString

from core.admin_display import ADMIN_CSS, amount_html, money, plain, when

from ..models import (
    BREAK_CLASSES,
    Break,
    BreakStatus,
    ReconciliationRun,
)
from ..report import summary_in_order
from ..selectors import class_statement_amounts, run_report_csv
from .common import (
    ReadOnlyAdminMixin,
    class_label,
    period_cell,
    run_state,
)


@admin.register(ReconciliationRun)
class ReconciliationRunAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = [
        "id",
        "file_name",
        "state",
        "client",
        "period",
        "lines",
        "open_breaks",
        "residual",
        "started_at",
    ]
    list_filter = ["state", "engine", "started_at"]
    date_hierarchy = "started_at"
    search_fields = ["=id", "statement__file_name"]
    readonly_fields = [
        "statement",
        "state",
        "client",
        "created_by",
        "engine",
        "time_window_seconds",
        "auto_resolve",
        "period_start",
        "period_end",
        "started_at",
        "finished_at",
        "duration_ms",
    ]
    fieldsets = [("The run", {"fields": list(readonly_fields)})]
    list_select_related = ["statement", "client"]
    change_form_template = "admin/reconciliation/reconciliationrun/change_form.html"

    class Media:
        css = ADMIN_CSS

    def get_queryset(self, request: HttpRequest) -> QuerySet[ReconciliationRun]:
        return (
            super()
            .get_queryset(request)
            .annotate(open_count=Count("breaks", filter=Q(breaks__status=BreakStatus.OPEN)))
        )

    @admin.display(description="State")
    def state(self, obj: ReconciliationRun) -> str:
        return run_state(obj)

    @admin.display(description="Statement", ordering="statement__file_name")
    def file_name(self, obj: ReconciliationRun) -> str:
        return obj.statement.file_name or f"statement #{obj.statement_id}"

    @admin.display(description="Period (EAT)", ordering="period_start")
    def period(self, obj: ReconciliationRun) -> SafeString:
        return period_cell(obj.period_start, obj.period_end)

    @admin.display(description="Lines")
    def lines(self, obj: ReconciliationRun) -> int:
        return int(obj.summary.get("lines", 0))

    @admin.display(description="Open breaks", ordering="open_count")
    def open_breaks(self, obj: ReconciliationRun) -> SafeString:
        count = int(getattr(obj, "open_count", 0))
        url = (
            reverse("admin:reconciliation_break_changelist")
            + f"?run__id__exact={obj.pk}&status__exact=open"
        )
        return format_html('<a href="{}">{}</a>', url, count)

    @admin.display(description="Residual")
    def residual(self, obj: ReconciliationRun) -> SafeString:
        return amount_html(obj.summary.get("bridge", {}).get("residual"))

    def change_view(
        self,
        request: HttpRequest,
        object_id: str,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        run = self.get_object(request, object_id)
        context = dict(extra_context or {})
        if run is not None:
            context["run_view"] = self.run_view(run)
        return super().change_view(request, object_id, form_url, context)

    def run_view(self, run: ReconciliationRun) -> dict[str, Any]:
        """The run's summary as rows and tables for the template (never JSON)."""
        summary = summary_in_order(run.summary or {})
        breaks_url = reverse("admin:reconciliation_break_changelist")
        counts = {
            row["kind"]: row
            for row in Break.objects.filter(run=run)
            .values("kind")
            .annotate(total=Count("id"), open=Count("id", filter=Q(status=BreakStatus.OPEN)))
        }
        bridge = summary.get("bridge", {})
        explained = bridge.get("explained", {})
        # As the statement shows them: a class of withdrawals (charges, fees) is negative.
        signed = class_statement_amounts(run=run)
        classes = []
        for name, totals in summary.get("classes", {}).items():
            found = counts.get(name, {})
            classes.append(
                {
                    "name": name,
                    "label": class_label(name),
                    "count": totals.get("count", 0),
                    "statement_amount": money(signed.get(name, totals.get("statement_amount"))),
                    "our_amount": money(totals.get("our_amount")),
                    "bridge": money(explained.get(name)) if name in explained else "",
                    "is_break": name in BREAK_CLASSES,
                    "open": found.get("open", 0),
                    "breaks_url": f"{breaks_url}?run__id__exact={run.pk}&kind__exact={name}",
                    "open_url": f"{breaks_url}?run__id__exact={run.pk}&kind__exact={name}"
                    "&status__exact=open",
                }
            )
        residual = bridge.get("residual")
        bridge_rows = [
            {"label": "Statement total (payments in the statement)", "value": "statement_total"},
            {"label": "Our total (SUCCESS payments in the period)", "value": "our_total"},
            {"label": "Difference (statement − ours)", "value": "difference"},
        ]
        bridge_table: list[dict[str, Any]] = [
            {"label": row["label"], "amount": money(bridge.get(row["value"])), "css": ""}
            for row in bridge_rows
            if row["value"] in bridge
        ]
        for name, value in explained.items():
            bridge_table.append(
                {
                    "label": f"explained by: {class_label(name)}",
                    "amount": money(value),
                    "css": "sub",
                }
            )
        if "explained_total" in bridge:
            bridge_table.append(
                {
                    "label": "Explained total",
                    "amount": money(bridge["explained_total"]),
                    "css": "total",
                }
            )
        period = summary.get("period") or {}
        skipped = summary.get("skipped_rows") or {}
        statement_url = reverse("admin:reconciliation_statement_change", args=[run.statement_id])
        overview = [
            ("File", summary.get("file_name") or run.statement.file_name),
            ("Format", summary.get("file_format", "")),
            ("Lines", summary.get("lines", 0)),
            ("Rejected rows", summary.get("rejects", 0)),
            ("Rows skipped", plain(skipped) if skipped else "none"),
            ("Period from", when(period.get("start"))),
            ("Period to", when(period.get("end"))),
            (
                "Period taken from",
                "the statement's header" if period.get("from_header") else "the lines' times",
            ),
            ("Time window (seconds)", summary.get("time_window_seconds", "")),
            ("Breaks at import", summary.get("breaks", 0)),
            ("Breaks open now", sum(row.get("open", 0) for row in counts.values())),
        ]
        checks = [
            (key.replace("_", " ").capitalize(), money(value))
            for key, value in (summary.get("checks") or {}).items()
        ]
        return {
            "state": run_state(run),
            "overview": overview,
            "classes": classes,
            "bridge": bridge_table,
            "residual": money(residual),
            "residual_zero": residual is not None and Decimal(str(residual)) == 0,
            "checks": checks,
            "warnings": summary.get("warnings") or [],
            "timings": list((run.timings or {}).items()),
            "statement_url": statement_url,
            "rejects_url": statement_url + "#rejects-tab",
            "rejects": summary.get("rejects", 0),
            "breaks_url": f"{breaks_url}?run__id__exact={run.pk}",
            "open_breaks_url": f"{breaks_url}?run__id__exact={run.pk}&status__exact=open",
            "report_url": reverse("admin:reconciliation_reconciliationrun_report", args=[run.pk]),
        }

    def get_urls(self) -> list[URLPattern]:
        return [
            path(
                "<int:run_id>/report.csv",
                self.admin_site.admin_view(self.report_view),
                name="reconciliation_reconciliationrun_report",
            ),
            *super().get_urls(),
        ]

    def report_view(
        self, request: HttpRequest, run_id: int
    ) -> HttpResponse | StreamingHttpResponse:
        if not self.has_view_permission(request):
            return HttpResponse(status=403)
        run = get_object_or_404(ReconciliationRun, pk=run_id)
        response = StreamingHttpResponse(run_report_csv(run=run), content_type="text/csv")
        response["Content-Disposition"] = f'attachment; filename="reconciliation-{run.pk}.csv"'
        return response
