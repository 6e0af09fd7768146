"""API key scopes: reconciliation (importing statements, resolving breaks, which can move a
payment to SUCCESS) becomes a privilege of its own. Every existing key keeps what it was made
for, taking payments, and nothing more: an operator grants ``reconciliation`` explicitly.
A key may act for another client (a second key of the same merchant, a second person)."""

import django.db.models.deletion
from django.db import migrations, models

import core.models


def existing_keys_take_payments_only(apps, schema_editor):
    ApiClient = apps.get_model("core", "ApiClient")
    ApiClient.objects.all().update(scopes=["payments"])


class Migration(migrations.Migration):
    dependencies = [("core", "0001_initial")]

    operations = [
        migrations.AddField(
            model_name="apiclient",
            name="scopes",
            field=models.JSONField(
                default=core.models.default_scopes,
                help_text="What the key may do: payments, reconciliation.",
            ),
        ),
        migrations.RunPython(existing_keys_take_payments_only, migrations.RunPython.noop),
        migrations.AddField(
            model_name="apiclient",
            name="acts_for",
            field=models.ForeignKey(
                blank=True,
                help_text="A second key of the same merchant: it works on that client's payments "
                "and statements, and is a different person for approvals. Empty: its own.",
                null=True,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="extra_keys",
                to="core.apiclient",
            ),
        ),
    ]
