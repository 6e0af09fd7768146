"""Admin: payments with filters and their audit trail, read-only. No status can be edited."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from .models import Payment, PaymentEvent
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
        "evidence",
        "callback",
    )
    readonly_fields = fields
    ordering = ["created_at", "id"]


@admin.register(Payment)
class PaymentAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = [
        "id",
        "status",
        "amount",
        "phone_number",
        "account_reference",
        "mpesa_receipt_number",
        "needs_review",
        "created_at",
    ]
    list_filter = ["status", "needs_review", "transaction_type", "created_at"]
    date_hierarchy = "created_at"
    search_fields = [
        "=id",
        "phone_number",
        "=mpesa_receipt_number",
        "=checkout_request_id",
        "account_reference",
    ]
    readonly_fields = [
        field.name for field in Payment._meta.fields if field.name != "callback_token_hash"
    ]
    exclude = ["callback_token_hash"]
    inlines = [PaymentEventInline]
    list_select_related = ["client"]
    actions = ["clear_review"]

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

    def get_search_results(self, request: HttpRequest, queryset: Any, search_term: str) -> Any:
        from core.phones import InvalidPhoneNumber, normalize_phone

        try:
            search_term = normalize_phone(search_term)
        except InvalidPhoneNumber:
            pass
        return super().get_search_results(request, queryset, search_term)


@admin.register(PaymentEvent)
class PaymentEventAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ["created_at", "payment", "kind", "from_status", "to_status", "source", "reason"]
    list_filter = ["kind", "source", "to_status"]
    date_hierarchy = "created_at"
    search_fields = ["=payment__id", "reason"]
    readonly_fields = [field.name for field in PaymentEvent._meta.fields]
