"""Admin: payments with filters and their audit trail, read-only. No status can be edited.
Statuses are coloured, amounts right-aligned, a filtered list shows its totals (one aggregate
query), and a payment links to the statement lines and breaks that name it."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from django.contrib import admin
from django.db.models import Max, Min, Q, QuerySet, Sum
from django.http import HttpRequest, HttpResponse
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html
from django.utils.safestring import SafeString

from core.admin_display import (
    ADMIN_CSS,
    QuickCheckboxMixin,
    amount_html,
    money,
    plain,
    status_badge,
)
from core.exports import ExportActions
from core.pagination import EstimatedCountPaginator
from daraja.client import PAYBILL, TILL

from .exports import PAYMENTS
from .models import Payment, PaymentEvent, PaymentStatus
from .selectors import payment_search
from .services import payment_clear_review


class ReadOnlyAdminMixin:
    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class PaymentEventInline(ReadOnlyAdminMixin, admin.TabularInline):
    model = PaymentEvent
    extra = 0
    can_delete = False
    fields = (
        "created_at",
        "kind",
        "from_status",
        "to_status",
        "source",
        "actor",
        "reason",
        "evidence_text",
        "callback",
    )
    readonly_fields = fields
    ordering = ["created_at", "id"]

    @admin.display(description="Evidence")
    def evidence_text(self, obj: PaymentEvent) -> str:
        return plain(obj.evidence) if obj.evidence else "—"

    @admin.display(description="Callback")
    def callback(self, obj: PaymentEvent) -> SafeString | str:
        """The stored callback behind the event, linked to its page in the inbox."""
        if obj.callback_id is None:
            return "—"
        url = reverse("admin:callbacks_inboundcallback_change", args=[obj.callback_id])
        return format_html('<a href="{}">callback {}</a>', url, obj.callback_id)


def _narrowed(request: HttpRequest) -> bool:
    """A filter, a search or a date is applied (anything but paging and ordering)."""
    return any(key not in ("p", "o", "e", "_popup", "_to_field") for key in request.GET)


class PeriodQuerySet(QuerySet[Any]):
    """The date hierarchy's years, months or days from the first to the last row of the
    list (two index reads), instead of ``SELECT DISTINCT`` over every payment: at ten
    million payments that read the table on every page. A period with no payment between
    two that have some is listed too (it shows an empty list)."""

    def datetimes(  # type: ignore[override]
        self, field_name: str, kind: str, order: str = "ASC", tzinfo: Any = None
    ) -> list[datetime]:
        span = self.aggregate(first=Min(field_name), last=Max(field_name))
        if span["first"] is None or span["last"] is None:
            return []
        zone = tzinfo or timezone.get_current_timezone()
        first = timezone.localtime(span["first"], zone)
        last = timezone.localtime(span["last"], zone)
        periods = []
        if kind == "year":
            periods = [datetime(year, 1, 1) for year in range(first.year, last.year + 1)]
        elif kind == "month":
            months = range(first.year * 12 + first.month - 1, last.year * 12 + last.month)
            periods = [datetime(month // 12, month % 12 + 1, 1) for month in months]
        elif kind == "day":
            days = (last.date() - first.date()).days + 1
            periods = [
                datetime.combine(first.date() + timedelta(days=n), datetime.min.time())
                for n in range(days)
            ]
        else:
            return list(super().datetimes(field_name, kind, order, tzinfo))  # type: ignore[arg-type]
        aware = [timezone.make_aware(period, zone) for period in periods]
        return aware if order == "ASC" else aware[::-1]


class TransactionTypeFilter(admin.SimpleListFilter):
    """The two transaction types Daraja knows, listed without reading the table (the default
    filter reads every payment for its distinct values)."""

    title = "transaction type"
    parameter_name = "transaction_type"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [(PAYBILL, "Paybill"), (TILL, "Till (Buy Goods)")]

    def queryset(self, request: HttpRequest, queryset: Any) -> Any:
        value = self.value()
        return queryset.filter(transaction_type=value) if value else queryset


# Sections that apps above payments add to a payment's page (reconciliation: the statement
# lines and breaks that name it): payments cannot import them, so they register here. Field
# name -> title; the rendering is a display method set on PaymentAdmin.
_sections: dict[str, str] = {}


def register_payment_section(
    name: str, title: str, render: Callable[[Payment], SafeString]
) -> None:
    """Show ``render(payment)`` on every payment's page, in a section titled ``title``."""

    @admin.display(description=title)
    def section(model_admin: PaymentAdmin, obj: Payment) -> SafeString:
        return render(obj)

    setattr(PaymentAdmin, name, section)
    _sections[name] = title


