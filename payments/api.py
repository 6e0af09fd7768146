"""Merchant API for payments: STK Push (idempotent), read one, list with filters, events."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import django_filters
from django.core.validators import RegexValidator
from django.db.models import QuerySet
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
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from core.api import ApiError, errors
from core.auth import HasPaymentsScope, request_client, request_key
from core.logging import ctx
from core.models import IdempotencyKey
from core.parsers import KeysetPagination
from core.phones import InvalidPhoneNumber, normalize_phone
from core.services import (
    IdempotencyConflict,
    idempotency_attach,
    idempotency_claim,
    idempotency_complete,
    idempotency_release,
    request_fingerprint,
)

from .accounts import AccountRefused, account_for_push
from .models import Channel, Payment, PaymentStatus
from .selectors import payment_events, payment_list
from .serializers import AmountField, PaymentEventSerializer, PaymentSerializer
from .services import payment_initiate, payment_initiation_interrupted

logger = logging.getLogger(__name__)

# Daraja shows these in the customer's prompt; keep them to plain printable characters.
_TEXT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 .,_#/:&'()-]*$")
MAX_IDEMPOTENCY_KEY = 255


@extend_schema_field({"type": "string", "example": "0712345678"})
class PhoneField(serializers.Field):
    default_error_messages = {"invalid": "{message}"}

    def to_internal_value(self, data: Any) -> str:
        try:
            return normalize_phone(data)
        except InvalidPhoneNumber as exc:
            self.fail("invalid", message=str(exc))

    def to_representation(self, value: Any) -> str:
        return str(value)


def _text_field(max_length: int, what: str) -> serializers.CharField:
    return serializers.CharField(
        max_length=max_length,
        trim_whitespace=True,
        validators=[
            RegexValidator(
                _TEXT,
                message=f"{what} may contain letters, digits, spaces and . , _ # / : & ' ( ) -",
            )
        ],
        help_text=f"At most {max_length} characters (a Daraja limit).",
    )


class StkPushRequestSerializer(serializers.Serializer):
    phone_number = PhoneField(help_text="Any Kenyan form: 07…, 01…, +2547…, 2547…")
    amount = AmountField(help_text='Whole shillings, e.g. 100 or "100".')
    account_reference = _text_field(12, "account_reference")
    description = _text_field(13, "description")
    shortcode = serializers.RegexField(
        r"^[0-9]{5,8}$",
        required=False,
        error_messages={"invalid": "shortcode must be 5 to 8 digits."},
        help_text="The paybill or till (its shortcode) to push from: one of the merchant's "
        "accounts (GET /payments/accounts/). Default: the system's default account "
        "(MPESA_SHORTCODE), or the one account an API key is limited to.",
    )

    def to_internal_value(self, data: Any) -> dict[str, Any]:
        """Unknown fields are named together with the known fields at fault, in one 400."""
        unknown = {
            name: "Unknown field."
            for name in sorted(set(data) - set(self.fields) if isinstance(data, dict) else ())
        }
        try:
            value = super().to_internal_value(data)
        except serializers.ValidationError as exc:
            if unknown and isinstance(exc.detail, dict):
                raise serializers.ValidationError({**exc.detail, **unknown}) from None
            raise
        if unknown:
            raise serializers.ValidationError(unknown)
        return value


def _payment_status_code(payment: Payment) -> int:
    return status.HTTP_202_ACCEPTED if payment.status == PaymentStatus.INITIATED else 201


def _attach_to(record: IdempotencyKey) -> Callable[[Payment], None]:
    return lambda payment: idempotency_attach(record=record, payment_id=payment.pk)


def _complete_with_payment(record: IdempotencyKey, payment: Payment) -> Response:
    body = PaymentSerializer(payment).data
    http_status = _payment_status_code(payment)
    idempotency_complete(record=record, status=http_status, body=dict(body), payment_id=payment.pk)
    return Response(body, status=http_status)


def _answer_abandoned_key(record: IdempotencyKey) -> Response:
    """The key's request stopped (past its lease) after making a payment: answer with the
    payment as it stands, and keep that as the key's answer. Never a second push."""
    payment = payment_initiation_interrupted(
        payment_id=record.payment_id,
        reason="the request that sent it stopped before recording Daraja's answer",
    )
    response = _complete_with_payment(record, payment)
    response["Idempotent-Replayed"] = "true"
    return response


