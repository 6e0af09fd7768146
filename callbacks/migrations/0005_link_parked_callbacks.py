"""Failed callbacks parked before processing linked them to their payment: link them by the
token their path carried, so that the payment's API client can list and replay them."""

from django.db import migrations
from django.db.models import OuterRef, Subquery


def link(apps, schema_editor):
    InboundCallback = apps.get_model("callbacks", "InboundCallback")
    Payment = apps.get_model("payments", "Payment")
    by_token = (
        Payment.objects.filter(callback_token_hash=OuterRef("token_hash"))
        .exclude(callback_token_hash="")
        .values("pk")[:1]
    )
    InboundCallback.objects.filter(state="failed", payment__isnull=True).exclude(
        token_hash=""
    ).update(payment=Subquery(by_token))


class Migration(migrations.Migration):
    dependencies = [
        ("callbacks", "0004_indexes_without_like_copies"),
        ("payments", "0004_event_reason_text"),
    ]

    operations = [migrations.RunPython(link, migrations.RunPython.noop)]
