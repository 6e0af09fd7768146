"""Data migrations of payments, run forward from the state before them."""

import hashlib

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

BEFORE = [("payments", "0007_c2b_accounts")]
AFTER = [("payments", "0008_known_phones")]


@pytest.mark.django_db(transaction=True)
def test_the_numbers_payments_already_show_are_known_by_their_hash():
    executor = MigrationExecutor(connection)
    executor.migrate(BEFORE)
    Payment = executor.loader.project_state(BEFORE).apps.get_model("payments", "Payment")
    for n, phone in enumerate(["254712345678", "254712345678", "254799000111", ""]):
        Payment.objects.create(
            amount=10,
            phone_number=phone,
            account_reference="A",
            description="B",
            transaction_type="CustomerPayBillOnline",
            callback_token_hash=f"{n:064d}",
        )

    executor = MigrationExecutor(connection)
    executor.migrate(AFTER)
    KnownPhone = executor.loader.project_state(AFTER).apps.get_model("payments", "KnownPhone")
    assert dict(KnownPhone.objects.values_list("hash", "phone")) == {
        hashlib.sha256(phone.encode()).hexdigest(): phone
        for phone in ("254712345678", "254799000111")
    }
    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes())
