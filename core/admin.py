"""Admin for API clients: keys are never shown (only the prefix); revoke with an action."""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from .models import ApiClient, Scope
from .services import api_client_revoke, checked_scopes


class ApiClientForm(forms.ModelForm):
    """Scopes as checkboxes (the field is a JSON list); at least one."""

    scopes = forms.MultipleChoiceField(
        choices=Scope.choices,
        widget=forms.CheckboxSelectMultiple,
        help_text="'Reconciliation' imports statements and resolves breaks, which can credit "
        "payments: grant it only to the systems that do the books.",
    )

    class Meta:
        model = ApiClient
        fields = ["name", "scopes"]

    def clean_scopes(self) -> list[str]:
        return checked_scopes(self.cleaned_data["scopes"])


@admin.register(ApiClient)
class ApiClientAdmin(admin.ModelAdmin):
    form = ApiClientForm
    list_display = ["name", "key_prefix", "scopes", "created_at", "last_used_at", "revoked_at"]
    readonly_fields = [
        "id",
        "key_prefix",
        "acts_for",
        "created_at",
        "last_used_at",
        "revoked_at",
    ]
    exclude = ["key_hash"]
    actions = ["revoke"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # keys are made with `manage.py create_api_key NAME` (shown once)

    @admin.action(description="Revoke selected API keys")
    def revoke(self, request: HttpRequest, queryset: QuerySet[ApiClient]) -> None:
        for client in queryset:
            api_client_revoke(client=client)
            self.log_change(request, client, "Revoked the API key")
        self.message_user(request, f"Revoked {queryset.count()} key(s).", messages.SUCCESS)
