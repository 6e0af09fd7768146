"""The merchant's M-Pesa accounts in the API, and the known account numbers validation checks:

- ``GET /payments/accounts/``: the client's paybills and tills, with their rules and the state
  of their registration and pulls;
- ``GET``/``POST /payments/accounts/<shortcode>/references/``: the known account numbers
  (invoices, customer numbers) of an account whose validation requires one;
- ``GET``/``PATCH``/``DELETE /payments/accounts/<shortcode>/references/<id>/``.

A key sees and changes only its own merchant's accounts (another's answers 404). Accounts are
made by an operator (``manage.py mpesa_account``, the admin): their URLs are secrets.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from django.db import IntegrityError
from django.db.models import QuerySet
from django.shortcuts import get_object_or_404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view
from rest_framework import generics, serializers
from rest_framework.exceptions import NotFound
from rest_framework.request import Request
from rest_framework.response import Response

from core.api import errors
from core.auth import HasPaymentsScope, request_key

from .accounts import key_account_list
from .models import KnownReference, MpesaAccount

MAX_AMOUNT = Decimal("9999999999.99")


class MpesaAccountSerializer(serializers.ModelSerializer):
    class Meta:
        model = MpesaAccount
        fields = [
            "shortcode",
            "name",
            "kind",
            "till_number",
            "enabled",
            "response_type",
            "account_pattern",
            "min_amount",
            "max_amount",
            "require_known_reference",
            "urls_registered_at",
            "urls_registered_version",
            "pull_enabled",
            "pulled_until",
            "pull_failing_since",
        ]
        read_only_fields = fields


class KnownReferenceSerializer(serializers.ModelSerializer):
    reference = serializers.CharField(max_length=100, trim_whitespace=True)
    amount = serializers.DecimalField(
        max_digits=12,
        decimal_places=2,
        min_value=Decimal("0.01"),
        max_value=MAX_AMOUNT,
        required=False,
        allow_null=True,
        help_text="The amount expected, if only that amount may be paid to it.",
    )

    class Meta:
        model = KnownReference
        fields = ["id", "reference", "amount", "active", "created_at"]
        read_only_fields = ["id", "created_at"]

    def validate_reference(self, value: str) -> str:
        if "\x00" in value or not KnownReference.key_of(value):
            raise serializers.ValidationError(
                "An account number with characters other than spaces."
            )
        return value

    def save(self, **kwargs: Any) -> KnownReference:
        try:
            return super().save(**kwargs)
        except IntegrityError:
            raise serializers.ValidationError(
                {"reference": ["This account number is already known on the account."]}
            ) from None


NO_ACCOUNT = "No such account of yours"
NO_REFERENCE = "No such account number (or another merchant's)"
INVALID = "The body is not valid (fields names each problem)"
METHOD = "A method the path does not take"


def _account(view: Any) -> MpesaAccount:
    return get_object_or_404(
        key_account_list(request_key(view.request)), shortcode=view.kwargs["shortcode"]
    )


@extend_schema_view(
    get=extend_schema(
        summary="The merchant's M-Pesa accounts (paybills and tills)",
        responses={200: MpesaAccountSerializer(many=True), **errors(e405=METHOD)},
    )
)
class AccountListView(generics.ListAPIView):
    permission_classes = [HasPaymentsScope]
    serializer_class = MpesaAccountSerializer
    pagination_class = None

    def get_queryset(self) -> QuerySet[MpesaAccount]:
        if getattr(self, "swagger_fake_view", False):
            return MpesaAccount.objects.none()
        return key_account_list(request_key(self.request)).order_by("shortcode")


@extend_schema_view(
    get=extend_schema(
        summary="An account's known account numbers",
        responses={
            200: KnownReferenceSerializer(many=True),
            **errors(e404=NO_ACCOUNT, e405=METHOD),
        },
    ),
    post=extend_schema(
        summary="Add a known account number",
        responses={
            201: KnownReferenceSerializer,
            **errors(e400=INVALID, e404=NO_ACCOUNT, e405=METHOD),
        },
    ),
)
class ReferenceListView(generics.ListCreateAPIView):
    permission_classes = [HasPaymentsScope]
    serializer_class = KnownReferenceSerializer
    pagination_class = None

    def get_queryset(self) -> QuerySet[KnownReference]:
        if getattr(self, "swagger_fake_view", False):
            return KnownReference.objects.none()
        return KnownReference.objects.filter(account=_account(self)).order_by("key")

    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        self.account = _account(self)  # another's or no account: 404 before the body is read
        return super().create(request, *args, **kwargs)

    def perform_create(self, serializer: Any) -> None:
        serializer.save(account=self.account)


REFERENCE_ID = OpenApiParameter("id", OpenApiTypes.INT, OpenApiParameter.PATH)


@extend_schema_view(
    get=extend_schema(
        summary="One known account number",
        parameters=[REFERENCE_ID],
        responses={200: KnownReferenceSerializer, **errors(e404=NO_REFERENCE, e405=METHOD)},
    ),
    patch=extend_schema(
        summary="Change a known account number",
        parameters=[REFERENCE_ID],
        responses={
            200: KnownReferenceSerializer,
            **errors(e400=INVALID, e404=NO_REFERENCE, e405=METHOD),
        },
    ),
    put=extend_schema(
        summary="Replace a known account number",
        parameters=[REFERENCE_ID],
        responses={
            200: KnownReferenceSerializer,
            **errors(e400=INVALID, e404=NO_REFERENCE, e405=METHOD),
        },
    ),
    delete=extend_schema(
        summary="Forget a known account number",
        parameters=[REFERENCE_ID],
        responses={204: None, **errors(e404=NO_REFERENCE, e405=METHOD)},
    ),
)
class ReferenceDetailView(generics.RetrieveUpdateDestroyAPIView):
    permission_classes = [HasPaymentsScope]
    serializer_class = KnownReferenceSerializer
    lookup_url_kwarg = "id"

    def get_queryset(self) -> QuerySet[KnownReference]:
        if getattr(self, "swagger_fake_view", False):
            return KnownReference.objects.none()
        return KnownReference.objects.filter(account=_account(self))

    def get_object(self) -> KnownReference:
        # The path takes anything up to the next slash, so a malformed id gets the JSON 404.
        given = str(self.kwargs["id"])
        if not (given.isascii() and given.isdigit() and len(given) <= 18):
            raise NotFound(NO_REFERENCE)
        reference: KnownReference = get_object_or_404(self.get_queryset(), pk=int(given))
        return reference
