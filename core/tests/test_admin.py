"""API clients are created in the admin: the key is shown once, only its hash is stored, and
the key works against the API."""

import pytest
from django.contrib.admin.models import LogEntry
from django.contrib.auth.models import Permission, User
from django.urls import reverse
from rest_framework.test import APIClient

from core.models import ApiClient, hash_secret

pytestmark = pytest.mark.django_db
ADD = reverse("admin:core_apiclient_add")


def test_an_api_client_is_created_in_the_admin_and_its_key_shown_once(admin_client):
    assert admin_client.get(ADD).status_code == 200

    response = admin_client.post(ADD, {"name": "School portal", "scopes": ["payments"]})

    assert response.status_code == 200
    assert "no-store" in response["Cache-Control"]
    client = ApiClient.objects.get(name="School portal")
    key = response.context["new"].key
    assert f'id="api-key">{key}<' in response.content.decode()
    assert client.key_hash == hash_secret(key)
    assert key not in str(list(ApiClient.objects.values()))  # only the hash is kept
    assert LogEntry.objects.filter(object_id=str(client.pk)).exists()
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    assert api.get("/payments/").status_code == 200
    # Afterwards the client's page shows the prefix, never the key.
    page = admin_client.get(reverse("admin:core_apiclient_change", args=[client.pk]))
    assert client.key_prefix in page.content.decode() and key not in page.content.decode()


def test_a_blank_name_is_refused(admin_client):
    response = admin_client.post(ADD, {"name": "   ", "scopes": ["payments"]})

    assert response.status_code == 200
    assert "required" in response.content.decode()
    assert not ApiClient.objects.exists()


def test_creating_a_client_needs_the_add_permission(client):
    staff = User.objects.create_user("viewer", password="pw", is_staff=True)
    staff.user_permissions.add(Permission.objects.get(codename="view_apiclient"))
    client.force_login(staff)

    assert client.post(ADD, {"name": "x", "scopes": ["payments"]}).status_code == 403
    assert not ApiClient.objects.exists()


def test_a_key_gets_the_scopes_chosen_and_may_be_a_second_key_of_a_merchant(admin_client):
    admin_client.post(ADD, {"name": "Books", "scopes": ["payments", "reconciliation"]})
    books = ApiClient.objects.get(name="Books")

    admin_client.post(ADD, {"name": "Clerk", "scopes": ["reconciliation"], "acts_for": books.pk})
    refused = admin_client.post(ADD, {"name": "Nothing", "scopes": []})

    assert books.scopes == ["payments", "reconciliation"] and books.acts_for is None
    clerk = ApiClient.objects.get(name="Clerk")
    assert (clerk.scopes, clerk.acts_for) == (["reconciliation"], books)
    assert refused.status_code == 200 and not ApiClient.objects.filter(name="Nothing").exists()


def test_the_quick_row_checkbox_is_the_markup_django_renders():
    from django.contrib import admin as django_admin
    from django.test.html import parse_html

    from payments.admin import PaymentAdmin
    from payments.models import Payment
    from testsupport.factories import PaymentFactory

    payment = PaymentFactory(success=True)
    ours = PaymentAdmin(Payment, django_admin.site).action_checkbox(payment)
    djangos = django_admin.ModelAdmin(Payment, django_admin.site).action_checkbox(payment)

    assert parse_html(ours) == parse_html(djangos)
    assert f'value="{payment.pk}"' in ours


def test_change_url_is_what_reverse_gives_for_any_key_and_script_prefix():
    from django.contrib.admin.utils import quote
    from django.urls import clear_script_prefix, set_script_prefix

    from core.admin_display import change_url

    name = "admin:payments_payment_change"
    try:
        for prefix in ("/", "/mpesa/"):
            set_script_prefix(prefix)
            for pk in ("0b7c1f0e-8a43-4c8e-9d0a-2f1b5c6d7e8f", 42, "a_b/c"):
                assert change_url(name, pk) == reverse(name, args=[quote(pk)])
    finally:
        clear_script_prefix()
