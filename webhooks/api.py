"""Webhooks API (the key's ``webhooks`` scope): ``/webhooks/endpoints/`` (create, list, change,
delete, rotate-secret, send-test), ``/webhooks/events/`` (the merchant's events, their
deliveries, redeliver) and ``/webhooks/deliveries/`` (every attempt; redeliver what failed in
a time range). A client sees only its own."""

from __future__ import annotations

import uuid
from typing import Any

from django.db.models import QuerySet
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from core.api import ApiError, errors
from core.auth import HasWebhooksScope, request_client, request_key
from events.models import Event

from .models import Delivery, DeliveryState, Endpoint
from .serializers import (
    CountSerializer,
    DeliverySerializer,
    EndpointSerializer,
    EndpointWithSecretSerializer,
    EndpointWriteSerializer,
    EventSerializer,
    RedeliverFailedSerializer,
    RedeliverSerializer,
    RotateSecretSerializer,
    SecretSerializer,
)
from .services import (
    InvalidEndpoint,
    RedeliverRefused,
    deliveries_redeliver_failed,
    endpoint_create,
    endpoint_secret_rotate,
    endpoint_send_test,
    endpoint_update,
    event_redeliver,
)


def _invalid(exc: InvalidEndpoint) -> serializers.ValidationError:
    return serializers.ValidationError({exc.field: [str(exc)]})


@extend_schema_view(
    list=extend_schema(
        summary="Your webhook endpoints",
        responses={
            200: EndpointSerializer(many=True),
            **errors(e400="A bad page or page_size", e404="No such page"),
        },
    ),
    retrieve=extend_schema(
        summary="One endpoint",
        responses={200: EndpointSerializer, **errors(e404="No such endpoint")},
    ),
    destroy=extend_schema(
        summary="Delete an endpoint (and its delivery history)",
        responses={204: None, **errors(e404="No such endpoint")},
    ),
)
class EndpointViewSet(
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.DestroyModelMixin,
    viewsets.GenericViewSet,
):
    permission_classes = [HasWebhooksScope]
    serializer_class = EndpointSerializer
    filterset_class = None

    def get_queryset(self) -> QuerySet[Endpoint]:
        if getattr(self, "swagger_fake_view", False):
            return Endpoint.objects.none()
        return Endpoint.objects.filter(client=request_client(self.request))

    @extend_schema(
        request=EndpointWriteSerializer,
        responses={201: EndpointWithSecretSerializer, **errors(e400="A bad URL or event type")},
        summary="Register an endpoint; its signing secret is in the answer, once",
    )
    def create(self, request: Request) -> Response:
        body = EndpointWriteSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        data = body.validated_data
        try:
            endpoint, secret = endpoint_create(
                client=request_client(request),
                url=data["url"],
                description=data.get("description", ""),
                event_types=data.get("event_types", []),
            )
        except InvalidEndpoint as exc:
            raise _invalid(exc) from None
        if data.get("enabled") is False:
            endpoint_update(endpoint, enabled=False)
        endpoint.secret = secret  # type: ignore[attr-defined]
        return Response(EndpointWithSecretSerializer(endpoint).data, status=status.HTTP_201_CREATED)

    @extend_schema(
        request=EndpointWriteSerializer(partial=True),
        responses={
            200: EndpointSerializer,
            **errors(e400="A bad URL or event type", e404="No such endpoint"),
        },
        summary="Change an endpoint (URL, description, event types, enabled)",
    )
    def partial_update(self, request: Request, pk: str | None = None) -> Response:
        endpoint = self.get_object()
        body = EndpointWriteSerializer(data=request.data, partial=True)
        body.is_valid(raise_exception=True)
        try:
            endpoint_update(endpoint, **body.validated_data)
        except InvalidEndpoint as exc:
            raise _invalid(exc) from None
        return Response(EndpointSerializer(endpoint).data)

    @extend_schema(
        request=RotateSecretSerializer,
        responses={
            200: SecretSerializer,
            **errors(e400="A bad overlap_hours", e404="No such endpoint"),
        },
        summary="A new signing secret; the old one keeps signing for the overlap",
    )
    @action(detail=True, methods=["post"], url_path="rotate-secret")
    def rotate_secret(self, request: Request, pk: str | None = None) -> Response:
        endpoint = self.get_object()
        body = RotateSecretSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        hours = body.validated_data.get("overlap_hours")
        from datetime import timedelta

        secret = endpoint_secret_rotate(
            endpoint, overlap=None if hours is None else timedelta(hours=hours)
        )
        return Response({"secret": secret})

    @extend_schema(
        request=None,
        responses={202: DeliverySerializer, **errors(e404="No such endpoint")},
        summary="Send this endpoint a webhook.test event",
    )
    @action(detail=True, methods=["post"], url_path="send-test")
    def send_test(self, request: Request, pk: str | None = None) -> Response:
        delivery = endpoint_send_test(self.get_object())
        return Response(DeliverySerializer(delivery).data, status=status.HTTP_202_ACCEPTED)


