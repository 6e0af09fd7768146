"""Statement imports run in a worker: a run has a state and progress, and the uploaded file is
kept (StatementUpload) until its run is completed or failed."""

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("core", "0001_initial"),
        ("reconciliation", "0004_credit_approval"),
    ]

    operations = [
        migrations.CreateModel(
            name="StatementUpload",
            fields=[
                (
                    "statement",
                    models.OneToOneField(
                        on_delete=django.db.models.deletion.CASCADE,
                        primary_key=True,
                        related_name="upload",
                        serialize=False,
                        to="reconciliation.statement",
                    ),
                ),
                ("data", models.BinaryField()),
                ("created_at", models.DateTimeField(auto_now_add=True)),
            ],
        ),
        migrations.AddField(
            model_name="reconciliationrun",
            name="attempts",
            field=models.PositiveSmallIntegerField(
                default=0, help_text="Times a worker (or the command) started on the run."
            ),
        ),
        migrations.AddField(
            model_name="reconciliationrun",
            name="error",
            field=models.TextField(blank=True, default="", help_text="Why the run failed."),
        ),
        migrations.AddField(
            model_name="reconciliationrun",
            name="heartbeat_at",
            field=models.DateTimeField(
                blank=True,
                help_text="The last sign of life: when queued, when a worker last reported progress.",
                null=True,
            ),
        ),
        migrations.AddField(
            model_name="reconciliationrun",
            name="rows_read",
            field=models.PositiveIntegerField(default=0, help_text="Rows of the file read so far."),
        ),
        # Runs imported before were imported whole, in one transaction: completed.
        migrations.AddField(
            model_name="reconciliationrun",
            name="state",
            field=models.CharField(
                choices=[
                    ("queued", "Queued"),
                    ("parsing", "Reading the file"),
                    ("matching", "Matching"),
                    ("completed", "Completed"),
                    ("failed", "Failed"),
                ],
                default="completed",
                max_length=10,
            ),
        ),
        migrations.AlterField(
            model_name="reconciliationrun",
            name="state",
            field=models.CharField(
                choices=[
                    ("queued", "Queued"),
                    ("parsing", "Reading the file"),
                    ("matching", "Matching"),
                    ("completed", "Completed"),
                    ("failed", "Failed"),
                ],
                default="queued",
                max_length=10,
            ),
        ),
        migrations.AlterField(
            model_name="reconciliationrun",
            name="duration_ms",
            field=models.PositiveIntegerField(
                default=0, help_text="Reading, matching and writing, once a worker started."
            ),
        ),
        migrations.AlterField(
            model_name="reconciliationrun",
            name="finished_at",
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.AlterField(
            model_name="reconciliationrun",
            name="started_at",
            field=models.DateTimeField(help_text="When the statement was accepted."),
        ),
        migrations.AddIndex(
            model_name="reconciliationrun",
            index=models.Index(
                condition=models.Q(("state__in", ["queued", "parsing", "matching"])),
                fields=["state", "heartbeat_at"],
                name="run_active_state",
            ),
        ),
    ]
