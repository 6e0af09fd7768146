"""Callbacks found invalid before processing linked them to their payment: link them by the
token their path carried, so that the payment's API client lists them."""

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
    InboundCallback.objects.filter(state="invalid", payment__isnull=True).exclude(
        token_hash=""
    ).update(payment=Subquery(by_token))


class Migration(migrations.Migration):
    dependencies = [("callbacks", "0005_link_parked_callbacks")]

    operations = [migrations.RunPython(link, migrations.RunPython.noop)]
