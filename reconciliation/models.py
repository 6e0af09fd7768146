"""Statements, their lines (as read) and rejects; what matching made of each line; runs, their
breaks and the breaks' audit.

A statement is imported once (its SHA-256 is unique per client). Each line has a
:class:`LineMatch` with its result class and, when matched, the payment it claims; a partial
unique index on (statement, payment) makes it impossible for two lines of a statement to
claim the same payment. Breaks are the exceptions a person resolves; the unique constraints on
(run, line) and (run, payment) hold one break per line and per payment.
"""

from __future__ import annotations

from typing import Any

from django.db import models
from django.db.models import F, Q

# A line's id is statement_id * LINE_ID_FACTOR + its row number: unique, known before the
# insert (no sequence), and ordered like the statement's rows.
LINE_ID_FACTOR = 100_000_000


class StatementFormat(models.TextChoices):
    G2_CSV = "g2_csv", "M-Pesa org portal statement (CSV)"
    G2_XLSX = "g2_xlsx", "M-Pesa org portal statement (XLSX)"
    G2_XLS = "g2_xls", "M-Pesa org portal statement (XLS)"
    PULL_JSON = "pull_json", "Daraja Pull Transactions response (JSON)"


class ResultClass(models.TextChoices):
    MATCHED = "matched", "Matched"
    AMOUNT_MISMATCH = "amount_mismatch", "Amount mismatch"
    NOT_SUCCESS = "not_success", "Paid in the statement, PENDING or FAILED with us"
    UNKNOWN_PAYMENT = "unknown_payment", "Paid in the statement, unknown to us"
    MISSING_FROM_STATEMENT = "missing_from_statement", "SUCCESS with us, absent from the statement"
    DUPLICATE = "duplicate", "Duplicate statement line"
    AMBIGUOUS = "ambiguous", "Several candidates: a person decides"
    CHARGE = "charge", "Charge"
    FEE = "fee", "Fee"
    SWEEP = "sweep", "Sweep / settlement"
    OTHER = "other", "Other line (not a collection)"
    NOT_COMPLETED = "not_completed", "Not completed (no money moved)"


# The classes that are breaks (a person may need to act); the rest are classifications.
BREAK_CLASSES = frozenset(
    {
        ResultClass.AMOUNT_MISMATCH,
        ResultClass.NOT_SUCCESS,
        ResultClass.UNKNOWN_PAYMENT,
        ResultClass.MISSING_FROM_STATEMENT,
        ResultClass.DUPLICATE,
        ResultClass.AMBIGUOUS,
    }
)


class MatchMethod(models.TextChoices):
    NONE = "", "Not matched"
    RECEIPT = "receipt", "Receipt number (exact)"
    TOLERANCE = "tolerance", "Amount, payer, time and account (tolerance)"
    MANUAL = "manual", "Matched by a person"


class Direction(models.TextChoices):
    IN = "in", "Paid in"
    OUT = "out", "Withdrawn"


class Statement(models.Model):
    """One imported file. The preamble's facts are kept as read; unreadable ones are None."""

    client = models.ForeignKey(
        "core.ApiClient",
        on_delete=models.PROTECT,
        related_name="statements",
        null=True,
        blank=True,
    )
    file_name = models.CharField(max_length=255, blank=True, default="")
    file_format = models.CharField(max_length=16, choices=StatementFormat.choices)
    checksum = models.CharField(max_length=64, help_text="SHA-256 of the file's bytes.")
    size_bytes = models.BigIntegerField(default=0)
    account_holder = models.TextField(blank=True, default="")
    short_code = models.CharField(max_length=32, blank=True, default="")
    account_name = models.TextField(blank=True, default="")
    period_start = models.DateTimeField(null=True, blank=True)
    period_end = models.DateTimeField(null=True, blank=True)
    report_time = models.DateTimeField(null=True, blank=True)
    opening_balance = models.DecimalField(max_digits=14, decimal_places=2, null=True, blank=True)
    closing_balance = models.DecimalField(max_digits=14, decimal_places=2, null=True, blank=True)
    available_balance = models.DecimalField(max_digits=14, decimal_places=2, null=True, blank=True)
    total_paid_in = models.DecimalField(max_digits=14, decimal_places=2, null=True, blank=True)
    total_withdrawn = models.DecimalField(max_digits=14, decimal_places=2, null=True, blank=True)
    metadata = models.JSONField(default=dict, blank=True)
    header_row = models.PositiveIntegerField(default=0)
    line_count = models.PositiveIntegerField(default=0)
    reject_count = models.PositiveIntegerField(default=0)
    skipped = models.JSONField(default=dict, blank=True)
    uploaded_by = models.CharField(max_length=150, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["client", "checksum"],
                condition=Q(client__isnull=False),
                name="statement_checksum_unique_per_client",
            ),
            models.UniqueConstraint(
                fields=["checksum"],
                condition=Q(client__isnull=True),
                name="statement_checksum_unique_without_client",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.file_name or 'statement'} #{self.pk}"


