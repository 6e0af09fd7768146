"""Reconciliation API: upload a statement (multipart; accepted with 202 and read by a worker),
read runs (their state and progress), their summary, breaks, lines, rejects and the
accountant's CSV report, and resolve breaks with a reason.

Every object belongs to the API client that uploaded the statement; a client never sees
another's runs, breaks or payments. Every operation needs the key's ``reconciliation`` scope
(a statement can move payments to SUCCESS); a credit that needs a second person is approved
with ``…/breaks/{id}/approve/`` by another key of the merchant.
"""

from __future__ import annotations

import csv
import io
import uuid
from collections.abc import Mapping
from typing import Any

from django.conf import settings
from django.db.models import QuerySet
from django.http import StreamingHttpResponse
from django.utils.dateparse import parse_datetime
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    extend_schema_field,
    extend_schema_view,
)
from rest_framework import serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.renderers import BaseRenderer, JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from core.api import ApiError, errors, json_errors
from core.auth import HasReconciliationScope, request_client, request_key
from core.parsers import DecimalJSONParser

from .formats.limits import StatementFormatError
from .imports import statement_accept
from .models import (
    BREAK_CLASSES,
    Break,
    BreakEvent,
    BreakStatus,
    CreditApproval,
    ReconciliationRun,
    ResultClass,
    Statement,
    StatementLine,
    StatementReject,
)
from .report import summary_in_order
from .selectors import (
    break_events,
    break_list,
    break_scope,
    run_lines,
    run_list,
    run_rejects,
    run_report_csv,
)
from .services import (
    BreakAction,
    BreakResolutionError,
    break_approve,
    break_resolve,
    client_actor_key,
)

# The classes a break can have, in the order of ResultClass (for filters and the schema).
BREAK_KINDS = [value for value in ResultClass.values if value in BREAK_CLASSES]
DEFAULT_MAX_UPLOAD_BYTES = 50 * 1024 * 1024


class CSVRenderer(BaseRenderer):
    """``text/csv``, for the report, which streams its own body (errors are JSON, as
    everywhere: see ``RunViewSet.finalize_response``); a one-row CSV of code and message
    should anything else be rendered."""

    media_type = "text/csv"
    format = "csv"
    charset = "utf-8"

    def render(
        self,
        data: Any,
        accepted_media_type: str | None = None,
        renderer_context: Mapping[str, Any] | None = None,
    ) -> bytes:
        error = data.get("error", {}) if isinstance(data, dict) else {}
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow(["code", "message"])
        writer.writerow([error.get("code", ""), error.get("message", str(data))])
        return out.getvalue().encode()


def max_upload_bytes() -> int:
    return int(getattr(settings, "RECONCILIATION_MAX_UPLOAD_BYTES", DEFAULT_MAX_UPLOAD_BYTES))


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
# forbidden to this caller (403); the rest are not possible for this break (422).
CONFLICTS = frozenset(
    {
        "already_resolved",
        "payment_already_matched",
        "receipt_taken",
        "approval_pending",
        "nothing_to_approve",
    }
)
FORBIDDEN = frozenset({"self_approval"})


def resolution_error(exc: BreakResolutionError) -> ApiError:
    if exc.code in FORBIDDEN:
        status_code = 403
    elif exc.code in CONFLICTS:
        status_code = 409
    else:
        status_code = 422
    return ApiError(code=exc.code, message=exc.message, http_status=status_code)


