"""The merchant API's view of a payment's callbacks: list them, replay a failed one.

Served under the payment's path (``/payments/<id>/callbacks/``): the inbox owns callbacks and
sits above payments, so these endpoints live here and reach the payment through payments'
own selector, as the payments API does.
"""

from __future__ import annotations

from django.db.models import QuerySet
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import NotFound
from rest_framework.request import Request
from rest_framework.response import Response

from core.api import ApiError, errors
from core.auth import HasPaymentsScope, request_client, request_key
from payments.api import OTHER_ENDPOINT, PAYMENT_ID
from payments.models import Payment
from payments.selectors import payment_list

from .models import InboundCallback
from .selectors import payment_callbacks
from .services import CallbackNotReplayable, callback_public_error, payment_callback_replay


class PaymentCallbackSerializer(serializers.ModelSerializer):
    error = serializers.SerializerMethodField(
        help_text="Why it was kept for review, refused, found invalid, a duplicate, ignored or "
        "an orphan; for a failed one, that processing failed (the details stay with the "
        "operators); '' otherwise."
    )

    class Meta:
        model = InboundCallback
        fields = ["id", "kind", "state", "received_at", "processed_at", "attempts", "error"]
        read_only_fields = fields

    def get_error(self, callback: InboundCallback) -> str:
        return callback_public_error(callback)


# Detail routes only (no list, no retrieve): <id>/callbacks/ and
# <id>/callbacks/<callback_id>/replay/, named as the payments router names its own.
class PaymentCallbackViewSet(viewsets.GenericViewSet):
    permission_classes = [HasPaymentsScope]
    serializer_class = PaymentCallbackSerializer
    pagination_class = None  # a payment has a handful of callbacks: all of them, in order
    filter_backends: list[type] = []
    lookup_value_converter = "uuid"
    # Any id up to the next slash reaches the view, so a malformed one gets the JSON 404.
    lookup_value_regex = "[^/]+"

    def get_queryset(self) -> QuerySet[Payment]:
        if getattr(self, "swagger_fake_view", False):  # schema generation: no client
            return Payment.objects.none()
        return payment_list(client=request_client(self.request), key=request_key(self.request))

    @extend_schema(
        responses={
            200: PaymentCallbackSerializer(many=True),
            **errors(e404="No such payment (or another client's)", e405=OTHER_ENDPOINT),
        },
        summary="The Daraja callbacks received for the payment, as stored",
        parameters=[PAYMENT_ID],
    )
    @action(detail=True, methods=["get"])
    def callbacks(self, request: Request, pk: str | None = None) -> Response:
        payment = self.get_object()
        return Response(
            PaymentCallbackSerializer(payment_callbacks(payment=payment), many=True).data
        )

    @extend_schema(
        request=None,
        responses={
            202: OpenApiResponse(
                PaymentCallbackSerializer,
                description="Queued again: it is processed as if it had just arrived (the "
                "payment's events say what it changed).",
            ),
            **errors(
                e404="No such payment (or another client's), or no such callback of it",
                e409="The callback did not fail (only a failed one is replayed), or was "
                "replayed CALLBACK_API_REPLAY_LIMIT times already",
            ),
        },
        summary="Replay a callback of the payment whose processing failed",
        parameters=[
            PAYMENT_ID,
            OpenApiParameter("callback_id", OpenApiTypes.INT, OpenApiParameter.PATH),
        ],
    )
    @action(
        detail=True,
        methods=["post"],
        url_path=r"callbacks/(?P<callback_id>[^/]+)/replay",
    )
    def replay_callback(
        self, request: Request, pk: str | None = None, callback_id: str | None = None
    ) -> Response:
        payment = self.get_object()
        number = callback_id or ""
        if not (number.isascii() and number.isdigit() and len(number) <= 18):
            raise NotFound("No such callback of this payment.")
        try:
            callback = payment_callback_replay(
                payment=payment,
                callback_id=int(number),
                actor=f"api:{request_key(request).name}",
            )
        except InboundCallback.DoesNotExist:
            raise NotFound("No such callback of this payment.") from None
        except CallbackNotReplayable as exc:
            raise ApiError(code="not_replayable", message=str(exc), http_status=409) from None
        return Response(PaymentCallbackSerializer(callback).data, status=status.HTTP_202_ACCEPTED)
