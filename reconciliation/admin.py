"""Admin: statements, runs (summary and bridge, the CSV report) and breaks, read-only, with
filters. Breaks are resolved here with a reason (one at a time, or several at once to accept
them), through the same service the API uses; every resolution is a BreakEvent and a LogEntry.
A credit that needs a second person (a payment M-Pesa failed) is approved here by a staff user
other than the one who asked for it. Resolving and approving need the
``reconciliation.change_break`` permission.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.db.models import Count, Q, QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect, StreamingHttpResponse
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils.html import format_html

from .models import (
    ApprovalStatus,
    Break,
    BreakEvent,
    BreakStatus,
    CreditApproval,
    ReconciliationRun,
    Resolution,
    ResultClass,
    Statement,
    StatementReject,
)
from .selectors import run_report_csv
from .services import (
    BreakAction,
    BreakResolutionError,
    break_approve,
    break_resolve,
    statement_credit_event,
    user_actor_key,
)


class ReadOnlyAdminMixin:
    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


def _pretty(data: Any) -> str:
    return format_html("<pre>{}</pre>", json.dumps(data, indent=2, default=str))


class StatementRejectInline(ReadOnlyAdminMixin, admin.TabularInline):
    model = StatementReject
    extra = 0
    can_delete = False
    fields = ("row_number", "reason", "raw")
    readonly_fields = fields
    max_num = 0
    show_change_link = False


@admin.register(Statement)
class StatementAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = [
        "id",
        "file_name",
        "file_format",
        "short_code",
        "period_start",
        "period_end",
        "line_count",
        "reject_count",
        "client",
        "created_at",
    ]
    list_filter = ["file_format", "created_at"]
    search_fields = ["file_name", "=checksum", "short_code", "account_holder"]
    date_hierarchy = "created_at"
    readonly_fields = [f.name for f in Statement._meta.fields if f.name != "metadata"] + [
        "metadata_pretty",
        "run_link",
    ]
    exclude = ["metadata"]
    inlines = [StatementRejectInline]
    list_select_related = ["client"]

    @admin.display(description="Metadata (preamble)")
    def metadata_pretty(self, obj: Statement) -> str:
        return _pretty(obj.metadata)

    @admin.display(description="Reconciliation run")
    def run_link(self, obj: Statement) -> str:
        run = ReconciliationRun.objects.filter(statement=obj).first()
        if run is None:
            return "—"
        url = reverse("admin:reconciliation_reconciliationrun_change", args=[run.pk])
        return format_html('<a href="{}">run #{}</a>', url, run.pk)


@admin.register(ReconciliationRun)
class ReconciliationRunAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = [
        "id",
        "statement",
        "engine",
        "period_start",
        "period_end",
        "lines",
        "open_breaks",
        "residual",
        "duration_ms",
        "started_at",
    ]
    list_filter = ["engine", "started_at"]
    date_hierarchy = "started_at"
    search_fields = ["=id", "statement__file_name"]
    readonly_fields = [
        f.name for f in ReconciliationRun._meta.fields if f.name not in ("summary", "timings")
    ] + ["bridge", "summary_pretty", "timings_pretty", "links"]
    exclude = ["summary", "timings"]
    list_select_related = ["statement"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[ReconciliationRun]:
        return (
            super()
            .get_queryset(request)
            .annotate(open_count=Count("breaks", filter=Q(breaks__status=BreakStatus.OPEN)))
        )

    @admin.display(description="Lines")
    def lines(self, obj: ReconciliationRun) -> int:
        return int(obj.summary.get("lines", 0))

    @admin.display(description="Open breaks", ordering="open_count")
    def open_breaks(self, obj: ReconciliationRun) -> int:
        return int(getattr(obj, "open_count", 0))

    @admin.display(description="Unexplained residual")
    def residual(self, obj: ReconciliationRun) -> str:
        return str(obj.summary.get("bridge", {}).get("residual", ""))

    @admin.display(description="Bridge")
    def bridge(self, obj: ReconciliationRun) -> str:
        return _pretty(obj.summary.get("bridge", {}))

    @admin.display(description="Summary")
    def summary_pretty(self, obj: ReconciliationRun) -> str:
        return _pretty(obj.summary)

    @admin.display(description="Timings (ms)")
    def timings_pretty(self, obj: ReconciliationRun) -> str:
        return _pretty(obj.timings)

    @admin.display(description="Breaks and report")
    def links(self, obj: ReconciliationRun) -> str:
        breaks = reverse("admin:reconciliation_break_changelist") + f"?run__id__exact={obj.pk}"
        report = reverse("admin:reconciliation_reconciliationrun_report", args=[obj.pk])
        return format_html(
            '<a href="{}">breaks</a> · <a href="{}">CSV report for the accountant</a>',
            breaks,
            report,
        )

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


class BreakEventInline(ReadOnlyAdminMixin, admin.TabularInline):
    model = BreakEvent
    extra = 0
    can_delete = False
    fields = ("created_at", "action", "actor", "reason", "evidence")
    readonly_fields = fields
    ordering = ["created_at", "id"]


class ReasonForm(forms.Form):
    reason = forms.CharField(widget=forms.Textarea(attrs={"rows": 3, "cols": 80}), max_length=2000)


class ResolveForm(forms.Form):
    action = forms.ChoiceField(
        choices=[
            (
                BreakAction.MATCH,
                "Match the line to a payment (a PENDING/FAILED one moves to SUCCESS)",
            ),
            (BreakAction.ACCEPT, "Accept: explained, nothing to change"),
        ],
        widget=forms.RadioSelect,
    )
    payment_id = forms.UUIDField(
        required=False,
        help_text="For an ambiguous or unknown line: the payment's id (candidates are listed).",
    )
    reason = forms.CharField(widget=forms.Textarea(attrs={"rows": 3, "cols": 80}), max_length=2000)


@admin.register(Break)
class BreakAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = [
        "id",
        "run",
        "kind",
        "status",
        "receipt",
        "statement_amount",
        "our_amount",
        "bridge_amount",
        "payment",
        "auto_resolvable",
        "resolution",
        "resolved_by",
    ]
    list_filter = ["kind", "status", "resolution", "auto_resolvable", "run"]
    search_fields = ["=id", "=line__receipt_number", "=payment__id"]
    list_select_related = ["line", "payment", "run"]
    readonly_fields = [f.name for f in Break._meta.fields] + ["line_details", "resolve_link"]
    inlines = [BreakEventInline]
    actions = ["accept_selected", "credit_selected"]
    show_full_result_count = False

    def has_resolve_permission(self, request: HttpRequest) -> bool:
        return bool(request.user.has_perm("reconciliation.change_break"))

    @admin.display(description="Receipt")
    def receipt(self, obj: Break) -> str:
        return obj.line.receipt_number if obj.line else "—"

    @admin.display(description="Statement line")
    def line_details(self, obj: Break) -> str:
        line = obj.line
        if line is None:
            return "—"
        return _pretty(
            {
                "row": line.line_no,
                "receipt_number": line.receipt_number,
                "completed_at": line.completed_at,
                "paid_in": line.paid_in,
                "withdrawn": line.withdrawn,
                "reason_type": line.reason_type,
                "details": line.details,
                "other_party": line.other_party,
                "account_reference": line.account_reference,
            }
        )

    @admin.display(description="Resolve")
    def resolve_link(self, obj: Break) -> str:
        approve = reverse("admin:reconciliation_break_approve", args=[obj.pk])
        if obj.status != BreakStatus.OPEN:
            if obj.resolution == Resolution.CREDITED:
                return format_html(
                    'resolved <a class="button" href="{}">Approve the credit…</a>', approve
                )
            return "resolved"
        url = reverse("admin:reconciliation_break_resolve", args=[obj.pk])
        if obj.approvals.filter(status=ApprovalStatus.PENDING).exists():
            return format_html(
                'a credit is waiting for a second person: <a class="button" href="{}">'
                'Approve…</a> (or <a href="{}">accept the break</a>)',
                approve,
                url,
            )
        return format_html('<a class="button" href="{}">Resolve…</a>', url)

    def get_urls(self) -> list[URLPattern]:
        return [
            path(
                "<int:break_id>/resolve/",
                self.admin_site.admin_view(self.resolve_view),
                name="reconciliation_break_resolve",
            ),
            path(
                "<int:break_id>/approve/",
                self.admin_site.admin_view(self.approve_view),
                name="reconciliation_break_approve",
            ),
            *super().get_urls(),
        ]

    def resolve_view(self, request: HttpRequest, break_id: int) -> HttpResponse:
        if not self.has_resolve_permission(request):
            return HttpResponse("You may not resolve breaks.", status=403)
        brk = get_object_or_404(Break.objects.select_related("line", "payment"), pk=break_id)
        change_url = reverse("admin:reconciliation_break_change", args=[brk.pk])
        form = ResolveForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            payment_id: uuid.UUID | None = form.cleaned_data.get("payment_id")
            try:
                resolved = break_resolve(
                    break_id=brk.pk,
                    action=form.cleaned_data["action"],
                    actor=request.user.get_username(),
                    actor_key=user_actor_key(request.user.pk),
                    reason=form.cleaned_data["reason"],
                    payment_id=payment_id,
                )
            except BreakResolutionError as exc:
                form.add_error(None, exc.message)
            else:
                if resolved.status == BreakStatus.OPEN:
                    self.log_change(request, brk, "Asked for a credit (needs a second person)")
                    self.message_user(
                        request,
                        f"The credit of break {brk.pk} is waiting for a second person's "
                        "approval: the payment FAILED for a reason M-Pesa gave.",
                        messages.WARNING,
                    )
                else:
                    self.log_change(request, brk, f"Resolved ({form.cleaned_data['action']})")
                    self.message_user(request, f"Break {brk.pk} resolved.", messages.SUCCESS)
                return HttpResponseRedirect(change_url)
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": f"Resolve break {brk.pk}: {brk.get_kind_display()}",
            "brk": brk,
            "form": form,
            "change_url": change_url,
        }
        return TemplateResponse(request, "admin/reconciliation/break/resolve.html", context)

    def approve_view(self, request: HttpRequest, break_id: int) -> HttpResponse:
        """A second staff user approves a credit: one waiting on the break (the payment moves
        now), or one already made on the statement line alone (confirmed on the record)."""
        if not self.has_resolve_permission(request):
            return HttpResponse("You may not approve credits.", status=403)
        brk = get_object_or_404(
            Break.objects.select_related("line", "payment", "resolved_payment"), pk=break_id
        )
        change_url = reverse("admin:reconciliation_break_change", args=[brk.pk])
        approval = CreditApproval.objects.filter(
            break_record=brk, status=ApprovalStatus.PENDING
        ).first()
        credit = None
        if approval is None and brk.resolved_payment_id is not None:
            credit = statement_credit_event(brk.resolved_payment_id, brk.pk)
        form = ReasonForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            try:
                break_approve(
                    break_id=brk.pk,
                    actor=request.user.get_username(),
                    actor_key=user_actor_key(request.user.pk),
                    reason=form.cleaned_data["reason"],
                )
            except BreakResolutionError as exc:
                form.add_error(None, exc.message)
            else:
                self.log_change(request, brk, "Approved the credit as a second person")
                self.message_user(request, f"Credit of break {brk.pk} approved.", messages.SUCCESS)
                return HttpResponseRedirect(change_url)
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": f"Approve the credit of break {brk.pk} as a second person",
            "brk": brk,
            "form": form,
            "change_url": change_url,
            "approval": approval,
            "credited_by": credit.actor if credit is not None else "",
            "step": "Approve",
            "submit_label": "Approve",
        }
        return TemplateResponse(request, "admin/reconciliation/break/resolve.html", context)

    def _with_reason(
        self,
        request: HttpRequest,
        queryset: QuerySet[Break],
        *,
        action: str,
        name: str,
        title: str,
    ) -> HttpResponse | None:
        form = ReasonForm(request.POST if "apply" in request.POST else None)
        if "apply" in request.POST and form.is_valid():
            done, refused, waiting = 0, [], []
            for brk in queryset.filter(status=BreakStatus.OPEN):
                try:
                    resolved = break_resolve(
                        break_id=brk.pk,
                        action=action,
                        actor=request.user.get_username(),
                        actor_key=user_actor_key(request.user.pk),
                        reason=form.cleaned_data["reason"],
                    )
                except BreakResolutionError as exc:
                    refused.append(f"{brk.pk}: {exc.message}")
                    continue
                if resolved.status == BreakStatus.OPEN:
                    self.log_change(request, brk, "Asked for a credit (needs a second person)")
                    waiting.append(str(brk.pk))
                    continue
                self.log_change(request, brk, f"Resolved ({action})")
                done += 1
            self.message_user(request, f"Resolved {done} break(s).", messages.SUCCESS)
            if waiting:
                self.message_user(
                    request,
                    f"Waiting for a second person's approval: {', '.join(waiting)}.",
                    messages.WARNING,
                )
            for text in refused:
                self.message_user(request, text, messages.WARNING)
            return None
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": title,
            "breaks": queryset,
            "form": form,
            "action_name": name,
            "action_checkbox_name": ACTION_CHECKBOX_NAME,
        }
        return TemplateResponse(request, "admin/reconciliation/break/reason.html", context)

    @admin.action(description="Accept the selected breaks, with a reason…", permissions=["resolve"])
    def accept_selected(self, request: HttpRequest, queryset: QuerySet[Break]) -> Any:
        return self._with_reason(
            request,
            queryset,
            action=BreakAction.ACCEPT,
            name="accept_selected",
            title="Accept breaks (explained, nothing to change)",
        )

    @admin.action(
        description="Credit the PENDING/FAILED payments the statement proves paid, with a reason…",
        permissions=["resolve"],
    )
    def credit_selected(self, request: HttpRequest, queryset: QuerySet[Break]) -> Any:
        return self._with_reason(
            request,
            queryset.filter(kind=ResultClass.NOT_SUCCESS),
            action=BreakAction.MATCH,
            name="credit_selected",
            title="Move the payments to SUCCESS (statement line as evidence)",
        )


@admin.register(BreakEvent)
class BreakEventAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ["created_at", "break_record", "action", "actor", "reason"]
    list_filter = ["action", "created_at"]
    search_fields = ["=break_record__id", "actor", "reason"]
    readonly_fields = [f.name for f in BreakEvent._meta.fields]


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
