"""Admin for M-Pesa accounts (paybills, tills) and their known account numbers. A new
account's C2B URLs (with their token) are shown once, on the page after it is saved."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.forms import ModelForm
from django.http import HttpRequest

from core.models import hash_secret

from .accounts import (
    RegistrationError,
    account_new_token,
    account_register_urls,
    c2b_urls,
    new_url_token,
)
from .models import KnownReference, MpesaAccount


class KnownReferenceInline(admin.TabularInline):
    model = KnownReference
    fields = ["reference", "amount", "active"]
    extra = 0


def _show_urls(request: HttpRequest, account: MpesaAccount, token: str) -> None:
    urls = c2b_urls(token)
    messages.warning(
        request,
        f"C2B URLs of {account.shortcode}, shown once (register them with Daraja): "
        f"ValidationURL {urls.validation} ConfirmationURL {urls.confirmation}",
    )


@admin.register(MpesaAccount)
class MpesaAccountAdmin(admin.ModelAdmin):
    list_display = [
        "shortcode",
        "name",
        "kind",
        "client",
        "enabled",
        "response_type",
        "urls_registered_at",
        "own_app",
        "pull_enabled",
        "pull_failing_since",
    ]
    list_filter = ["kind", "enabled"]
    search_fields = ["=shortcode", "name"]
    inlines = [KnownReferenceInline]
    actions = ["register_urls", "new_urls"]
    readonly_fields = [
        "urls_registered_at",
        "urls_registered_version",
        "pulled_until",
        "pull_failing_since",
        "pull_last_error",
    ]
    filter_horizontal = ["limited_keys"]
    fields = [
        "name",
        "shortcode",
        "kind",
        "till_number",
        "client",
        "limited_keys",
        "enabled",
        "response_type",
        "account_pattern",
        "min_amount",
        "max_amount",
        "require_known_reference",
        "urls_registered_at",
        "urls_registered_version",
        "pull_enabled",
        "pulled_until",
        "pull_failing_since",
        "pull_last_error",
    ]

    def save_model(
        self, request: HttpRequest, obj: MpesaAccount, form: ModelForm[Any], change: bool
    ) -> None:
        token = ""
        if not change:
            token = new_url_token()
            obj.url_token_hash = hash_secret(token)
        super().save_model(request, obj, form, change)
        if token:
            _show_urls(request, obj, token)

    @admin.display(boolean=True, description="own Daraja app")
    def own_app(self, account: MpesaAccount) -> bool:
        """Its own credentials (set with `mpesa_account credentials`; never shown)."""
        return account.has_credentials

    @admin.action(description="Register new C2B URLs with Daraja (v2)")
    def register_urls(self, request: HttpRequest, queryset: QuerySet[MpesaAccount]) -> None:
        for account in queryset:
            try:
                urls = account_register_urls(account)
            except RegistrationError as exc:
                messages.error(request, f"{account.shortcode}: {exc}")
                continue
            self.log_change(request, account, "Registered new C2B URLs with Daraja (v2)")
            messages.success(
                request,
                f"{account.shortcode}: registered ValidationURL {urls.validation} "
                f"ConfirmationURL {urls.confirmation}",
            )

    @admin.action(description="New C2B URLs (the old ones stop working)")
    def new_urls(self, request: HttpRequest, queryset: QuerySet[MpesaAccount]) -> None:
        for account in queryset:
            _show_urls(request, account, account_new_token(account))
