"""``/reconciliation/breaks/``: breaks, resolved with a reason; a credit that needs a second
person is approved by another key of the merchant."""

from __future__ import annotations

import uuid
from typing import Any

from django.db.models import QuerySet
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    extend_schema_view,
)
from rest_framework import serializers, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from core.api import ApiError, errors
from core.auth import HasReconciliationScope, request_client, request_key
from core.parsers import DecimalJSONParser

from ..credit import BreakResolutionError, client_actor_key
from ..models import (
    Break,
    BreakStatus,
)
from ..selectors import (
    break_events,
    break_scope,
)
from ..services import break_approve, break_resolve
from .serializers import (
    BREAK_KINDS,
    ApproveSerializer,
    BreakEventSerializer,
    BreakSerializer,
    ResolveSerializer,
)

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
        return break_filter(query, self.request.query_params)

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


def break_filter(query: QuerySet[Break], params: Any) -> QuerySet[Break]:
    """The list's filters (``kind``, ``status``, ``run``), each checked: a bad value is a
    400 naming it."""
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
