"""`manage.py reconcile_statement PATH` prints the run's summary as JSON."""

import json

import pytest
from django.core.management import CommandError, call_command

from .builders import Preamble, g2_csv, make_payment, pay_row

pytestmark = pytest.mark.django_db


def run_command(*args):
    from io import StringIO

    out = StringIO()
    call_command("reconcile_statement", *args, stdout=out)
    return json.loads(out.getvalue())


def test_the_command_reconciles_a_file_and_prints_the_summary(tmp_path):
    make_payment(amount=100, receipt="TK5XA1BC2D")
    path = tmp_path / "ORG_4125223_UtilityAccount_All_20251130235959.csv"
    path.write_bytes(
        g2_csv([pay_row("TK5XA1BC2D", 100, "05-11-2025 10:00:00")], preamble=Preamble())
    )

    summary = run_command(str(path))

    assert summary["already_imported"] is False
    assert summary["file_name"] == path.name
    assert summary["classes"]["matched"]["count"] == 1
    assert summary["bridge"]["residual"] == "0.00"
    assert set(summary["timings_ms"]) >= {"load", "summary"}

    again = run_command(str(path))
    assert again["already_imported"] is True and again["run_id"] == summary["run_id"]


def test_the_window_can_be_given(tmp_path):
    make_payment(amount=100, status="PENDING")
    path = tmp_path / "s.csv"
    path.write_bytes(
        g2_csv([pay_row("TK5XA1BC2D", 100, "05-11-2025 11:00:00")], preamble=Preamble())
    )

    summary = run_command(str(path), "--window", "7200", "--no-auto-resolve")

    assert summary["time_window_seconds"] == 7200
    assert summary["classes"]["not_success"]["count"] == 1


def test_an_unreadable_file_is_a_command_error(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("hello")

    with pytest.raises(CommandError, match="Receipt No"):
        call_command("reconcile_statement", str(path))
    with pytest.raises(CommandError, match="no such file"):
        call_command("reconcile_statement", str(tmp_path / "absent.csv"))