@extend_schema_view(
    list=extend_schema(
        summary="Your events, newest first",
        parameters=[OpenApiParameter("type", str), OpenApiParameter("object_id", str)],
        responses={
            200: EventSerializer(many=True),
            **errors(e400="A bad page or page_size", e404="No such page"),
        },
    ),
    retrieve=extend_schema(
        summary="One event", responses={200: EventSerializer, **errors(e404="No such event")}
    ),
)
class EventViewSet(viewsets.ReadOnlyModelViewSet):
    permission_classes = [HasWebhooksScope]
    serializer_class = EventSerializer
    filterset_class = None

    def get_queryset(self) -> QuerySet[Event]:
        if getattr(self, "swagger_fake_view", False):
            return Event.objects.none()
        events = Event.objects.filter(client=request_client(self.request)).order_by(
            "-created_at", "-id"
        )
        for name in ("type", "object_id"):
            value = self.request.query_params.get(name)
            if value:
                events = events.filter(**{name: value})
        return events

    @extend_schema(
        responses={
            200: DeliverySerializer(many=True),
            **errors(e400="A bad page or page_size", e404="No such event or page"),
        },
        summary="The event's deliveries",
    )
    @action(detail=True, methods=["get"])
    def deliveries(self, request: Request, pk: str | None = None) -> Response:
        event = self.get_object()
        rows = (
            Delivery.objects.filter(event=event)
            .select_related("event")
            .prefetch_related("attempt_set")
        )
        page = self.paginate_queryset(rows)
        return self.get_paginated_response(DeliverySerializer(page, many=True).data)

    @extend_schema(
        request=RedeliverSerializer,
        responses={
            202: DeliverySerializer(many=True),
            **errors(
                e400="A bad endpoint or reason",
                e404="No such event or endpoint",
                e409="No enabled endpoint wants it",
            ),
        },
        summary="Deliver the event again (one endpoint, or all that want it)",
    )
    @action(detail=True, methods=["post"])
    def redeliver(self, request: Request, pk: str | None = None) -> Response:
        event = self.get_object()
        body = RedeliverSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        endpoint = _own_endpoint(request, body.validated_data.get("endpoint"))
        try:
            made = event_redeliver(
                event,
                endpoint=endpoint,
                requested_by=f"api:{request_key(request).key_prefix}",
                reason=body.validated_data.get("reason", ""),
            )
        except RedeliverRefused as exc:
            raise ApiError(code=exc.code, message=str(exc), http_status=409) from None
        return Response(DeliverySerializer(made, many=True).data, status=status.HTTP_202_ACCEPTED)


def _own_endpoint(request: Request, endpoint_id: Any) -> Endpoint | None:
    if endpoint_id is None:
        return None
    endpoint = Endpoint.objects.filter(pk=endpoint_id, client=request_client(request)).first()
    if endpoint is None:
        raise ApiError(code="not_found", message="No such endpoint.", http_status=404)
    return endpoint


@extend_schema_view(
    list=extend_schema(
        summary="Deliveries with every attempt, newest first",
        parameters=[
            OpenApiParameter("endpoint", OpenApiTypes.UUID),
            OpenApiParameter("event", str),
            OpenApiParameter("state", str, enum=DeliveryState.values),
        ],
        responses={
            200: DeliverySerializer(many=True),
            **errors(e400="A bad filter, page or page_size", e404="No such page"),
        },
    ),
    retrieve=extend_schema(
        summary="One delivery with its attempts",
        responses={200: DeliverySerializer, **errors(e404="No such delivery")},
    ),
)
class DeliveryViewSet(viewsets.ReadOnlyModelViewSet):
    permission_classes = [HasWebhooksScope]
    serializer_class = DeliverySerializer
    filterset_class = None

    def get_queryset(self) -> QuerySet[Delivery]:
        if getattr(self, "swagger_fake_view", False):
            return Delivery.objects.none()
        rows = (
            Delivery.objects.filter(endpoint__client=request_client(self.request))
            .select_related("event")
            .prefetch_related("attempt_set")
            .order_by("-created_at", "-id")
        )
        state = self.request.query_params.get("state")
        if state is not None:
            if state not in DeliveryState.values:
                raise serializers.ValidationError({"state": f"Not one of {DeliveryState.values}."})
            rows = rows.filter(state=state)
        endpoint = self.request.query_params.get("endpoint")
        if endpoint is not None:
            try:
                rows = rows.filter(endpoint_id=uuid.UUID(endpoint))
            except ValueError:
                raise serializers.ValidationError({"endpoint": ["Not a UUID."]}) from None
        event = self.request.query_params.get("event")
        if event:
            rows = rows.filter(event_id=event)
        return rows

    @extend_schema(
        request=RedeliverFailedSerializer,
        responses={
            202: CountSerializer,
            **errors(e400="A bad range", e404="No such endpoint", e409="Too many"),
        },
        summary="Deliver again everything that failed in a time range (audited)",
    )
    @action(detail=False, methods=["post"], url_path="redeliver-failed")
    def redeliver_failed(self, request: Request) -> Response:
        body = RedeliverFailedSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        data = body.validated_data
        try:
            count = deliveries_redeliver_failed(
                client_id=request_client(request).pk,
                since=data["since"],
                until=data["until"],
                endpoint=_own_endpoint(request, data.get("endpoint")),
                requested_by=f"api:{request_key(request).key_prefix}",
                reason=data.get("reason", ""),
            )
        except RedeliverRefused as exc:
            code = 400 if exc.code == "invalid_range" else 409
            raise ApiError(code=exc.code, message=str(exc), http_status=code) from None
        return Response({"redelivered": count}, status=status.HTTP_202_ACCEPTED)
