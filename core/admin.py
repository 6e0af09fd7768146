"""Admin for API clients: a new client's key is shown once, on the page that creates it (only
its hash is stored, through the same service as ``manage.py create_api_key``); afterwards only
the prefix is shown. Revoke with an action."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse

from .admin_display import ADMIN_CSS
from .models import ApiClient, Scope, default_scopes
from .services import api_client_create, api_client_revoke, checked_scopes

SCOPES_HELP = (
    "'Reconciliation' imports statements and resolves breaks, which can credit payments: "
    "grant it only to the systems that do the books."
)


class ApiClientForm(forms.ModelForm):
    """Scopes as checkboxes (the field is a JSON list); at least one."""

    scopes = forms.MultipleChoiceField(
        choices=Scope.choices, widget=forms.CheckboxSelectMultiple, help_text=SCOPES_HELP
    )

    class Meta:
        model = ApiClient
        fields = ["name", "scopes"]

    def clean_scopes(self) -> list[str]:
        return checked_scopes(self.cleaned_data["scopes"])


# The admin's lists are read on a 1366-pixel laptop: the application menu on every page took a
# fifth of the width and pushed the lists' last columns (client, review, time) out of sight.
# The same menu is on the admin's home page.
admin.site.enable_nav_sidebar = False


class ApiClientCreateForm(forms.Form):
    """A new key: the same choices as ``manage.py create_api_key`` (name, scopes, and the
    merchant it is a second key of)."""

    name = forms.CharField(
        max_length=100,
        help_text="Who calls the API with this key (a merchant system, a school's portal).",
    )
    scopes = forms.MultipleChoiceField(
        choices=Scope.choices,
        widget=forms.CheckboxSelectMultiple,
        initial=default_scopes,
        help_text=SCOPES_HELP,
    )
    acts_for = forms.ModelChoiceField(
        queryset=ApiClient.objects.filter(revoked_at__isnull=True, acts_for__isnull=True),
        required=False,
        empty_label="(a merchant of its own)",
        label="Second key of",
        help_text="The merchant this key also acts for: it sees the same payments and "
        "statements, and is a different person when a credit needs a second one's approval.",
    )

    def clean_name(self) -> str:
        name = self.cleaned_data["name"].strip()
        if not name:
            raise forms.ValidationError("A name is required.")
        return name

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
    search_fields = ["name", "=key_prefix"]

    class Media:
        css = ADMIN_CSS

    def add_view(
        self, request: HttpRequest, form_url: str = "", extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        """Create a client and show its key once (never stored, never in a redirect or a
        message: the response that shows it is the only place it exists)."""
        if not self.has_add_permission(request):
            return HttpResponse("You may not create API clients.", status=403)
        form = ApiClientCreateForm(request.POST or None)
        context: dict[str, Any] = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": "Add API client",
            "form": form,
            "media": self.media,
        }
        if request.method == "POST" and form.is_valid():
            new = api_client_create(
                name=form.cleaned_data["name"],
                scopes=form.cleaned_data["scopes"],
                acts_for=form.cleaned_data["acts_for"],
            )
            self.log_addition(request, new.client, "Created in the admin (key shown once)")
            context.update(title=f"API key for {new.client.name}", new=new)
            response = TemplateResponse(request, "admin/core/apiclient/created.html", context)
            response["Cache-Control"] = "no-store"
            return response
        return TemplateResponse(request, "admin/core/apiclient/add.html", context)

    @admin.action(description="Revoke selected API keys")
    def revoke(self, request: HttpRequest, queryset: QuerySet[ApiClient]) -> None:
        for client in queryset:
            api_client_revoke(client=client)
            self.log_change(request, client, "Revoked the API key")
        self.message_user(request, f"Revoked {queryset.count()} key(s).", messages.SUCCESS)