class StatementUploadView(APIView):
    permission_classes = [HasReconciliationScope]
    parser_classes = [MultiPartParser, FormParser]

    @extend_schema(
        operation_id="reconciliation_statement_upload",
        request={"multipart/form-data": UploadSerializer},
        responses={
            202: OpenApiResponse(
                UploadResponseSerializer,
                description="Accepted and queued: a worker reads and matches the file. Follow "
                "the run (GET /reconciliation/runs/{id}/) until its state is 'completed' or "
                "'failed' (with the reason in 'error'). Also the answer to a file whose "
                "earlier upload failed: it is queued again.",
            ),
            200: OpenApiResponse(
                UploadResponseSerializer,
                description="The same file was uploaded before: its run, in whatever state.",
            ),
            **errors(
                e400="An empty file, one that is no statement by its first bytes (HTML), or "
                "a field at fault",
                e413="File over RECONCILIATION_MAX_UPLOAD_BYTES",
                e415="Not a multipart (or form) body",
            ),
        },
        summary="Upload an M-Pesa statement to be reconciled (queued; answered 202)",
    )
    def post(self, request: Request) -> Response:
        serializer = UploadSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        upload = serializer.validated_data["file"]
        if upload.size > max_upload_bytes():
            raise ApiError(
                code="payload_too_large",
                message=f"The file is over {max_upload_bytes()} bytes; use the "
                "reconcile_statement command for large statements.",
                http_status=413,
            )
        data = upload.read()
        try:
            result = statement_accept(
                data=data,
                file_name=upload.name or "",
                client=request_client(request),
                actor=request_key(request).name,
                time_window_seconds=serializer.validated_data.get("time_window_seconds"),
                auto_resolve=serializer.validated_data["auto_resolve"],
            )
        except StatementFormatError as exc:
            raise ApiError(
                code="unreadable_statement",
                message=str(exc),
                http_status=400,
                fields={"file": str(exc)},
            ) from None
        # Read back as the runs list reads it (with the open breaks).
        run = run_list(client=request_client(request)).get(pk=result.run.pk)
        body = {"already_imported": not result.created, "run": RunSerializer(run).data}
        response = Response(
            body, status=status.HTTP_202_ACCEPTED if result.queued else status.HTTP_200_OK
        )
        response["Location"] = f"/reconciliation/runs/{run.pk}/"
        return response


