"""Data migrations of the inbox, run forward from the state before them."""

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

BEFORE = [("callbacks", "0004_indexes_without_like_copies")]
AFTER = [("callbacks", "0005_link_parked_callbacks")]


@pytest.mark.django_db(transaction=True)
def test_failed_callbacks_parked_before_the_link_are_linked_by_their_token():
    executor = MigrationExecutor(connection)
    executor.migrate(BEFORE)
    apps = executor.loader.project_state(BEFORE).apps
    Payment = apps.get_model("payments", "Payment")
    InboundCallback = apps.get_model("callbacks", "InboundCallback")
    payment = Payment.objects.create(
        amount=10,
        phone_number="254712345678",
        account_reference="A",
        description="B",
        callback_token_hash="a" * 64,
    )
    common = {"body": b"{}", "dedupe_key": "d" * 64}
    failed = InboundCallback.objects.create(state="failed", token_hash="a" * 64, **common)
    processed = InboundCallback.objects.create(state="processed", token_hash="a" * 64, **common)
    no_token = InboundCallback.objects.create(state="failed", token_hash="", **common)
    unknown = InboundCallback.objects.create(state="failed", token_hash="b" * 64, **common)

    executor = MigrationExecutor(connection)
    executor.migrate(AFTER)

    linked = dict(InboundCallback.objects.values_list("pk", "payment_id"))
    assert linked == {
        failed.pk: payment.pk,
        processed.pk: None,  # processing links what it decides: not this migration's business
        no_token.pk: None,
        unknown.pk: None,
    }
    # Back to the latest schema: the tests after this one expect it.
    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes())
