"""The reconciliation API's payloads: statements, runs and their summary, breaks, lines,
rejects, and the upload, resolve and approve requests."""

from __future__ import annotations

from typing import Any

from django.utils.dateparse import parse_datetime
from drf_spectacular.utils import (
    extend_schema_field,
)
from rest_framework import serializers

from ..credit import BreakAction
from ..models import (
    BREAK_CLASSES,
    Break,
    BreakEvent,
    CreditApproval,
    ReconciliationRun,
    ResultClass,
    Statement,
    StatementLine,
    StatementReject,
)
from ..report import summary_in_order

# The classes a break can have, in the order of ResultClass (for filters and the schema).
BREAK_KINDS = [value for value in ResultClass.values if value in BREAK_CLASSES]


class StatementSerializer(serializers.ModelSerializer):
    class Meta:
        model = Statement
        fields = [
            "id",
            "file_name",
            "file_format",
            "checksum",
            "size_bytes",
            "account_holder",
            "short_code",
            "account_name",
            "period_start",
            "period_end",
            "report_time",
            "opening_balance",
            "closing_balance",
            "available_balance",
            "total_paid_in",
            "total_withdrawn",
            "header_row",
            "line_count",
            "reject_count",
            "skipped",
            "metadata",
            "created_at",
        ]
        read_only_fields = fields


def summary_for_api(summary: dict[str, Any] | None) -> dict[str, Any]:
    """A run's summary in order, its period in East Africa time like every other time in the
    API (the summary stores it in UTC)."""
    out = summary_in_order(summary or {})
    period = out.get("period")
    if isinstance(period, dict):
        field = serializers.DateTimeField()
        out["period"] = {
            key: (
                field.to_representation(moment)
                if key in ("start", "end")
                and isinstance(value, str)
                and (moment := parse_datetime(value)) is not None
                else value
            )
            for key, value in period.items()
        }
    return out


class RunSerializer(serializers.ModelSerializer):
    statement = StatementSerializer(read_only=True)
    open_breaks = serializers.IntegerField(
        read_only=True, help_text="Breaks still open now (summary.breaks is the count at import)."
    )

    def to_representation(self, instance: ReconciliationRun) -> dict[str, Any]:
        data = super().to_representation(instance)
        data["summary"] = summary_for_api(data.get("summary"))
        return data

    class Meta:
        model = ReconciliationRun
        fields = [
            "id",
            "statement",
            "engine",
            "time_window_seconds",
            "period_start",
            "period_end",
            "state",
            "rows_read",
            "error",
            "started_at",
            "finished_at",
            "duration_ms",
            "timings",
            "auto_resolve",
            "open_breaks",
            "summary",
        ]
        read_only_fields = fields


class CreditApprovalSerializer(serializers.ModelSerializer):
    class Meta:
        model = CreditApproval
        fields = [
            "id",
            "status",
            "payment",
            "requested_by",
            "requested_at",
            "reason",
            "decided_by",
            "decided_at",
            "decision_reason",
        ]
        read_only_fields = fields


class BreakSerializer(serializers.ModelSerializer):
    line = serializers.SerializerMethodField()
    payment_status = serializers.SerializerMethodField()
    approval = serializers.SerializerMethodField(
        help_text="The latest credit asked for on this break that needed a second person's "
        "approval (pending, approved or cancelled); null when none did."
    )

    class Meta:
        model = Break
        fields = [
            "id",
            "run",
            "kind",
            "line",
            "payment",
            "payment_status",
            "statement_amount",
            "our_amount",
            "bridge_amount",
            "candidates",
            "auto_resolvable",
            "status",
            "resolution",
            "resolved_payment",
            "resolved_by",
            "resolved_at",
            "resolution_reason",
            "approval",
            "created_at",
        ]
        read_only_fields = fields

    @extend_schema_field(CreditApprovalSerializer(allow_null=True))
    def get_approval(self, brk: Break) -> dict[str, Any] | None:
        # Newest first (the model's order); prefetched by the selectors.
        approvals = list(brk.approvals.all())
        return CreditApprovalSerializer(approvals[0]).data if approvals else None

    def get_line(self, brk: Break) -> dict[str, Any] | None:
        line = brk.line
        if line is None:
            return None
        return {
            "id": line.pk,
            "row": line.line_no,
            "receipt_number": line.receipt_number,
            # In the API's time zone, as every other time (isoformat() gave UTC).
            "completed_at": serializers.DateTimeField().to_representation(line.completed_at),
            "paid_in": None if line.paid_in is None else f"{line.paid_in:.2f}",
            "withdrawn": None if line.withdrawn is None else f"{line.withdrawn:.2f}",
            "reason_type": line.reason_type,
            "other_party": line.other_party,
            "account_reference": line.account_reference,
            "details": line.details,
        }

    def get_payment_status(self, brk: Break) -> str | None:
        return brk.payment.status if brk.payment is not None else None


