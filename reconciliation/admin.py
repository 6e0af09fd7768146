"""Admin: upload a statement and see its run (summary, classes and bridge as tables, the
warnings, links to each class's breaks, the CSV report); statements, runs and breaks with
filters. Breaks are resolved here with a reason (one at a time, finding the payment by receipt,
phone or amount, or several at once), through the same service the API uses; every
resolution is a BreakEvent and a LogEntry. A credit that needs a second person (a payment
M-Pesa failed) is approved here by a staff user other than the one who asked for it.
Resolving and approving need ``reconciliation.change_break``; uploading needs
``reconciliation.add_statement``.
"""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal, InvalidOperation
from typing import Any

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.contrib.admin.options import IncorrectLookupParameters
from django.db.models import Count, Q, QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect, StreamingHttpResponse
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

from core.admin_display import ADMIN_CSS, amount_html, money, plain, status_badge, when
from core.models import ApiClient
from core.pagination import EstimatedCountPaginator
from core.phones import InvalidPhoneNumber, normalize_phone
from payments.models import Payment

from .formats.limits import StatementFormatError
from .imports import statement_accept
from .models import (
    BREAK_CLASSES,
    ApprovalStatus,
    Break,
    BreakEvent,
    BreakStatus,
    CreditApproval,
    ReconciliationRun,
    Resolution,
    ResultClass,
    RunState,
    Statement,
    StatementReject,
)
from .report import summary_in_order
from .selectors import class_statement_amounts, run_report_csv
from .services import (
    BreakAction,
    BreakResolutionError,
    break_approve,
    break_resolve,
    statement_credit_event,
    user_actor_key,
)

DEFAULT_MAX_UPLOAD_BYTES = 50 * 1024 * 1024
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


def _table(rows: list[tuple[Any, Any]]) -> SafeString:
    """Label/value rows as an HTML table (for JSON mappings a person reads)."""
    if not rows:
        return format_html("{}", "—")
    body = format_html_join("", "<tr><th>{}</th><td>{}</td></tr>", rows)
    return format_html('<table class="figures">{}</table>', body)


def _class_label(name: str) -> str:
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
    return int(getattr(settings, "RECONCILIATION_MAX_UPLOAD_BYTES", DEFAULT_MAX_UPLOAD_BYTES))


def payment_link(payment: Payment | None) -> SafeString:
    if payment is None:
        return format_html("{}", "—")
    url = reverse("admin:payments_payment_change", args=[payment.pk])
    return format_html(
        '<a href="{}">{}</a> {} <span class="amount">{}</span>',
        url,
        str(payment.pk)[:8],
        status_badge(payment.status),
        money(payment.amount),
    )


# --- Statements and their upload ----------------------------------------------------------------


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
        return _table(rows)

    @admin.display(description="Preamble as read")
    def metadata_table(self, obj: Statement) -> SafeString:
        metadata = obj.metadata or {}
        rows: list[tuple[Any, Any]] = [
            (key, _table([(k, plain(v)) for k, v in value.items()]) if value else "—")
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
        return _table(rows)

    @admin.display(description="Rows skipped (not transactions)")
    def skipped_table(self, obj: Statement) -> SafeString:
        return _table(list((obj.skipped or {}).items()))

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


# --- Runs -----------------------------------------------------------------------------------------


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
                    "label": _class_label(name),
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
                    "label": f"explained by: {_class_label(name)}",
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


# --- Breaks ---------------------------------------------------------------------------------------


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
        widget=forms.HiddenInput,
        help_text="Chosen from the candidates or the search results.",
    )
    reason = forms.CharField(widget=forms.Textarea(attrs={"rows": 3, "cols": 80}), max_length=2000)


def _searchable_amount(term: str) -> Decimal | None:
    """``term`` as an amount a payment can have (positive, within Payment.amount's digits and
    decimals), or None: an exponent such as ``1e999999`` is a number the database refuses to
    compare with (PostgreSQL: "value overflows numeric format"), not a search for nothing."""
    field = Payment._meta.get_field("amount")
    try:
        amount = Decimal(term.replace(",", ""))
    except InvalidOperation:
        return None
    if not amount.is_finite() or amount <= 0:
        return None
    exponent = amount.normalize().as_tuple().exponent  # 900.000 is 900
    if isinstance(exponent, int) and exponent < -field.decimal_places:
        return None  # more decimals than an amount has: no payment has it
    if amount >= Decimal(10) ** (field.max_digits - field.decimal_places):
        return None
    return amount