def _settle_failed_key(record: IdempotencyKey) -> None:
    """The key's request raised. Without a payment, nothing was sent: release the key for a
    retry. With one, Daraja may have accepted the push: complete the key with the payment,
    so a retry replays it instead of pushing again. The original error is raised after."""
    try:
        payment_id = idempotency_release(record=record)
        if payment_id is not None:
            payment = payment_initiation_interrupted(
                payment_id=payment_id,
                reason="recording Daraja's answer failed after the push was sent",
            )
            _complete_with_payment(record, payment)
    except Exception:
        # The database is failing too: the key stays in progress and its lease ends.
        logger.exception(
            "could not settle an idempotency key after an error", extra=ctx(key_id=record.pk)
        )


class StkPushView(APIView):
    throttle_scope = "stk_push"
    permission_classes = [HasPaymentsScope]

    @extend_schema(
        operation_id="payments_stk_push",
        request=StkPushRequestSerializer,
        parameters=[
            OpenApiParameter(
                "Idempotency-Key",
                OpenApiTypes.STR,
                OpenApiParameter.HEADER,
                description="Same key + same body replays the first response; same key + "
                "different body is refused with 422. A key whose request stopped is answered, "
                "after IDEMPOTENCY_LEASE_SECONDS, with its payment as it stands. Keys are kept "
                "IDEMPOTENCY_KEY_RETENTION_SECONDS (24 h by default).",
            )
        ],
        responses={
            201: PaymentSerializer,
            202: OpenApiResponse(
                PaymentSerializer,
                description="Daraja's answer was lost "
                "(timeout): the payment stays INITIATED and is resolved later.",
            ),
            **errors(
                e400="Validation error naming each field",
                e409="Same Idempotency-Key still in progress (within its lease)",
                e415="A body that is not JSON",
                e422="Idempotency-Key reused with a different body",
            ),
        },
        summary="Start an STK Push (M-Pesa Express) payment",
    )
    def post(self, request: Request) -> Response:
        serializer = StkPushRequestSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        client = request_client(request)
        try:
            account = account_for_push(key=request_key(request), shortcode=data.get("shortcode"))
        except AccountRefused as exc:
            raise ApiError(
                code="account_refused",
                message=str(exc),
                http_status=400,
                fields={"shortcode": str(exc)},
            ) from None

        key = request.headers.get("Idempotency-Key")
        record = None
        if key is not None:
            if not key or len(key) > MAX_IDEMPOTENCY_KEY or not key.isprintable():
                raise ApiError(
                    code="invalid_idempotency_key",
                    message=f"Idempotency-Key must be 1 to {MAX_IDEMPOTENCY_KEY} printable "
                    "characters.",
                    http_status=400,
                )
            canonical = {name: str(value) for name, value in data.items()}
            try:
                claim = idempotency_claim(
                    client=client,
                    key=key,
                    endpoint="stk_push",
                    fingerprint=request_fingerprint(endpoint="stk_push", body=canonical),
                )
            except IdempotencyConflict as exc:
                http_status = 409 if exc.code == "idempotency_key_in_progress" else 422
                raise ApiError(
                    code=exc.code, message=exc.message, http_status=http_status
                ) from None
            if claim.abandoned:
                return _answer_abandoned_key(claim.record)
            if not claim.created:
                replay = Response(claim.record.response_body, status=claim.record.response_status)
                replay["Idempotent-Replayed"] = "true"
                return replay
            record = claim.record

        try:
            payment = payment_initiate(
                client=client,
                phone_number=data["phone_number"],
                amount=data["amount"],
                account_reference=data["account_reference"],
                description=data["description"],
                account=account,
                on_created=None if record is None else _attach_to(record),
            )
        except Exception:
            if record is not None:
                _settle_failed_key(record)
            raise
        body = PaymentSerializer(payment).data
        http_status = _payment_status_code(payment)
        if record is not None:
            idempotency_complete(
                record=record, status=http_status, body=dict(body), payment_id=payment.pk
            )
        return Response(body, status=http_status)


