"""The callback inbox in the admin: read-only (a stored callback, its state and its error are
evidence), its state coloured and its headers as a table; replay is the one action."""

import hashlib

import pytest
from django.urls import reverse

from callbacks.models import CallbackState, InboundCallback
from testsupport import stk_success_body

pytestmark = pytest.mark.django_db


@pytest.fixture
def failed_callback():
    body = stk_success_body(checkout_request_id="ws_CO_05112025101000000722000109")
    return InboundCallback.objects.create(
        body=body,
        content_type="application/json",
        headers={"Content-Type": "application/json"},
        source_ip="196.201.214.200",
        dedupe_key=hashlib.sha256(body).hexdigest(),
        checkout_request_id="ws_CO_05112025101000000722000109",
        state=CallbackState.FAILED,
        last_error="RuntimeError: worker lost",
    )


def test_a_callback_cannot_be_edited_in_the_admin(admin_client, failed_callback):
    url = reverse("admin:callbacks_inboundcallback_change", args=[failed_callback.pk])

    page = admin_client.get(url).content.decode()
    admin_client.post(
        url,
        {"state": "processed", "last_error": "", "headers": "{}", "payment": ""},
    )

    assert "<textarea" not in page and 'name="state"' not in page and 'name="_save"' not in page
    assert '<span class="status status-failed">failed</span>' in page
    assert "<th>Content-Type</th><td>application/json</td>" in page
    failed_callback.refresh_from_db()
    assert (failed_callback.state, failed_callback.last_error) == (
        CallbackState.FAILED,
        "RuntimeError: worker lost",
    )


def test_the_list_shows_the_state_coloured_and_replays(admin_client, failed_callback):
    url = reverse("admin:callbacks_inboundcallback_changelist")

    page = admin_client.get(url).content.decode()
    response = admin_client.post(
        url, {"action": "replay", "_selected_action": [failed_callback.pk]}
    )

    assert '<span class="status status-failed">failed</span>' in page
    assert response.status_code == 302
    failed_callback.refresh_from_db()
    assert failed_callback.state != CallbackState.FAILED