def payment_search(
    term: str, *, brk: Break, limit: int = SEARCH_LIMIT
) -> tuple[list[Payment], str]:
    """Payments a person may mean by ``term``: a receipt number, a phone number (any Kenyan
    form) or an amount. Each is an indexed lookup: receipts and phones directly, amounts only
    within AMOUNT_SEARCH_DAYS of the statement line's time. Limited to the run's API client
    when it has one (as the API's resolve is). Returns the payments and how they were found."""
    term = term.strip()
    if not term:
        return [], ""
    query = Payment.objects.select_related("client")
    if brk.run.client_id is not None:
        query = query.filter(client_id=brk.run.client_id)
    found: dict[uuid.UUID, Payment] = {}
    how: list[str] = []
    for payment in query.filter(mpesa_receipt_number=term.upper())[:limit]:
        found[payment.pk] = payment
        how.append("receipt")
    try:
        phone = normalize_phone(term)
    except InvalidPhoneNumber:
        phone = ""
    if phone:
        for payment in query.filter(phone_number=phone).order_by("-created_at")[:limit]:
            found.setdefault(payment.pk, payment)
        how.append("phone")
    amount = _searchable_amount(term)
    if amount is not None and not phone:
        around = brk.line.completed_at if brk.line else brk.created_at
        window = dt.timedelta(days=AMOUNT_SEARCH_DAYS)
        nearby = query.filter(
            amount=amount, created_at__gte=around - window, created_at__lte=around + window
        ).order_by("-created_at")[:limit]
        for payment in nearby:
            found.setdefault(payment.pk, payment)
        how.append(f"amount within {AMOUNT_SEARCH_DAYS} days of the line")
    return list(found.values())[:limit], ", ".join(dict.fromkeys(how))


class RunFilter(admin.SimpleListFilter):
    """The latest runs, named with their statements in one query (the default filter read
    each run's statement apart, and listed every run ever made). The parameter is the one
    the run page links with; an older run is still filtered by it."""

    title = "run"
    parameter_name = "run__id__exact"
    shown = 30

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        runs = ReconciliationRun.objects.select_related("statement").order_by("-id")
        return [(str(run.pk), str(run)) for run in runs[: self.shown]]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Break]) -> QuerySet[Break]:
        value = self.value()
        if not value:
            return queryset
        if not (value.isascii() and value.isdigit() and len(value) <= 18):
            raise IncorrectLookupParameters(f"run {value!r} is not a run id")
        return queryset.filter(run_id=int(value))


@admin.register(Break)
class BreakAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
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
    search_fields = ["=id", "=line__receipt_number", "=payment__id"]
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
    actions = ["accept_selected", "credit_selected"]
    show_full_result_count = False
    # Newest run first, a run's breaks in order: read through the break_run_desc_id index. The
    # model's ordering ("run") sorts by the run's own ordering, a join and a sort of every
    # break before the first page.
    ordering = ["-run__id", "id"]
    paginator = EstimatedCountPaginator

    class Media:
        css = ADMIN_CSS

    def has_resolve_permission(self, request: HttpRequest) -> bool:
        return bool(request.user.has_perm("reconciliation.change_break"))

    @admin.display(description="Run", ordering="run")
    def run_col(self, obj: Break) -> SafeString:
        url = reverse("admin:reconciliation_reconciliationrun_change", args=[obj.run_id])
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
        return _table(
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


@admin.register(BreakEvent)
class BreakEventAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ["created_at", "break_record", "action", "actor", "reason"]
    list_filter = ["action", "created_at"]
    search_fields = ["=break_record__id", "actor", "reason"]
    readonly_fields = ["created_at", "break_record", "action", "actor", "reason", "evidence_table"]
    fields = list(readonly_fields)

    @admin.display(description="Evidence")
    def evidence_table(self, obj: BreakEvent) -> SafeString:
        return _table([(key, plain(value)) for key, value in (obj.evidence or {}).items()])


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
