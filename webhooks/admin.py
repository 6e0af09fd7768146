"""Admin for webhooks: endpoints (a failing or disabled one stands out; its secret is never
shown), the events, and every delivery with its attempts. Deliveries and attempts are the
record: read-only; redeliver and send-test are actions."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.html import format_html
from django.utils.safestring import SafeString

from core.admin_display import when
from events.models import Event

from .models import Attempt, Delivery, Endpoint
from .services import endpoint_send_test, endpoint_update, event_redeliver


@admin.register(Endpoint)
class EndpointAdmin(admin.ModelAdmin):
    list_display = ["url", "client", "health", "event_types", "description", "created_at"]
    list_filter = ["enabled"]
    search_fields = ["url", "description", "=client__key_prefix"]
    list_select_related = ["client"]
    readonly_fields = [
        "client",
        "enabled",
        "disabled_reason",
        "disabled_at",
        "failing_since",
        "created_at",
        "updated_at",
    ]
    fields = ["url", "description", "event_types", *readonly_fields]
    actions = ["send_test", "enable", "disable"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # made through the API or `manage.py webhook_endpoint add`: secret shown once

    @admin.display(description="Health")
    def health(self, obj: Endpoint) -> SafeString:
        if not obj.enabled:
            return format_html(
                '<strong style="color:#ba2121">Disabled</strong>: {}', obj.disabled_reason
            )
        if obj.failing_since is not None:
            return format_html(
                '<strong style="color:#b36b00">Failing</strong> since {}', when(obj.failing_since)
            )
        return format_html("{}", "OK")

    @admin.action(description="Send a test event")
    def send_test(self, request: HttpRequest, queryset: QuerySet[Endpoint]) -> None:
        for endpoint in queryset:
            endpoint_send_test(endpoint)
        self.message_user(request, f"Test event queued for {queryset.count()} endpoint(s).")

    @admin.action(description="Enable (deliveries resume)")
    def enable(self, request: HttpRequest, queryset: QuerySet[Endpoint]) -> None:
        for endpoint in queryset:
            endpoint_update(endpoint, enabled=True)
        self.message_user(request, "Enabled.")

    @admin.action(description="Disable")
    def disable(self, request: HttpRequest, queryset: QuerySet[Endpoint]) -> None:
        for endpoint in queryset:
            endpoint_update(endpoint, enabled=False)
        self.message_user(request, "Disabled.")


class AttemptInline(admin.TabularInline):
    model = Attempt
    extra = 0
    can_delete = False
    fields = ("started_at", "status_code", "latency_ms", "error", "response_body")
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Delivery)
class DeliveryAdmin(admin.ModelAdmin):
    list_display = [
        "id",
        "event_type",
        "endpoint",
        "state",
        "attempts",
        "last_status_code",
        "next_attempt_at",
        "created_at",
    ]
    list_filter = ["state"]
    search_fields = ["=event__id", "=endpoint__id", "endpoint__url"]
    list_select_related = ["event", "endpoint"]
    inlines = [AttemptInline]
    actions = ["redeliver"]
    show_full_result_count = False

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        return [field.name for field in Delivery._meta.fields]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.display(description="Event", ordering="event__type")
    def event_type(self, obj: Delivery) -> str:
        return f"{obj.event.type} ({obj.event_id})"

    @admin.action(description="Deliver again (to the same endpoint)")
    def redeliver(self, request: HttpRequest, queryset: QuerySet[Delivery]) -> None:
        actor = f"admin:{request.user.get_username()}"
        for delivery in queryset.select_related("event", "endpoint"):
            event_redeliver(
                delivery.event, endpoint=delivery.endpoint, requested_by=actor, reason="admin"
            )
        self.message_user(request, f"{queryset.count()} redelivery(ies) queued.", messages.INFO)


@admin.register(Event)
class EventAdmin(admin.ModelAdmin):
    list_display = ["id", "type", "client", "object_id", "created_at", "dispatched_at"]
    list_filter = ["type"]
    search_fields = ["=id", "=object_id"]
    list_select_related = ["client"]
    show_full_result_count = False

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        return [field.name for field in Event._meta.fields]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
