"""Statements, lines, matches, rejects, runs, breaks and their audit.

On PostgreSQL the two per-line tables (lines as read, and what matching made of them) are
partitioned by statement: each import writes its rows into new tables without indexes, builds
the indexes once, and attaches them as the statement's partitions (a million index insertions
cost several times more than building the index). A partitioned table's unique indexes must
contain the partition key, so the parents have no primary key constraint: ids are unique
through unique (id, statement_id) indexes, and a line's id is checked to be
statement_id * 100,000,000 + line_no. Other databases get plain tables.
"""

import django.db.models.deletion
import django.db.models.expressions
from django.db import migrations, models

PARTITIONED_TABLES = {
    "StatementLine": """
CREATE TABLE reconciliation_statementline (
    id bigint NOT NULL,
    line_no integer NOT NULL CONSTRAINT reconciliation_statementline_line_no_check
        CHECK (line_no >= 0),
    receipt_number varchar(20) NOT NULL,
    completed_at timestamp with time zone NOT NULL,
    paid_in numeric(14, 2) NULL,
    withdrawn numeric(14, 2) NULL,
    balance numeric(14, 2) NULL,
    transaction_status text NOT NULL,
    reason_type text NOT NULL,
    details text NOT NULL,
    other_party text NOT NULL,
    linked_transaction_id text NOT NULL,
    account_reference text NOT NULL,
    statement_id bigint NOT NULL,
    CONSTRAINT statement_line_id_is_statement_and_row
        CHECK (id = statement_id * 100000000 + line_no)
) PARTITION BY LIST (statement_id);
CREATE UNIQUE INDEX reconciliation_statementline_id
    ON reconciliation_statementline (id, statement_id);
""",
    "LineMatch": """
CREATE TABLE reconciliation_linematch (
    line_id bigint NOT NULL,
    direction varchar(3) NOT NULL,
    amount numeric(14, 2) NOT NULL,
    result varchar(24) NOT NULL,
    match_method varchar(10) NOT NULL,
    payment_id uuid NULL,
    statement_id bigint NOT NULL
) PARTITION BY LIST (statement_id);
CREATE UNIQUE INDEX reconciliation_linematch_line
    ON reconciliation_linematch (line_id, statement_id);
CREATE UNIQUE INDEX line_match_payment_once
    ON reconciliation_linematch (statement_id, payment_id) WHERE payment_id IS NOT NULL;
""",
}
TABLES = {"StatementLine": "reconciliation_statementline", "LineMatch": "reconciliation_linematch"}


class CreatePartitionedModel(migrations.CreateModel):
    """CreateModel, except that on PostgreSQL the table is created partitioned by statement."""

    def database_forwards(self, app_label, schema_editor, from_state, to_state):
        if schema_editor.connection.vendor != "postgresql":
            return super().database_forwards(app_label, schema_editor, from_state, to_state)
        schema_editor.execute(PARTITIONED_TABLES[self.name])

    def database_backwards(self, app_label, schema_editor, from_state, to_state):
        if schema_editor.connection.vendor != "postgresql":
            return super().database_backwards(app_label, schema_editor, from_state, to_state)
        schema_editor.execute(f"DROP TABLE {TABLES[self.name]} CASCADE")


