"""Breaks: resolved here with a reason (one at a time, finding the payment by receipt, phone
or amount, or several at once) through the same service the API uses; a credit M-Pesa failed
is approved by a second staff user."""

from __future__ import annotations

import uuid
from typing import Any

from django.contrib import admin, messages
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

from core.admin_display import (
    ADMIN_CSS,
    QuickCheckboxMixin,
    amount_html,
    change_url,
    money,
    plain,
    when,
)
from core.exports import ExportActions
from core.pagination import EstimatedCountPaginator
from payments.models import Payment

from ..credit import (
    BreakAction,
    BreakResolutionError,
    statement_credit_event,
    user_actor_key,
)
from ..exports import BREAKS
from ..models import (
    ApprovalStatus,
    Break,
    BreakEvent,
    BreakStatus,
    CreditApproval,
    Resolution,
    ResultClass,
)
from ..services import break_approve, break_resolve
from .break_forms import ReasonForm, ResolveForm, RunFilter, payment_search
from .common import (
    ReadOnlyAdminMixin,
    payment_link,
    table,
)


class BreakEventInline(ReadOnlyAdminMixin, admin.TabularInline):
    model = BreakEvent
    extra = 0
    can_delete = False
    fields = ("created_at", "action", "actor", "reason", "evidence_text")
    readonly_fields = fields
    ordering = ["created_at", "id"]

    @admin.display(description="Evidence")
    def evidence_text(self, obj: BreakEvent) -> str:
        return plain(obj.evidence) if obj.evidence else "—"