class StatementReject(models.Model):
    """A row that could not be read, with its row number in the file and why."""

    statement = models.ForeignKey(Statement, on_delete=models.CASCADE, related_name="rejects")
    row_number = models.PositiveIntegerField()
    reason = models.TextField()
    raw = models.JSONField(default=list, blank=True)

    class Meta:
        ordering = ["statement", "row_number", "id"]

    def __str__(self) -> str:
        return f"row {self.row_number}: {self.reason}"


class StatementLine(models.Model):
    """One readable statement row as read: times in UTC, amounts as Decimal with the signs the
    statement gave them, A/C No. trimmed. What the reconciliation made of it is its
    :class:`LineMatch`.

    On PostgreSQL the table is partitioned by statement (see the migration): an import COPYs
    its rows straight into a new table, builds the index once, and attaches it. The foreign
    key has no database constraint: a partitioned table cannot be referenced by one, and a
    million trigger checks would cost more than the insert. The statement is created in the
    same transaction.
    """

    id = models.BigIntegerField(
        primary_key=True, help_text="statement id × 100,000,000 + row number."
    )
    statement = models.ForeignKey(
        Statement,
        on_delete=models.CASCADE,
        related_name="lines",
        db_index=False,
        db_constraint=False,
    )
    line_no = models.PositiveIntegerField(help_text="Row number in the file.")
    receipt_number = models.CharField(max_length=20)
    completed_at = models.DateTimeField()
    paid_in = models.DecimalField(max_digits=14, decimal_places=2, null=True, blank=True)
    withdrawn = models.DecimalField(max_digits=14, decimal_places=2, null=True, blank=True)
    balance = models.DecimalField(max_digits=14, decimal_places=2, null=True, blank=True)
    transaction_status = models.TextField(blank=True, default="")
    reason_type = models.TextField(blank=True, default="")
    details = models.TextField(blank=True, default="")
    other_party = models.TextField(blank=True, default="")
    linked_transaction_id = models.TextField(blank=True, default="")
    account_reference = models.TextField(blank=True, default="")

    class Meta:
        ordering = ["id"]
        constraints = [
            # The id encodes (statement, row): with the id unique, so is the row.
            models.CheckConstraint(
                condition=Q(id=F("statement_id") * LINE_ID_FACTOR + F("line_no")),
                name="statement_line_id_is_statement_and_row",
            ),
        ]

    def __str__(self) -> str:
        return f"row {self.line_no}: {self.receipt_number}"


