"""The break resolve page's payment search takes whatever a person types: an amount out of
any column's range, a number in another script, a very long string. Each is answered with the
page (nothing found, said so), never a 500."""

import pytest
from django.urls import reverse

from reconciliation.imports import statement_import
from reconciliation.models import Break

from .builders import Preamble, g2_csv, pay_row

pytestmark = pytest.mark.django_db


@pytest.fixture
def resolve_url():
    line = pay_row("RCPT000010", 900, "05-11-2025 10:00:00", phone="254722000555")
    run = statement_import(data=g2_csv([line], preamble=Preamble())).run
    brk = Break.objects.get(run=run, kind="unknown_payment")
    return reverse("admin:reconciliation_break_resolve", args=[brk.pk])


@pytest.mark.parametrize(
    "term",
    [
        "1e999999",
        "1E-999999",
        "9" * 200,
        "0." + "0" * 200 + "1",
        "1e20",
        "NaN",
        "-Infinity",
        "\u0669\u0660\u0660",  # ٩٠٠ in Arabic-Indic digits
        "x" * 100_000,
        "'; drop table payments_payment; --",
    ],
)
def test_the_payment_search_answers_any_input_with_the_page(admin_client, resolve_url, term):
    response = admin_client.get(resolve_url, {"q": term})

    assert response.status_code == 200
    assert "No payment found" in response.content.decode()