class Migration(migrations.Migration):
    initial = True

    dependencies = [
        ("core", "0001_initial"),
        ("payments", "0002_recovery_fields"),
    ]

    operations = [
        migrations.CreateModel(
            name="Statement",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("file_name", models.CharField(blank=True, default="", max_length=255)),
                (
                    "file_format",
                    models.CharField(
                        choices=[
                            ("g2_csv", "M-Pesa org portal statement (CSV)"),
                            ("g2_xlsx", "M-Pesa org portal statement (XLSX)"),
                            ("g2_xls", "M-Pesa org portal statement (XLS)"),
                            ("pull_json", "Daraja Pull Transactions response (JSON)"),
                        ],
                        max_length=16,
                    ),
                ),
                (
                    "checksum",
                    models.CharField(help_text="SHA-256 of the file's bytes.", max_length=64),
                ),
                ("size_bytes", models.BigIntegerField(default=0)),
                ("account_holder", models.TextField(blank=True, default="")),
                ("short_code", models.CharField(blank=True, default="", max_length=32)),
                ("account_name", models.TextField(blank=True, default="")),
                ("period_start", models.DateTimeField(blank=True, null=True)),
                ("period_end", models.DateTimeField(blank=True, null=True)),
                ("report_time", models.DateTimeField(blank=True, null=True)),
                (
                    "opening_balance",
                    models.DecimalField(blank=True, decimal_places=2, max_digits=14, null=True),
                ),
                (
                    "closing_balance",
                    models.DecimalField(blank=True, decimal_places=2, max_digits=14, null=True),
                ),
                (
                    "available_balance",
                    models.DecimalField(blank=True, decimal_places=2, max_digits=14, null=True),
                ),
                (
                    "total_paid_in",
                    models.DecimalField(blank=True, decimal_places=2, max_digits=14, null=True),
                ),
                (
                    "total_withdrawn",
                    models.DecimalField(blank=True, decimal_places=2, max_digits=14, null=True),
                ),
                ("metadata", models.JSONField(blank=True, default=dict)),
                ("header_row", models.PositiveIntegerField(default=0)),
                ("line_count", models.PositiveIntegerField(default=0)),
                ("reject_count", models.PositiveIntegerField(default=0)),
                ("skipped", models.JSONField(blank=True, default=dict)),
                ("uploaded_by", models.CharField(blank=True, default="", max_length=150)),
                ("created_at", models.DateTimeField(auto_now_add=True, db_index=True)),
                (
                    "client",
                    models.ForeignKey(
                        blank=True,
                        null=True,
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="statements",
                        to="core.apiclient",
                    ),
                ),
            ],
            options={
                "ordering": ["-created_at", "-id"],
                "constraints": [
                    models.UniqueConstraint(
                        condition=models.Q(("client__isnull", False)),
                        fields=("client", "checksum"),
                        name="statement_checksum_unique_per_client",
                    ),
                    models.UniqueConstraint(
                        condition=models.Q(("client__isnull", True)),
                        fields=("checksum",),
                        name="statement_checksum_unique_without_client",
                    ),
                ],
            },
        ),
        migrations.CreateModel(
            name="StatementReject",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("row_number", models.PositiveIntegerField()),
                ("reason", models.TextField()),
                ("raw", models.JSONField(blank=True, default=list)),
                (
                    "statement",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="rejects",
                        to="reconciliation.statement",
                    ),
                ),
            ],
            options={"ordering": ["statement", "row_number", "id"]},
        ),
        CreatePartitionedModel(
            name="StatementLine",
            fields=[
                (
                    "id",
                    models.BigIntegerField(
                        help_text="statement id × 100,000,000 + row number.",
                        primary_key=True,
                        serialize=False,
                    ),
                ),
                ("line_no", models.PositiveIntegerField(help_text="Row number in the file.")),
                ("receipt_number", models.CharField(max_length=20)),
                ("completed_at", models.DateTimeField()),
                (
                    "paid_in",
                    models.DecimalField(blank=True, decimal_places=2, max_digits=14, null=True),
                ),
                (
                    "withdrawn",
                    models.DecimalField(blank=True, decimal_places=2, max_digits=14, null=True),
                ),
                (
                    "balance",
                    models.DecimalField(blank=True, decimal_places=2, max_digits=14, null=True),
                ),
                ("transaction_status", models.TextField(blank=True, default="")),
                ("reason_type", models.TextField(blank=True, default="")),
                ("details", models.TextField(blank=True, default="")),
                ("other_party", models.TextField(blank=True, default="")),
                ("linked_transaction_id", models.TextField(blank=True, default="")),
                ("account_reference", models.TextField(blank=True, default="")),
                (
                    "statement",
                    models.ForeignKey(
                        db_constraint=False,
                        db_index=False,
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="lines",
                        to="reconciliation.statement",
                    ),
                ),
            ],
            options={
                "ordering": ["id"],
                "constraints": [
                    models.CheckConstraint(
                        condition=models.Q(
                            (
                                "id",
                                django.db.models.expressions.CombinedExpression(
                                    django.db.models.expressions.CombinedExpression(
                                        models.F("statement_id"), "*", models.Value(100000000)
                                    ),
                                    "+",
                                    models.F("line_no"),
                                ),
                            )
                        ),
                        name="statement_line_id_is_statement_and_row",
                    )
                ],
            },
        ),
        CreatePartitionedModel(
            name="LineMatch",
            fields=[
                (
                    "line",
                    models.OneToOneField(
                        db_constraint=False,
                        on_delete=django.db.models.deletion.CASCADE,
                        primary_key=True,
                        related_name="match",
                        serialize=False,
                        to="reconciliation.statementline",
                    ),
                ),
                (
                    "direction",
                    models.CharField(
                        choices=[("in", "Paid in"), ("out", "Withdrawn")], max_length=3
                    ),
                ),
                ("amount", models.DecimalField(decimal_places=2, max_digits=14)),
                (
                    "result",
                    models.CharField(
                        choices=[
                            ("matched", "Matched"),
                            ("amount_mismatch", "Amount mismatch"),
                            ("not_success", "Paid in the statement, PENDING or FAILED with us"),
                            ("unknown_payment", "Paid in the statement, unknown to us"),
                            (
                                "missing_from_statement",
                                "SUCCESS with us, absent from the statement",
                            ),
                            ("duplicate", "Duplicate statement line"),
                            ("ambiguous", "Several candidates: a person decides"),
                            ("charge", "Charge"),
                            ("fee", "Fee"),
                            ("sweep", "Sweep / settlement"),
                            ("other", "Other line (not a collection)"),
                            ("not_completed", "Not completed (no money moved)"),
                        ],
                        max_length=24,
                    ),
                ),
                (
                    "match_method",
                    models.CharField(
                        blank=True,
                        choices=[
                            ("", "Not matched"),
                            ("receipt", "Receipt number (exact)"),
                            ("tolerance", "Amount, payer, time and account (tolerance)"),
                            ("manual", "Matched by a person"),
                        ],
                        default="",
                        max_length=10,
                    ),
                ),
                (
                    "payment",
                    models.ForeignKey(
                        blank=True,
                        db_constraint=False,
                        db_index=False,
                        null=True,
                        on_delete=django.db.models.deletion.DO_NOTHING,
                        related_name="statement_matches",
                        to="payments.payment",
                    ),
                ),
                (
                    "statement",
                    models.ForeignKey(
                        db_constraint=False,
                        db_index=False,
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="+",
                        to="reconciliation.statement",
                    ),
                ),
            ],
            options={
                "ordering": ["line_id"],
                "constraints": [
                    models.UniqueConstraint(
                        condition=models.Q(("payment__isnull", False)),
                        fields=("statement", "payment"),
                        name="line_match_payment_once",
                    )
                ],
            },
        ),
        migrations.CreateModel(
            name="ReconciliationRun",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("engine", models.CharField(max_length=16)),
                ("time_window_seconds", models.PositiveIntegerField()),
                ("period_start", models.DateTimeField(blank=True, null=True)),
                ("period_end", models.DateTimeField(blank=True, null=True)),
                ("started_at", models.DateTimeField()),
                ("finished_at", models.DateTimeField()),
                ("duration_ms", models.PositiveIntegerField(default=0)),
                ("timings", models.JSONField(blank=True, default=dict)),
                ("summary", models.JSONField(blank=True, default=dict)),
                ("created_by", models.CharField(blank=True, default="", max_length=150)),
                (
                    "client",
                    models.ForeignKey(
                        blank=True,
                        null=True,
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="+",
                        to="core.apiclient",
                    ),
                ),
                (
                    "statement",
                    models.OneToOneField(
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="run",
                        to="reconciliation.statement",
                    ),
                ),
            ],
            options={"ordering": ["-started_at", "-id"]},
        ),
        migrations.CreateModel(
            name="Break",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                (
                    "kind",
                    models.CharField(
                        choices=[
                            ("matched", "Matched"),
                            ("amount_mismatch", "Amount mismatch"),
                            ("not_success", "Paid in the statement, PENDING or FAILED with us"),
                            ("unknown_payment", "Paid in the statement, unknown to us"),
                            (
                                "missing_from_statement",
                                "SUCCESS with us, absent from the statement",
                            ),
                            ("duplicate", "Duplicate statement line"),
                            ("ambiguous", "Several candidates: a person decides"),
                            ("charge", "Charge"),
                            ("fee", "Fee"),
                            ("sweep", "Sweep / settlement"),
                            ("other", "Other line (not a collection)"),
                            ("not_completed", "Not completed (no money moved)"),
                        ],
                        max_length=24,
                    ),
                ),
                (
                    "statement_amount",
                    models.DecimalField(blank=True, decimal_places=2, max_digits=14, null=True),
                ),
                (
                    "our_amount",
                    models.DecimalField(blank=True, decimal_places=2, max_digits=14, null=True),
                ),
                ("bridge_amount", models.DecimalField(decimal_places=2, max_digits=14)),
                ("candidates", models.JSONField(blank=True, default=list)),
                ("auto_resolvable", models.BooleanField(default=False)),
                (
                    "status",
                    models.CharField(
                        choices=[("open", "Open"), ("resolved", "Resolved")],
                        default="open",
                        max_length=10,
                    ),
                ),
                (
                    "resolution",
                    models.CharField(
                        blank=True,
                        choices=[
                            ("", "—"),
                            ("credited", "Payment moved to SUCCESS"),
                            ("matched", "Matched to a payment by a person"),
                            ("accepted", "Explained; nothing to change"),
                        ],
                        default="",
                        max_length=10,
                    ),
                ),
                ("resolved_by", models.CharField(blank=True, default="", max_length=150)),
                ("resolved_at", models.DateTimeField(blank=True, null=True)),
                ("resolution_reason", models.TextField(blank=True, default="")),
                ("created_at", models.DateTimeField(auto_now_add=True)),
                (
                    "payment",
                    models.ForeignKey(
                        blank=True,
                        null=True,
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="reconciliation_breaks",
                        to="payments.payment",
                    ),
                ),
                (
                    "resolved_payment",
                    models.ForeignKey(
                        blank=True,
                        null=True,
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="+",
                        to="payments.payment",
                    ),
                ),
                (
                    "line",
                    models.ForeignKey(
                        blank=True,
                        db_constraint=False,
                        null=True,
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="breaks",
                        to="reconciliation.statementline",
                    ),
                ),
                (
                    "run",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="breaks",
                        to="reconciliation.reconciliationrun",
                    ),
                ),
            ],
            options={
                "ordering": ["run", "id"],
                "indexes": [
                    models.Index(fields=["run", "kind", "status"], name="break_run_kind_status")
                ],
                "constraints": [
                    models.UniqueConstraint(
                        condition=models.Q(("line__isnull", False)),
                        fields=("run", "line"),
                        name="break_one_per_line",
                    ),
                    models.UniqueConstraint(
                        condition=models.Q(("payment__isnull", False)),
                        fields=("run", "payment"),
                        name="break_one_per_payment",
                    ),
                ],
            },
        ),
        migrations.CreateModel(
            name="BreakEvent",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("action", models.CharField(max_length=32)),
                ("actor", models.CharField(blank=True, default="", max_length=150)),
                ("reason", models.TextField(blank=True, default="")),
                ("evidence", models.JSONField(blank=True, default=dict)),
                ("created_at", models.DateTimeField(auto_now_add=True)),
                (
                    "break_record",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="events",
                        to="reconciliation.break",
                    ),
                ),
            ],
            options={"ordering": ["created_at", "id"]},
        ),
    ]