class BreakEventSerializer(serializers.ModelSerializer):
    class Meta:
        model = BreakEvent
        fields = ["id", "action", "actor", "reason", "evidence", "created_at"]
        read_only_fields = fields


class LineSerializer(serializers.ModelSerializer):
    result = serializers.CharField(source="match.result")
    direction = serializers.CharField(source="match.direction")
    amount = serializers.DecimalField(source="match.amount", max_digits=14, decimal_places=2)
    payment = serializers.UUIDField(source="match.payment_id", allow_null=True)
    match_method = serializers.CharField(source="match.match_method")

    class Meta:
        model = StatementLine
        fields = [
            "id",
            "line_no",
            "receipt_number",
            "completed_at",
            "paid_in",
            "withdrawn",
            "balance",
            "transaction_status",
            "reason_type",
            "details",
            "other_party",
            "linked_transaction_id",
            "account_reference",
            "result",
            "direction",
            "amount",
            "payment",
            "match_method",
        ]
        read_only_fields = fields


class RejectSerializer(serializers.ModelSerializer):
    class Meta:
        model = StatementReject
        fields = ["row_number", "reason", "raw"]
        read_only_fields = fields


class StrictBooleanField(serializers.BooleanField):
    """``true`` or ``false``, as the schema says: a multipart field is text, and ``0``,
    ``on`` or ``yes`` are not silently read as a boolean."""

    TRUE_VALUES = {"true", "True", True}
    FALSE_VALUES = {"false", "False", False}
    NULL_VALUES: set[Any] = set()


class UploadSerializer(serializers.Serializer):
    file = serializers.FileField(help_text="The statement: G2 XLS, XLSX or CSV, or Pull JSON.")
    time_window_seconds = serializers.IntegerField(required=False, min_value=0, max_value=7 * 86400)
    auto_resolve = StrictBooleanField(required=False, default=True)


class UploadResponseSerializer(serializers.Serializer):
    already_imported = serializers.BooleanField()
    run = RunSerializer()


class ResolveSerializer(serializers.Serializer):
    action = serializers.ChoiceField(choices=[BreakAction.MATCH, BreakAction.ACCEPT])
    reason = serializers.CharField(max_length=2000, trim_whitespace=True)
    payment_id = serializers.UUIDField(required=False, allow_null=True)

    def validate_reason(self, value: str) -> str:
        if not isinstance(self.initial_data.get("reason"), str):
            raise serializers.ValidationError("A reason is text.")
        return value

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        # A misspelt field (payment instead of payment_id) must not be silently ignored.
        unknown = set(self.initial_data) - set(self.fields)
        if unknown:
            raise serializers.ValidationError({name: "Unknown field." for name in sorted(unknown)})
        return attrs


class ApproveSerializer(serializers.Serializer):
    reason = serializers.CharField(max_length=2000, trim_whitespace=True)

    def validate_reason(self, value: str) -> str:
        if not isinstance(self.initial_data.get("reason"), str):
            raise serializers.ValidationError("A reason is text.")
        return value

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        unknown = set(self.initial_data) - set(self.fields)
        if unknown:
            raise serializers.ValidationError({name: "Unknown field." for name in sorted(unknown)})
        return attrs


# Resolution refusals that are a conflict with the break's or the payment's state (409) or