@extend_schema_view(
    list=extend_schema(
        responses={
            200: RunSerializer(many=True),
            **errors(e400="A bad page or page_size", e404="No such page"),
        },
        summary="Reconciliation runs, newest first",
    ),
    retrieve=extend_schema(
        responses={200: RunSerializer, **errors(e404="No such run (or another client's)")},
        summary="One run with its statement and summary",
    ),
)
class RunViewSet(viewsets.ReadOnlyModelViewSet):
    permission_classes = [HasReconciliationScope]
    serializer_class = RunSerializer
    filterset_class = None

    def get_queryset(self) -> QuerySet[ReconciliationRun]:
        if getattr(self, "swagger_fake_view", False):  # schema generation: no client
            return ReconciliationRun.objects.none()
        return run_list(client=request_client(self.request)).order_by("-started_at", "-id")

    def finalize_response(
        self, request: Request, response: Response, *args: Any, **kwargs: Any
    ) -> Response:
        # An error is JSON in the API's one error shape, whatever the report's Accept asked.
        if isinstance(response, Response) and response.status_code >= 400:
            request.accepted_renderer = JSONRenderer()
            request.accepted_media_type = JSONRenderer.media_type
        return super().finalize_response(request, response, *args, **kwargs)

    @extend_schema(
        responses={200: OpenApiTypes.OBJECT, **errors(e404="No such run")},
        summary="The run's summary and bridge",
    )
    @action(detail=True, methods=["get"], pagination_class=None, filterset_class=None)
    def summary(self, request: Request, pk: str | None = None) -> Response:
        return Response(summary_for_api(self.get_object().summary))

    @extend_schema(
        responses={
            200: BreakSerializer(many=True),
            **errors(e400="A bad filter, page or page_size", e404="No such run or page"),
        },
        parameters=[
            OpenApiParameter("kind", OpenApiTypes.STR, enum=BREAK_KINDS),
            OpenApiParameter("status", OpenApiTypes.STR, enum=BreakStatus.values),
        ],
        summary="The run's breaks",
    )
    @action(detail=True, methods=["get"], filterset_class=None)
    def breaks(self, request: Request, pk: str | None = None) -> Response:
        run = self.get_object()
        kind = request.query_params.get("kind")
        state = request.query_params.get("status")
        if kind is not None and kind not in BREAK_KINDS:
            raise serializers.ValidationError({"kind": f"Not one of {BREAK_KINDS}."})
        if state is not None and state not in BreakStatus.values:
            raise serializers.ValidationError({"status": f"Not one of {BreakStatus.values}."})
        page = self.paginate_queryset(break_list(run=run, kind=kind, status=state))
        return self.get_paginated_response(BreakSerializer(page, many=True).data)

    @extend_schema(
        responses={
            200: LineSerializer(many=True),
            **errors(e400="A bad filter, page or page_size", e404="No such run or page"),
        },
        parameters=[OpenApiParameter("result", OpenApiTypes.STR, enum=ResultClass.values)],
        summary="The statement's lines with their class",
    )
    @action(detail=True, methods=["get"], filterset_class=None)
    def lines(self, request: Request, pk: str | None = None) -> Response:
        run = self.get_object()
        result = request.query_params.get("result")
        if result is not None and result not in ResultClass.values:
            raise serializers.ValidationError({"result": f"Not one of {ResultClass.values}."})
        page = self.paginate_queryset(run_lines(run=run, result=result))
        return self.get_paginated_response(LineSerializer(page, many=True).data)

    @extend_schema(
        responses={
            200: RejectSerializer(many=True),
            **errors(e400="A bad page or page_size", e404="No such run or page"),
        },
        summary="Rows that could not be read",
    )
    @action(detail=True, methods=["get"], filterset_class=None)
    def rejects(self, request: Request, pk: str | None = None) -> Response:
        page = self.paginate_queryset(run_rejects(run=self.get_object()))
        return self.get_paginated_response(RejectSerializer(page, many=True).data)

    @extend_schema(
        responses={(200, "text/csv"): OpenApiTypes.STR, **json_errors(e404="No such run")},
        summary="The run as CSV for the accountant",
    )
    @action(
        detail=True,
        methods=["get"],
        filterset_class=None,
        renderer_classes=[CSVRenderer],
    )
    def report(self, request: Request, pk: str | None = None) -> StreamingHttpResponse:
        run = self.get_object()
        response = StreamingHttpResponse(run_report_csv(run=run), content_type="text/csv")
        response["Content-Disposition"] = f'attachment; filename="reconciliation-{run.pk}.csv"'
        return response


