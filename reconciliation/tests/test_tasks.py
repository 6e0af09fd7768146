"""The auto-resolution tasks: re-drive what a died worker left open; safe to run twice."""

import datetime as dt

import pytest
from django.utils import timezone

from payments.models import Payment, PaymentStatus
from reconciliation.imports import statement_import
from reconciliation.models import Break, BreakStatus, ReconciliationRun
from reconciliation.tasks import auto_resolve_run, redrive_auto_resolve

from .builders import Preamble, g2_csv, make_payment, pay_row

pytestmark = pytest.mark.django_db


def test_the_redrive_resolves_exact_matches_left_open():
    make_payment(amount=500, receipt="TK5XA1BC2D", status=PaymentStatus.PENDING)
    data = g2_csv([pay_row("TK5XA1BC2D", 500, "05-11-2025 10:00:00")], preamble=Preamble())
    run = statement_import(data=data, auto_resolve=False).run
    # As if the import had asked for automatic resolution and died before applying it.
    ReconciliationRun.objects.filter(pk=run.pk).update(auto_resolve=True)
    Break.objects.filter(run=run).update(created_at=timezone.now() - dt.timedelta(hours=1))

    assert redrive_auto_resolve() == 1  # tasks run eagerly in tests

    assert Payment.objects.get(mpesa_receipt_number="TK5XA1BC2D").status == PaymentStatus.SUCCESS
    assert redrive_auto_resolve() == 0
    assert auto_resolve_run(run.pk) == 0
    assert auto_resolve_run(999_999) == 0


def test_the_redrive_leaves_a_statement_imported_without_automatic_resolution_to_a_person():
    pending = make_payment(amount=500, receipt="TK5XA1BC2D", status=PaymentStatus.PENDING)
    data = g2_csv([pay_row("TK5XA1BC2D", 500, "05-11-2025 10:00:00")], preamble=Preamble())
    run = statement_import(data=data, auto_resolve=False).run
    assert run.auto_resolve is False
    Break.objects.filter(run=run).update(created_at=timezone.now() - dt.timedelta(hours=1))

    assert redrive_auto_resolve(older_than_seconds=0) == 0

    pending.refresh_from_db()
    assert pending.status == PaymentStatus.PENDING
    assert Break.objects.get(run=run).status == BreakStatus.OPEN


def test_beat_runs_the_redrive():
    from django.conf import settings

    from mpesa_project.celery import app

    entries = [entry["task"] for entry in settings.CELERY_BEAT_SCHEDULE.values()]
    assert "reconciliation.tasks.redrive_auto_resolve" in entries
    assert "reconciliation.tasks.redrive_auto_resolve" in app.tasks
