"""PaymentEvent.callback becomes a plain indexed ``callback_id``: no foreign key from payments
up to the inbox (the inbox points down at payments, never the reverse).

The column, its values and its index stay as they are: the first step drops only the
database constraint; the second changes what Django's model state says, not the table.
Backwards, the constraint is added again (every stored id names a callback: callbacks are
never deleted).
"""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("callbacks", "0007_refused_callback_body_prefix_and_retention"),
        ("payments", "0005_list_and_search_indexes"),
    ]

    operations = [
        migrations.AlterField(
            model_name="paymentevent",
            name="callback",
            field=models.ForeignKey(
                blank=True,
                db_constraint=False,
                null=True,
                on_delete=models.deletion.DO_NOTHING,
                related_name="payment_events",
                to="callbacks.inboundcallback",
            ),
        ),
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.RemoveField(model_name="paymentevent", name="callback"),
                migrations.AddField(
                    model_name="paymentevent",
                    name="callback_id",
                    field=models.BigIntegerField(blank=True, db_index=True, null=True),
                ),
            ],
        ),
    ]
