"""Reconciliation's events: a completed run, each break it opened, each break resolved, in the
transaction of the change, with the objects as the API shows them."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from events.models import Event
from reconciliation.credit import BreakAction
from reconciliation.imports import statement_import
from reconciliation.models import Break
from reconciliation.services import break_resolve
from reconciliation.tests.builders import Preamble, g2_csv, make_payment, pay_row
from testsupport.factories import ApiClientFactory

pytestmark = pytest.mark.django_db


def test_a_run_emits_its_breaks_then_its_completion_and_a_resolution_its_own():
    books = ApiClientFactory(scopes=["payments", "reconciliation"])
    make_payment(amount=100, receipt="TK5EVT0001", client=books)
    rows = [
        pay_row("TK5EVT0001", 100, "05-11-2025 10:00:30"),  # matches
        pay_row("TK5EVT0002", 250, "05-11-2025 10:05:00"),  # nobody's payment: a break
        pay_row("TK5EVT0003", 300, "05-11-2025 10:06:00"),  # another break
    ]
    run = statement_import(
        data=g2_csv(rows, preamble=Preamble()), client=books, auto_resolve=False
    ).run

    opened = Event.objects.filter(type="reconciliation.break.opened").order_by("id")
    breaks = list(Break.objects.filter(run=run).order_by("id"))
    assert len(breaks) == 2
    assert sorted(event.object_id for event in opened) == sorted(str(brk.pk) for brk in breaks)
    assert {event.client_id for event in opened} == {books.pk}
    completed = Event.objects.get(type="reconciliation.run.completed")
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {books.raw_key}")
    shown = api.get(f"/reconciliation/runs/{run.pk}/").json()
    assert completed.data == shown
    assert completed.data["open_breaks"] == 2
    first = opened.get(object_id=str(breaks[0].pk))
    assert first.data == api.get(f"/reconciliation/breaks/{breaks[0].pk}/").json()

    break_resolve(
        break_id=breaks[0].pk,
        action=BreakAction.ACCEPT,
        actor="accountant",
        reason="a deposit from the owner",
        client=books,
    )
    resolved = Event.objects.get(type="reconciliation.break.resolved")
    assert resolved.object_id == str(breaks[0].pk)
    assert resolved.data["status"] == "resolved"
    assert resolved.data["resolution_reason"] == "a deposit from the owner"