@admin.register(Payment)
class PaymentAdmin(ExportActions, QuickCheckboxMixin, ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = [
        "short_id",
        "status_label",
        "amount_kes",
        "phone_number",
        "account_reference",
        "receipt",
        "client",
        "review",
        "created_at",
    ]
    list_display_links = ["short_id"]
    list_filter = ["status", "channel", "needs_review", TransactionTypeFilter, "created_at"]
    date_hierarchy = "created_at"
    # What get_search_results looks up (the search box shows up only with search_fields).
    search_fields = [
        "=id",
        "phone_number",
        "mpesa_receipt_number",
        "checkout_request_id",
        "account_reference",
    ]
    search_help_text = (
        "A phone number (any form, or its beginning), a receipt (or its beginning), a "
        "CheckoutRequestID (ws_CO_…), a payment id, or the beginning of an account reference."
    )
    # Lists of millions: no count of the whole table, and a count of a filtered list that
    # stops at 10,000 rows (an estimate past that); see core.pagination.
    show_full_result_count = False
    paginator = EstimatedCountPaginator
    fieldsets = [
        (
            None,
            {
                "fields": [
                    "status_label",
                    "amount",
                    "phone_number",
                    "account_reference",
                    "description",
                    "mpesa_receipt_number",
                    "client",
                    "needs_review",
                    "created_at",
                    "completed_at",
                ]
            },
        ),
        (
            "M-Pesa",
            {
                "fields": [
                    "id",
                    "transaction_type",
                    "currency",
                    "merchant_request_id",
                    "checkout_request_id",
                    "result_code",
                    "result_desc",
                    "transaction_date",
                    "paid_amount",
                    "payer_phone",
                ]
            },
        ),
        (
            "Processing",
            {
                "classes": ["collapse"],
                "fields": [
                    "failure_final",
                    "initiation_unknown",
                    "query_attempts",
                    "next_query_at",
                    "query_claimed_until",
                    "last_query_result",
                    "updated_at",
                ],
            },
        ),
    ]
    readonly_fields = [
        "status_label",
        *(
            field.name
            for field in Payment._meta.fields
            if field.name not in ("callback_token_hash", "status")
        ),
    ]
    exclude = ["callback_token_hash", "status"]
    inlines = [PaymentEventInline]
    list_select_related = ["client"]
    # 50 rows, not Django's 100: what a person reads before searching or filtering, and the
    # page renders in about half the time (rendering, not SQL, is most of a list page).
    list_per_page = 50
    actions = ["clear_review", "export_csv", "export_xlsx"]
    export = PAYMENTS
    change_list_template = "admin/payments/payment/change_list.html"
    totals_max_rows = 100_000

    class Media:
        css = ADMIN_CSS

    @admin.display(description="Payment", ordering="id")
    def short_id(self, obj: Payment) -> SafeString:
        return format_html('<span title="{}">{}</span>', obj.pk, str(obj.pk)[:8])

    @admin.display(description="Receipt", ordering="mpesa_receipt_number")
    def receipt(self, obj: Payment) -> str:
        return obj.mpesa_receipt_number or "—"

    @admin.display(description="Status", ordering="status")
    def status_label(self, obj: Payment) -> SafeString:
        return status_badge(obj.status, obj.get_status_display())

    @admin.display(description="Amount (KES)", ordering="amount")
    def amount_kes(self, obj: Payment) -> SafeString:
        return amount_html(obj.amount)

    @admin.display(description="Review", ordering="needs_review", empty_value="")
    def review(self, obj: Payment) -> SafeString:
        if not obj.needs_review:
            return SafeString("")
        return format_html('<span class="status review-flag">{}</span>', "needs review")

    def get_fieldsets(self, request: HttpRequest, obj: Any = None) -> Any:
        """The sections other apps registered (register_payment_section) after the first."""
        first, *rest = super().get_fieldsets(request, obj)
        added = [(title, {"fields": [name]}) for name, title in _sections.items()]
        return [first, *added, *rest]

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        return [*super().get_readonly_fields(request, obj), *_sections]

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        response = super().changelist_view(request, extra_context)
        context = getattr(response, "context_data", None)
        if context and "cl" in context:
            changelist = context["cl"]
            context["totals"] = self.totals(
                request,
                changelist.queryset,
                estimate=changelist.result_count
                if getattr(changelist.paginator, "count_is_estimate", False)
                else None,
            )
        return response

    def totals(
        self, request: HttpRequest, queryset: QuerySet[Payment], *, estimate: int | None = None
    ) -> dict[str, Any] | None:
        """Sums of the filtered payments' amounts, by status, in one aggregate query. Only
        for a narrowed list of at most ``totals_max_rows`` payments: over a table of millions
        (unfiltered, or a filter most rows match) it would read every row. ``estimate`` is
        the list's count when it is PostgreSQL's estimate (see core.pagination)."""
        if not _narrowed(request):
            return None
        limit = self.totals_max_rows
        # Far past the limit by the planner's estimate (a merchant's 2,000,000 FAILED): not
        # worth counting 100,001 rows to say so. Near it, or below, count (an estimate can
        # be off by a few times; it only ever saves work, it never makes totals appear).
        if estimate is not None and estimate > 5 * limit:
            return {"over": limit}
        # A filter can select most of the table (status SUCCESS, a wide date range): count at
        # most one row past the limit (a LIMIT in a subquery) before summing anything.
        if queryset.order_by()[: limit + 1].count() > limit:
            return {"over": limit}
        sums = queryset.aggregate(
            total=Sum("amount"),
            success=Sum("amount", filter=Q(status=PaymentStatus.SUCCESS)),
            pending=Sum(
                "amount", filter=Q(status__in=[PaymentStatus.PENDING, PaymentStatus.INITIATED])
            ),
            failed=Sum("amount", filter=Q(status=PaymentStatus.FAILED)),
        )
        return {key: money(value or 0) for key, value in sums.items()}

    @admin.action(description="Clear the review flag (recorded with your user name)")
    def clear_review(self, request: HttpRequest, queryset: Any) -> None:
        actor = request.user.get_username()
        count = 0
        for payment in queryset.filter(needs_review=True):
            if payment_clear_review(
                payment=payment, actor=actor, reason="review flag cleared in the admin"
            ):
                self.log_change(request, payment, "Cleared the review flag")
                count += 1
        self.message_user(request, f"Cleared the review flag on {count} payment(s).")

    def get_queryset(self, request: HttpRequest) -> QuerySet[Payment]:
        queryset = super().get_queryset(request)
        return PeriodQuerySet(model=queryset.model, query=queryset.query, using=queryset.db)

    def get_search_results(self, request: HttpRequest, queryset: Any, search_term: str) -> Any:
        """Indexed lookups recognised from the term's shape (see ``payment_search``), not
        ``icontains`` over several columns: that read every payment."""
        return payment_search(queryset, search_term), False


@admin.register(PaymentEvent)
class PaymentEventAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ["created_at", "payment", "kind", "from_status", "to_status", "source", "reason"]
    list_filter = ["kind", "source", "to_status"]
    date_hierarchy = "created_at"
    search_fields = ["=payment__id"]
    search_help_text = "A payment id: that payment's events."
    # Two events a payment: tens of millions of rows. The same capped count and estimate
    # as the payment list (core.pagination), and no count of the whole table.
    show_full_result_count = False
    paginator = EstimatedCountPaginator
    list_per_page = 50
    ordering = ["-created_at", "-id"]  # newest first, as the payment list
    list_select_related = ["payment"]
    readonly_fields = [field.name for field in PaymentEvent._meta.fields]

    def get_queryset(self, request: HttpRequest) -> QuerySet[PaymentEvent]:
        queryset = super().get_queryset(request)
        return PeriodQuerySet(model=queryset.model, query=queryset.query, using=queryset.db)

    def get_search_results(self, request: HttpRequest, queryset: Any, search_term: str) -> Any:
        """The events of the payment whose id is searched, through the index on the event's
        payment; anything that is not a payment id finds nothing (there is no other indexed
        field to search, and ``reason`` is free text over every event)."""
        term = search_term.strip()
        if not term:
            return queryset, False
        try:
            payment_id = uuid.UUID(term)
        except ValueError:
            return queryset.none(), False
        return queryset.filter(payment_id=payment_id), False


from . import admin_accounts  # noqa: E402, F401  (registers the accounts' admin)
