"""``/reconciliation/runs/``: runs (their state and progress), their summary, breaks, lines,
rejects and the accountant's CSV report."""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping
from typing import Any

from django.db.models import QuerySet
from django.http import StreamingHttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiParameter,
    extend_schema,
    extend_schema_view,
)
from rest_framework import serializers, viewsets
from rest_framework.decorators import action
from rest_framework.renderers import BaseRenderer, JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response

from core.api import errors, json_errors
from core.auth import HasReconciliationScope, request_client

from ..models import (
    BreakStatus,
    ReconciliationRun,
    ResultClass,
)
from ..selectors import (
    break_list,
    run_lines,
    run_list,
    run_rejects,
    run_report_csv,
)
from .serializers import (
    BREAK_KINDS,
    BreakSerializer,
    LineSerializer,
    RejectSerializer,
    RunSerializer,
    summary_for_api,
)


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
