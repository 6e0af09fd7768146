"""C2B end to end against the Daraja simulator: the account's URLs registered with the
management command, a customer paying the paybill (``c2b/v2/simulate``), validation answered
and the confirmation stored and drained into a payment by this system's own HTTP server."""

from collections.abc import Iterator
from dataclasses import replace
from decimal import Decimal
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from django.db import connection

from core.ops import find_violations
from daraja.client import get_client
from payments.accounts import account_create
from payments.models import Channel, Payment, PaymentStatus
from simulator import SimulatorConfig, start_in_thread
from testsupport import wait_for
from testsupport.factories import ApiClientFactory

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def simulator() -> Iterator[Any]:
    server, _ = start_in_thread(
        port=0, config=SimulatorConfig(seed=20261205, log_requests=False, duplicate_gap=0.05)
    )
    yield server
    server.shutdown()


@pytest.fixture
def wired(settings: Any, live_server: Any, simulator: Any) -> Any:
    settings.MPESA_BASE_URL = simulator.base_url
    settings.MPESA_C2B_URL = f"{live_server.url}/c2b/"
    return simulator


def test_register_then_pay_the_paybill(wired, capsys):
    merchant = ApiClientFactory()
    account_create(name="Shop", shortcode="600984", client=merchant, max_amount=Decimal("70000"))
    call_command("mpesa_account", "register", "600984")
    out = capsys.readouterr().out
    assert "Registered with Daraja (v2)" in out
    registered = wired.simulator.c2b_state()["registered"]["600984"]
    assert registered["confirmation"].endswith("/confirmation/")
    # Three confirmations of the one payment, as the sandbox was seen to send.
    wired.simulator.c2b_set_options({"confirmations": 3, "msisdn": "plain"})
    get_client().c2b_simulate(
        shortcode="600984", amount=Decimal("1500"), msisdn="254712345678", bill_ref="INV-77"
    )

    def recorded() -> Payment | None:
        connection.close()
        return Payment.objects.filter(channel=Channel.PAYBILL).first()

    payment = wait_for(recorded, timeout=30)
    assert payment.status == PaymentStatus.SUCCESS
    assert payment.amount == Decimal("1500.00")
    assert payment.bill_ref_number == "INV-77"
    assert payment.phone_number == "254712345678"
    assert payment.client == merchant
    sent = wired.simulator.c2b_payments_json()["payments"][0]
    assert payment.mpesa_receipt_number == sent["trans_id"]
    wait_for(lambda: len(wired.simulator.c2b_payments_json()["payments"][0]["confirmations"]) == 3)
    assert Payment.objects.count() == 1
    assert sent["validation"]["status_code"] == 200


def test_a_payment_over_the_limit_is_refused_at_validation(wired):
    account_create(name="Shop", shortcode="600984", max_amount=Decimal("1000"))
    call_command("mpesa_account", "register", "600984")
    get_client().c2b_simulate(
        shortcode="600984", amount=Decimal("5000"), msisdn="254712345678", bill_ref="INV-78"
    )
    wait_for(
        lambda: wired.simulator.c2b_payments_json()["payments"][0]["status"] == "rejected",
        timeout=30,
    )
    assert (
        '"C2B00013"' in wired.simulator.c2b_payments_json()["payments"][0]["validation"]["answer"]
    )
    assert Payment.objects.count() == 0


def test_a_refused_registration_says_what_to_do(wired, settings):
    account_create(name="Shop", shortcode="600984")
    settings.MPESA_C2B_URL = "https://shop.example/mpesa/c2b/"
    with pytest.raises(CommandError, match="'mpesa', which Daraja refuses"):
        call_command("mpesa_account", "register", "600984")


# --- Pull Transactions: the recovery of lost confirmations -------------------------------------


@pytest.fixture
def small_pages(wired):
    wired.simulator.config = replace(wired.simulator.config, pull_page_size=1)
    return wired


def test_a_lost_confirmation_is_recovered_by_the_next_pull(small_pages, capsys):
    sim = small_pages.simulator
    merchant = ApiClientFactory()
    account, _ = account_create(name="Shop", shortcode="600984", client=merchant)
    call_command("mpesa_account", "register", "600984")
    call_command("mpesa_account", "pull-register", "600984", "--nominated-number", "0722000000")
    client = get_client()
    client.c2b_simulate(
        shortcode="600984", amount=Decimal("100"), msisdn="254712345678", bill_ref="A-1"
    )
    sim.c2b_set_options({"confirmations": 0})  # Daraja's confirmations get lost from here
    for n in (2, 3):
        client.c2b_simulate(
            shortcode="600984", amount=Decimal(100 * n), msisdn="254712345678", bill_ref=f"A-{n}"
        )
    wait_for(
        lambda: [p["status"] for p in sim.c2b_payments_json()["payments"]] == ["completed"] * 3,
        timeout=30,
    )

    def confirmed() -> bool:
        connection.close()
        return Payment.objects.count() == 1

    wait_for(confirmed, timeout=30)
    capsys.readouterr()
    call_command("mpesa_account", "pull", "600984")
    assert "Read 3 transaction(s): 2 recovered" in capsys.readouterr().out
    connection.close()
    sent = {p["trans_id"]: Decimal(p["amount"]) for p in sim.c2b_payments_json()["payments"]}
    assert dict(Payment.objects.values_list("mpesa_receipt_number", "amount")) == sent
    recovered = Payment.objects.exclude(bill_ref_number="A-1")
    assert {p.bill_ref_number for p in recovered} == {"A-2", "A-3"}
    for payment in recovered:
        assert payment.status == PaymentStatus.SUCCESS and payment.client == merchant
        assert payment.events.filter(source="pull", to_status="SUCCESS").exists()
    account.refresh_from_db()
    assert account.pull_enabled and account.pulled_until is not None
    # Pulling again records nothing twice.
    call_command("mpesa_account", "pull", "600984")
    assert "0 recovered" in capsys.readouterr().out
    assert Payment.objects.count() == 3
    assert [str(v) for v in find_violations(settled=True)] == []


def test_a_failing_pull_is_recorded_on_the_account_and_changes_nothing(wired, settings):
    account, _ = account_create(name="Shop", shortcode="600984")
    # Never registered for Pull with the simulator: Daraja refuses the query.
    with pytest.raises(CommandError, match="The pull failed"):
        call_command("mpesa_account", "pull", "600984")
    account.refresh_from_db()
    assert account.pull_failing_since is not None
    assert "not registered" in account.pull_last_error
    assert account.pulled_until is None