@admin.register(Break)
class BreakAdmin(ExportActions, QuickCheckboxMixin, ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = [
        "id",
        "run_col",
        "kind",
        "status",
        "receipt",
        "line_time",
        "statement_amount_col",
        "our_amount_col",
        "bridge_amount_col",
        "payment_col",
        "auto_resolvable",
        "resolution",
        "resolved_by",
    ]
    list_filter = ["kind", "status", "resolution", "auto_resolvable", RunFilter]
    # What get_search_results looks up (the search box shows up only with search_fields).
    search_fields = ["=id", "=line__receipt_number", "=payment__id"]
    search_help_text = "A break number, a payment id, or a receipt (the statement line's)."
    # A run's name is its statement's: one join, not one query per row.
    list_select_related = ["line", "payment", "run__statement"]
    # 50 rows, not Django's 100: a person works breaks a page at a time, filtered by run or
    # status, and the page renders in about half the time (rendering dominates, not SQL).
    list_per_page = 50
    fieldsets = [
        (None, {"fields": ["run", "kind", "status", "resolve_link", "auto_resolvable"]}),
        (
            "What differs",
            {
                "fields": [
                    "line_details",
                    "payment_details",
                    "candidate_list",
                    "statement_amount_col",
                    "our_amount_col",
                    "bridge_amount_col",
                ]
            },
        ),
        (
            "Resolution",
            {
                "fields": [
                    "resolution",
                    "resolved_payment_link",
                    "resolved_by",
                    "resolved_at",
                    "resolution_reason",
                    "created_at",
                ]
            },
        ),
    ]
    readonly_fields = [
        "run",
        "kind",
        "status",
        "resolve_link",
        "auto_resolvable",
        "line_details",
        "payment_details",
        "candidate_list",
        "statement_amount_col",
        "our_amount_col",
        "bridge_amount_col",
        "resolution",
        "resolved_payment_link",
        "resolved_by",
        "resolved_at",
        "resolution_reason",
        "created_at",
    ]
    inlines = [BreakEventInline]
    actions = ["accept_selected", "credit_selected", "export_csv", "export_xlsx"]
    export = BREAKS
    show_full_result_count = False
    # Newest run first, a run's breaks in order: read through the break_run_desc_id index
    # (break_status_run_desc_id when filtered by status). The
    # model's ordering ("run") sorts by the run's own ordering, a join and a sort of every
    # break before the first page.
    ordering = ["-run__id", "id"]
    paginator = EstimatedCountPaginator

    class Media:
        css = ADMIN_CSS

    def get_search_results(self, request: HttpRequest, queryset: Any, search_term: str) -> Any:
        """One indexed lookup chosen by the term's shape: digits are a break's number, a
        UUID a payment's id, anything else a receipt. Django's search OR-ed the three across
        two joins, which PostgreSQL answered by reading every break (a second at 500,000)."""
        term = search_term.strip()
        if not term:
            return queryset, False
        if term.isascii() and term.isdigit():
            return (queryset.filter(id=int(term)) if len(term) <= 18 else queryset.none()), False
        try:
            return queryset.filter(payment_id=uuid.UUID(term)), False
        except ValueError:
            pass
        if len(term) > 20 or not term.isascii() or not term.isalnum():
            return queryset.none(), False  # not a receipt (M-Pesa's are 10 letters and digits)
        return queryset.filter(line__receipt_number=term.upper()), False

    def get_queryset(self, request: HttpRequest) -> QuerySet[Break]:
        # The run and statement are joined for their names only: not their summaries,
        # timings and metadata (JSON read and parsed again for each of the page's rows).
        return (
            super()
            .get_queryset(request)
            .defer(
                "run__summary",
                "run__timings",
                "run__error",
                "run__statement__metadata",
                "run__statement__skipped",
                "run__statement__account_holder",
                "run__statement__account_name",
            )
        )

    def has_resolve_permission(self, request: HttpRequest) -> bool:
        return bool(request.user.has_perm("reconciliation.change_break"))

    @admin.display(description="Run", ordering="run")
    def run_col(self, obj: Break) -> SafeString:
        url = change_url("admin:reconciliation_reconciliationrun_change", obj.run_id)
        return format_html('<a href="{}" title="{}">#{}</a>', url, obj.run, obj.run_id)

    @admin.display(description="Receipt")
    def receipt(self, obj: Break) -> str:
        return obj.line.receipt_number if obj.line else "—"

    @admin.display(description="Line time")
    def line_time(self, obj: Break) -> str:
        return when(obj.line.completed_at) if obj.line else "—"

    @admin.display(description="Statement amount", ordering="statement_amount")
    def statement_amount_col(self, obj: Break) -> SafeString:
        return amount_html(obj.statement_amount)

    @admin.display(description="Our amount", ordering="our_amount")
    def our_amount_col(self, obj: Break) -> SafeString:
        return amount_html(obj.our_amount)

    @admin.display(description="Bridge amount", ordering="bridge_amount")
    def bridge_amount_col(self, obj: Break) -> SafeString:
        return amount_html(obj.bridge_amount)

    @admin.display(description="Payment")
    def payment_col(self, obj: Break) -> SafeString:
        return payment_link(obj.payment)

    @admin.display(description="Statement line")
    def line_details(self, obj: Break) -> SafeString:
        line = obj.line
        if line is None:
            return format_html("{}", "—")
        return table(
            [
                ("Row in the file", line.line_no),
                ("Receipt", line.receipt_number),
                ("Completed", when(line.completed_at)),
                ("Paid in", amount_html(line.paid_in)),
                ("Withdrawn", amount_html(line.withdrawn)),
                ("Reason type", line.reason_type or "—"),
                ("Details", line.details or "—"),
                ("Other party", line.other_party or "—"),
                ("Account (A/C No.)", line.account_reference or "—"),
            ]
        )

    @admin.display(description="Our payment")
    def payment_details(self, obj: Break) -> SafeString:
        return payment_link(obj.payment)

    @admin.display(description="Resolved with payment")
    def resolved_payment_link(self, obj: Break) -> SafeString:
        return payment_link(obj.resolved_payment)

    @admin.display(description="Candidates")
    def candidate_list(self, obj: Break) -> SafeString:
        if not obj.candidates:
            return format_html("{}", "—")
        payments = Payment.objects.in_bulk([str(c) for c in obj.candidates])
        return format_html_join(
            "",
            "<div>{}</div>",
            ((payment_link(payments.get(c)) if c in payments else c,) for c in obj.candidates),
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
        brk = get_object_or_404(Break.objects.select_related("line", "payment", "run"), pk=break_id)
        change_url = reverse("admin:reconciliation_break_change", args=[brk.pk])
        form = ResolveForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            payment_id: uuid.UUID | None = form.cleaned_data.get("payment_id")
            try:
                # The API's rules: the run's client limits the payments, as a key would.
                resolved = break_resolve(
                    break_id=brk.pk,
                    action=form.cleaned_data["action"],
                    actor=request.user.get_username(),
                    actor_key=user_actor_key(request.user.pk),
                    reason=form.cleaned_data["reason"],
                    payment_id=payment_id,
                    client=brk.run.client,
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
        term = (request.POST.get("q") or request.GET.get("q") or "").strip()
        results, found_by = payment_search(term, brk=brk)
        candidates = list(Payment.objects.filter(pk__in=[str(c) for c in brk.candidates or []]))
        chosen = str(form["payment_id"].value() or "")
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": f"Resolve break {brk.pk}: {brk.get_kind_display()}",
            "brk": brk,
            "line_table": self.line_details(brk),
            "bridge_amount": money(brk.bridge_amount),
            "form": form,
            "change_url": change_url,
            "q": term,
            "results": results,
            "found_by": found_by,
            "candidates": candidates,
            "chosen": chosen,
            "needs_payment": brk.kind in (ResultClass.UNKNOWN_PAYMENT, ResultClass.AMBIGUOUS),
            "media": self.media,
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
            "line_table": self.line_details(brk),
            "bridge_amount": money(brk.bridge_amount),
            "payment_link": payment_link(brk.payment),
            "media": self.media,
        }
        return TemplateResponse(request, "admin/reconciliation/break/approve.html", context)

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
            for brk in queryset.filter(status=BreakStatus.OPEN).select_related("run"):
                try:
                    resolved = break_resolve(
                        break_id=brk.pk,
                        action=action,
                        actor=request.user.get_username(),
                        actor_key=user_actor_key(request.user.pk),
                        reason=form.cleaned_data["reason"],
                        client=brk.run.client,
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
            "breaks": queryset.select_related("line", "payment"),
            "form": form,
            "action_name": name,
            "action_checkbox_name": ACTION_CHECKBOX_NAME,
            "media": self.media,
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
