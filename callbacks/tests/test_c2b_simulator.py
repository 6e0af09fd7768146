"""C2B end to end against the Daraja simulator: the account's URLs registered with the
management command, a customer paying the paybill (``c2b/v2/simulate``), validation answered
and the confirmation stored and drained into a payment by this system's own HTTP server."""

from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from django.db import connection

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
