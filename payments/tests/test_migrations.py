"""payments/0006: PaymentEvent.callback (a foreign key up to the inbox) becomes the plain
``callback_id`` column, keeping every value, and back."""

import pytest
from django.db import IntegrityError, connection, transaction
from django.db.migrations.executor import MigrationExecutor

BEFORE = [
    ("payments", "0005_list_and_search_indexes"),
    ("callbacks", "0007_refused_callback_body_prefix_and_retention"),
]
AFTER = [("payments", "0006_event_callback_id_without_foreign_key")]


def _migrate(targets):
    executor = MigrationExecutor(connection)
    executor.migrate(targets)
    return executor.loader.project_state(targets).apps


def _seed(apps):
    Payment = apps.get_model("payments", "Payment")
    PaymentEvent = apps.get_model("payments", "PaymentEvent")
    InboundCallback = apps.get_model("callbacks", "InboundCallback")
    payment = Payment.objects.create(
        amount=10,
        phone_number="254712345678",
        account_reference="A",
        description="B",
        callback_token_hash="a" * 64,
    )
    callback = InboundCallback.objects.create(body=b"{}", dedupe_key="d" * 64, payment=payment)
    with_callback = PaymentEvent.objects.create(
        payment=payment, kind="transition", source="callback", callback_id=callback.pk
    )
    without = PaymentEvent.objects.create(payment=payment, kind="note", source="admin")
    return callback, with_callback, without


@pytest.mark.django_db(transaction=True)
def test_the_callback_link_keeps_every_value_forwards_and_backwards():
    apps = _migrate(BEFORE)
    callback, with_callback, without = _seed(apps)

    apps = _migrate(AFTER)
    PaymentEvent = apps.get_model("payments", "PaymentEvent")
    assert dict(PaymentEvent.objects.values_list("pk", "callback_id")) == {
        with_callback.pk: callback.pk,
        without.pk: None,
    }
    # No foreign key any more: the payments schema names no table of the inbox.
    assert PaymentEvent._meta.get_field("callback_id").get_internal_type() == "BigIntegerField"
    assert not any(
        f.is_relation and f.related_model and f.related_model._meta.app_label == "callbacks"
        for f in PaymentEvent._meta.get_fields()
    )
    # The column is still indexed (lookups by callback: purge, replay limits).
    with connection.cursor() as cursor:
        indexes = connection.introspection.get_constraints(cursor, "payments_paymentevent")
    assert any(c["columns"] == ["callback_id"] and c["index"] for c in indexes.values())

    apps = _migrate(BEFORE)
    PaymentEvent = apps.get_model("payments", "PaymentEvent")
    assert dict(PaymentEvent.objects.values_list("pk", "callback_id")) == {
        with_callback.pk: callback.pk,
        without.pk: None,
    }
    # Backwards, the foreign key is a real constraint again.
    payment_id = PaymentEvent.objects.get(pk=with_callback.pk).payment_id
    with pytest.raises(IntegrityError), transaction.atomic():
        PaymentEvent.objects.create(
            payment_id=payment_id, kind="note", source="admin", callback_id=callback.pk + 1000
        )
        if connection.vendor == "sqlite":  # SQLite checks deferred constraints at commit
            connection.check_constraints(table_names=["payments_paymentevent"])

    # Back to the latest schema: the tests after this one expect it.
    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes())