class LineMatch(models.Model):
    """What the reconciliation made of one statement line: its class, its direction and
    (positive) amount, and the payment it claims. A partial unique index on (payment,
    statement) makes it impossible for two lines of a statement to claim the same payment.
    Partitioned by statement on PostgreSQL, like the lines."""

    line = models.OneToOneField(
        StatementLine,
        on_delete=models.CASCADE,
        primary_key=True,
        related_name="match",
        db_constraint=False,
    )
    statement = models.ForeignKey(
        Statement,
        on_delete=models.CASCADE,
        related_name="+",
        db_index=False,
        db_constraint=False,
    )
    direction = models.CharField(max_length=3, choices=Direction.choices)
    amount = models.DecimalField(max_digits=14, decimal_places=2)
    result = models.CharField(max_length=24, choices=ResultClass.choices)
    payment = models.ForeignKey(
        "payments.Payment",
        on_delete=models.DO_NOTHING,
        related_name="statement_matches",
        null=True,
        blank=True,
        db_index=False,
        db_constraint=False,
    )
    match_method = models.CharField(
        max_length=10, choices=MatchMethod.choices, blank=True, default=""
    )

    class Meta:
        ordering = ["line_id"]
        constraints = [
            # A payment is claimed by at most one line of a statement. The payment comes first:
            # an import builds this index over a million uuids, and sorting on a constant
            # statement id first costs twice as much; lookups are by payment anyway.
            models.UniqueConstraint(
                fields=["payment", "statement"],
                condition=Q(payment__isnull=False),
                name="line_match_payment_once",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.result} {self.direction} {self.amount}"


class RunState(models.TextChoices):
    QUEUED = "queued", "Queued"
    PARSING = "parsing", "Reading the file"
    MATCHING = "matching", "Matching"
    COMPLETED = "completed", "Completed"
    FAILED = "failed", "Failed"


# A run in one of these states is being worked on (or waits to be).
ACTIVE_RUN_STATES = (RunState.QUEUED, RunState.PARSING, RunState.MATCHING)


class StatementUpload(models.Model):
    """An uploaded statement's bytes, from the upload until its run is completed or failed:
    the worker reads them from here (they survive a restart of any process), and they are
    deleted with the run's final state."""

    statement = models.OneToOneField(
        Statement, on_delete=models.CASCADE, primary_key=True, related_name="upload"
    )
    data = models.BinaryField()
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"file of {self.statement}"


class ReconciliationRun(models.Model):
    """The matching of one statement against our payments, with its summary and bridge.

    An upload is accepted as a ``queued`` run; a worker reads it (``parsing``, with the rows
    read so far), matches it (``matching``) and leaves it ``completed`` or ``failed`` with the
    reason. The database is the truth: the Celery message only wakes a worker up, and a
    sweeper wakes up queued runs whose message was lost and runs whose worker stopped."""

    statement = models.OneToOneField(Statement, on_delete=models.CASCADE, related_name="run")
    client = models.ForeignKey(
        "core.ApiClient", on_delete=models.PROTECT, related_name="+", null=True, blank=True
    )
    engine = models.CharField(max_length=16)
    time_window_seconds = models.PositiveIntegerField()
    period_start = models.DateTimeField(null=True, blank=True)
    period_end = models.DateTimeField(null=True, blank=True)
    state = models.CharField(max_length=10, choices=RunState.choices, default=RunState.QUEUED)
    rows_read = models.PositiveIntegerField(default=0, help_text="Rows of the file read so far.")
    error = models.TextField(blank=True, default="", help_text="Why the run failed.")
    attempts = models.PositiveSmallIntegerField(
        default=0, help_text="Times a worker (or the command) started on the run."
    )
    heartbeat_at = models.DateTimeField(
        null=True,
        blank=True,
        help_text="The last sign of life: when queued, when a worker last reported progress.",
    )
    started_at = models.DateTimeField(help_text="When the statement was accepted.")
    finished_at = models.DateTimeField(null=True, blank=True)
    duration_ms = models.PositiveIntegerField(
        default=0, help_text="Reading, matching and writing, once a worker started."
    )
    timings = models.JSONField(default=dict, blank=True)
    summary = models.JSONField(default=dict, blank=True)
    created_by = models.CharField(max_length=150, blank=True, default="")
    auto_resolve = models.BooleanField(
        default=True,
        help_text="Exact matches of PENDING/FAILED payments are applied automatically (and "
        "re-driven by the beat task if that was interrupted); off when imported with "
        "auto_resolve=false.",
    )

    class Meta:
        ordering = ["-started_at", "-id"]
        indexes = [
            models.Index(
                fields=["state", "heartbeat_at"],
                condition=Q(state__in=["queued", "parsing", "matching"]),
                name="run_active_state",
            )
        ]

    def __str__(self) -> str:
        return f"run #{self.pk} of {self.statement}"


class BreakStatus(models.TextChoices):
    OPEN = "open", "Open"
    RESOLVED = "resolved", "Resolved"


class Resolution(models.TextChoices):
    NONE = "", "—"
    CREDITED = "credited", "Payment moved to SUCCESS"
    MATCHED = "matched", "Matched to a payment by a person"
    ACCEPTED = "accepted", "Explained; nothing to change"


class Break(models.Model):
    """A difference between the statement and our books, typed, with its bridge amount
    (its contribution to statement total minus our total)."""

    run = models.ForeignKey(ReconciliationRun, on_delete=models.CASCADE, related_name="breaks")
    kind = models.CharField(max_length=24, choices=ResultClass.choices)
    line = models.ForeignKey(
        StatementLine,
        on_delete=models.CASCADE,
        related_name="breaks",
        null=True,
        blank=True,
        db_constraint=False,
    )
    payment = models.ForeignKey(
        "payments.Payment",
        on_delete=models.PROTECT,
        related_name="reconciliation_breaks",
        null=True,
        blank=True,
    )
    statement_amount = models.DecimalField(max_digits=14, decimal_places=2, null=True, blank=True)
    our_amount = models.DecimalField(max_digits=14, decimal_places=2, null=True, blank=True)
    bridge_amount = models.DecimalField(max_digits=14, decimal_places=2)
    candidates = models.JSONField(default=list, blank=True)
    auto_resolvable = models.BooleanField(default=False)
    status = models.CharField(max_length=10, choices=BreakStatus.choices, default=BreakStatus.OPEN)
    resolution = models.CharField(max_length=10, choices=Resolution.choices, blank=True, default="")
    resolved_payment = models.ForeignKey(
        "payments.Payment", on_delete=models.PROTECT, related_name="+", null=True, blank=True
    )
    resolved_by = models.CharField(max_length=150, blank=True, default="")
    resolved_at = models.DateTimeField(null=True, blank=True)
    resolution_reason = models.TextField(blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["run", "id"]
        indexes = [
            models.Index(fields=["run", "kind", "status"], name="break_run_kind_status"),
            # The admin's list: newest run first, a run's breaks in order, one page at a time.
            models.Index(fields=["-run", "id"], name="break_run_desc_id"),
            # The admin's list filtered by status (open breaks, newest run first): without it
            # PostgreSQL walked break_run_desc_id past every resolved break to find 50 open.
            models.Index(fields=["status", "-run", "id"], name="break_status_run_desc_id"),
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["run", "line"],
                condition=Q(line__isnull=False),
                name="break_one_per_line",
            ),
            models.UniqueConstraint(
                fields=["run", "payment"],
                condition=Q(payment__isnull=False),
                name="break_one_per_payment",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} ({self.status})"


class BreakEventQuerySet(models.QuerySet["BreakEvent"]):
    def update(self, **kwargs: Any) -> int:
        raise TypeError("break events are append-only")

    def delete(self) -> tuple[int, dict[str, int]]:
        raise TypeError("break events are append-only")


class BreakEvent(models.Model):
    """Append-only audit of what happened to a break: who did what, why, with what effect."""

    break_record = models.ForeignKey(Break, on_delete=models.PROTECT, related_name="events")
    action = models.CharField(max_length=32)
    actor = models.CharField(max_length=150, blank=True, default="")
    reason = models.TextField(blank=True, default="")
    evidence = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    objects = BreakEventQuerySet.as_manager()

    class Meta:
        ordering = ["created_at", "id"]

    def __str__(self) -> str:
        return f"{self.action} by {self.actor or 'system'}"

    def save(self, *args: Any, **kwargs: Any) -> None:
        if self.pk is not None:
            raise TypeError("break events are append-only")
        super().save(*args, **kwargs)

    def delete(self, *args: Any, **kwargs: Any) -> tuple[int, dict[str, int]]:
        raise TypeError("break events are append-only")


class ApprovalStatus(models.TextChoices):
    PENDING = "pending", "Waiting for a second person"
    APPROVED = "approved", "Approved: the payment moved"
    CANCELLED = "cancelled", "Cancelled (the break was resolved otherwise)"


class CreditApproval(models.Model):
    """A credit that one person asked for and a second, different one must approve before the
    payment moves: a statement line crediting a payment whose failure M-Pesa gave (cancelled
    by the customer, wrong PIN, …) is not proof enough on one person's word. The actor keys
    (``client:<uuid>`` for an API key, ``user:<pk>`` for a staff user) decide who is
    "different"; the names are for people."""

    break_record = models.ForeignKey(Break, on_delete=models.PROTECT, related_name="approvals")
    payment = models.ForeignKey(
        "payments.Payment", on_delete=models.PROTECT, related_name="credit_approvals"
    )
    status = models.CharField(
        max_length=10, choices=ApprovalStatus.choices, default=ApprovalStatus.PENDING
    )
    requested_by = models.CharField(max_length=150)
    requested_by_key = models.CharField(max_length=64)
    reason = models.TextField()
    evidence = models.JSONField(default=dict, blank=True)
    requested_at = models.DateTimeField(auto_now_add=True)
    decided_by = models.CharField(max_length=150, blank=True, default="")
    decided_by_key = models.CharField(max_length=64, blank=True, default="")
    decision_reason = models.TextField(blank=True, default="")
    decided_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-requested_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["break_record"],
                condition=Q(status="pending"),
                name="credit_approval_one_pending_per_break",
            ),
        ]

    def __str__(self) -> str:
        return f"credit of {self.payment_id} ({self.status})"