@extend_schema_view(
    retrieve=extend_schema(
        responses={200: BreakSerializer, **errors(e404="No such break (or another client's)")},
        summary="One break",
    ),
)
class BreakViewSet(viewsets.ReadOnlyModelViewSet):
    permission_classes = [HasReconciliationScope]
    serializer_class = BreakSerializer
    filterset_class = None

    def get_queryset(self) -> QuerySet[Break]:
        if getattr(self, "swagger_fake_view", False):  # schema generation: no client
            return Break.objects.none()
        query = break_scope(client=request_client(self.request)).order_by("id")
        if self.action != "list":
            return query
        params = self.request.query_params
        kind, state, run = params.get("kind"), params.get("status"), params.get("run")
        if kind is not None:
            if kind not in BREAK_KINDS:
                raise serializers.ValidationError({"kind": f"Not one of {BREAK_KINDS}."})
            query = query.filter(kind=kind)
        if state is not None:
            if state not in BreakStatus.values:
                raise serializers.ValidationError({"status": f"Not one of {BreakStatus.values}."})
            query = query.filter(status=state)
        if run is not None:
            digits = run[1:] if run.startswith("-") else run
            if not (digits.isascii() and digits.isdigit()):
                raise serializers.ValidationError({"run": "A run id (an integer)."})
            # An integer no run can have (beyond bigint, or too long for int()) matches
            # nothing, like any other.
            run_id = int(run) if len(digits) <= 19 else 2**63
            query = query.filter(run_id=run_id) if abs(run_id) < 2**63 else query.none()
        return query

    @extend_schema(
        responses={
            200: BreakSerializer(many=True),
            **errors(e400="A bad filter, page or page_size", e404="No such page"),
        },
        parameters=[
            OpenApiParameter("kind", OpenApiTypes.STR, enum=BREAK_KINDS),
            OpenApiParameter("status", OpenApiTypes.STR, enum=BreakStatus.values),
            OpenApiParameter("run", OpenApiTypes.INT),
        ],
        summary="Breaks of every run, newest last; filter by kind, status, run",
    )
    def list(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().list(request, *args, **kwargs)

    @extend_schema(
        responses={200: BreakEventSerializer(many=True), **errors(e404="No such break")},
        summary="The break's audit trail",
    )
    @action(detail=True, methods=["get"], pagination_class=None, filterset_class=None)
    def events(self, request: Request, pk: str | None = None) -> Response:
        return Response(BreakEventSerializer(break_events(brk=self.get_object()), many=True).data)

    @extend_schema(
        request=ResolveSerializer,
        responses={
            200: BreakSerializer,
            202: OpenApiResponse(
                BreakSerializer,
                description="The credit of a payment whose failure M-Pesa gave (1032 cancelled, "
                "2001 wrong PIN, …) waits for a second person: the break stays open with its "
                "pending approval; nothing moved.",
            ),
            **errors(
                e400="Validation error naming each field",
                e404="No such break (or another client's)",
                e409="Already resolved, a credit already waiting for approval, or the payment "
                "or receipt is taken",
                e415="Not a JSON body",
                e422="The resolution is not possible for this break (inconsistent_line: the "
                "line is not this payment's, with the reasons)",
            ),
        },
        summary="Resolve a break with a reason ('match' credits a PENDING/FAILED payment)",
    )
    @action(
        detail=True,
        methods=["post"],
        parser_classes=[DecimalJSONParser],
        filterset_class=None,
    )
    def resolve(self, request: Request, pk: str | None = None) -> Response:
        brk = self.get_object()
        serializer = ResolveSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        payment_id: uuid.UUID | None = data.get("payment_id")
        key = request_key(request)
        try:
            resolved = break_resolve(
                break_id=brk.pk,
                action=data["action"],
                actor=f"api:{key.name}",
                actor_key=client_actor_key(key),
                reason=data["reason"],
                payment_id=payment_id,
                client=request_client(request),
            )
        except BreakResolutionError as exc:
            raise resolution_error(exc) from None
        resolved = self.get_queryset().get(pk=resolved.pk)
        waiting = resolved.status == BreakStatus.OPEN
        return Response(BreakSerializer(resolved).data, status=202 if waiting else 200)

    @extend_schema(
        request=ApproveSerializer,
        responses={
            200: BreakSerializer,
            **errors(
                e400="Validation error naming each field",
                e403="The API key lacks the reconciliation scope, or asked for this credit "
                "itself (self_approval: a second person must approve)",
                e404="No such break (or another client's)",
                e409="Nothing waiting for approval, or the break is already resolved",
                e415="Not a JSON body",
                e422="The line is no longer consistent with the payment, or the credit is no "
                "longer possible",
            ),
        },
        summary="Approve, as a second person, a credit waiting on this break",
    )
    @action(
        detail=True,
        methods=["post"],
        parser_classes=[DecimalJSONParser],
        filterset_class=None,
    )
    def approve(self, request: Request, pk: str | None = None) -> Response:
        brk = self.get_object()
        serializer = ApproveSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        key = request_key(request)
        try:
            break_approve(
                break_id=brk.pk,
                actor=f"api:{key.name}",
                actor_key=client_actor_key(key),
                reason=serializer.validated_data["reason"],
                client=request_client(request),
            )
        except BreakResolutionError as exc:
            raise resolution_error(exc) from None
        return Response(BreakSerializer(self.get_queryset().get(pk=brk.pk)).data)