class PaymentFilter(django_filters.FilterSet):
    # distinct=False: a status is one column of the row, so OR-ing statuses cannot repeat a
    # payment, and django-filter's default SELECT DISTINCT made PostgreSQL sort every match
    # (a merchant's 2,000,000 FAILED payments) before returning a page of them.
    status = django_filters.MultipleChoiceFilter(choices=PaymentStatus.choices, distinct=False)
    phone = django_filters.CharFilter(method="filter_phone", label="Phone number (any form)")
    created_after = django_filters.IsoDateTimeFilter(method="filter_created")
    created_before = django_filters.IsoDateTimeFilter(method="filter_created")
    needs_review = django_filters.TypedChoiceFilter(
        choices=[("true", "true"), ("false", "false")], coerce=lambda value: value == "true"
    )
    channel = django_filters.MultipleChoiceFilter(choices=Channel.choices, distinct=False)
    shortcode = django_filters.CharFilter(
        field_name="account__shortcode", label="The paybill or till (C2B payments)"
    )
    bill_ref_number = django_filters.CharFilter(
        field_name="bill_ref_number", lookup_expr="iexact", label="Account number typed (C2B)"
    )

    class Meta:
        model = Payment
        fields = [
            "status",
            "phone",
            "created_after",
            "created_before",
            "needs_review",
            "channel",
            "shortcode",
            "bill_ref_number",
        ]

    def is_valid(self) -> bool:
        """Also refuses a filter given with an empty value (``?created_after=``), which
        django-filter would drop: a client that meant to filter is told, not sent everything."""
        valid = super().is_valid()
        data = self.data
        for name in self.filters:
            values = data.getlist(name) if hasattr(data, "getlist") else [data.get(name)]
            if name in data and any(value is None or not str(value).strip() for value in values):
                self.form.errors.pop(name, None)  # "Enter a valid date/time." says less
                self.form.add_error(
                    name, "An empty value filters nothing: give a value or leave the parameter out."
                )
                valid = False
        return valid

    def filter_created(
        self, queryset: QuerySet[Payment], name: str, value: datetime
    ) -> QuerySet[Payment]:
        # In UTC: an offset like +16:00 is valid ISO 8601 but out of PostgreSQL's range.
        try:
            moment = value.astimezone(UTC)
        except OverflowError:  # 9999-12-31T23:59:59-23:59 is after the year 9999 in UTC
            raise serializers.ValidationError(
                {name: "A date and time whose UTC time is between the years 1 and 9999."}
            ) from None
        lookup = "created_at__gte" if name == "created_after" else "created_at__lt"
        return queryset.filter(**{lookup: moment})

    def filter_phone(self, queryset: QuerySet[Payment], name: str, value: str) -> QuerySet[Payment]:
        try:
            phone = normalize_phone(value)
        except InvalidPhoneNumber as exc:
            raise serializers.ValidationError({"phone": str(exc)}) from None
        return queryset.filter(phone_number=phone)


class PaymentPagination(KeysetPagination):
    """Page numbers for the first 10,000 payments, cursors (starting_after/ending_before) for
    any depth; no count of the whole list."""

    noun = "payment"


# An id that is a path of another endpoint under /payments/ reaches that endpoint, which does
# not take the method (ids are UUIDs: no payment has such an id).
OTHER_ENDPOINT = "The id is 'callback' or 'stk-push', another endpoint's path"
# A payment id is a UUID; the route takes anything up to the next slash only so that a
# malformed id gets the JSON 404 (see lookup_value_regex).
PAYMENT_ID = OpenApiParameter("id", OpenApiTypes.UUID, OpenApiParameter.PATH)


@extend_schema_view(
    list=extend_schema(
        responses={
            200: PaymentSerializer(many=True),
            **errors(
                e400="A bad filter (status, phone, created_after/before, needs_review, or one "
                "given empty), page_size, a page past the first 10,000 payments, or a cursor "
                "(starting_after/ending_before) that is not a payment of this client",
                e404="No such page",
            ),
        },
        summary="Payments, newest first, with filters",
    ),
    retrieve=extend_schema(
        responses={
            200: PaymentSerializer,
            **errors(e404="No such payment (or another client's)", e405=OTHER_ENDPOINT),
        },
        summary="One payment",
        parameters=[PAYMENT_ID],
    ),
)
class PaymentViewSet(viewsets.ReadOnlyModelViewSet):
    permission_classes = [HasPaymentsScope]
    serializer_class = PaymentSerializer
    filterset_class = PaymentFilter
    pagination_class = PaymentPagination
    lookup_value_converter = "uuid"
    # Any id up to the next slash reaches the view, so a malformed one gets the JSON 404.
    lookup_value_regex = "[^/]+"

    def get_queryset(self) -> QuerySet[Payment]:
        if getattr(self, "swagger_fake_view", False):  # schema generation: no client
            return Payment.objects.none()
        return payment_list(client=request_client(self.request), key=request_key(self.request))

    def get_cursor_queryset(self) -> QuerySet[Payment]:
        """The payments a cursor may name: the ones the key sees, whatever the filters (a
        payment that left the filter, e.g. changed status, still marks the place)."""
        return self.get_queryset()

    @extend_schema(
        responses={
            200: PaymentEventSerializer(many=True),
            **errors(e404="No such payment (or another client's)", e405=OTHER_ENDPOINT),
        },
        summary="The payment's audit trail",
        parameters=[PAYMENT_ID],
    )
    @action(detail=True, methods=["get"], pagination_class=None, filterset_class=None)
    def events(self, request: Request, pk: str | None = None) -> Response:
        payment = self.get_object()
        events = payment_events(payment=payment)
        return Response(PaymentEventSerializer(events, many=True).data)
