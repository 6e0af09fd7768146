"""How the API shows a payment and its events: the same representation the merchant reads
from ``GET /payments/<id>/`` and finds in a webhook event's ``data``."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from django.conf import settings
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from core.money import InvalidAmount, whole_shillings

from .models import Payment, PaymentEvent, PaymentStatus


@extend_schema_field({"type": "string", "pattern": "^[0-9]+(\\.00)?$", "example": "100"})
class AmountField(serializers.Field):
    default_error_messages = {"invalid": "{message}"}

    def to_internal_value(self, data: Any) -> Decimal:
        try:
            amount = whole_shillings(data)
        except InvalidAmount as exc:
            self.fail("invalid", message=str(exc))
        low, high = settings.PAYMENTS_MIN_AMOUNT, settings.PAYMENTS_MAX_AMOUNT
        if not low <= amount <= high:
            self.fail("invalid", message=f"amount must be between {low:,} and {high:,} KES")
        return amount

    def to_representation(self, value: Any) -> str:
        return f"{value:.2f}"


class PaymentSerializer(serializers.ModelSerializer):
    amount = AmountField(read_only=True)
    paid_amount = serializers.DecimalField(
        max_digits=12, decimal_places=2, read_only=True, allow_null=True
    )

    class Meta:
        model = Payment
        fields = [
            "id",
            "status",
            "channel",
            "account",
            "amount",
            "currency",
            "phone_number",
            "account_reference",
            "bill_ref_number",
            "payer_name",
            "description",
            "transaction_type",
            "merchant_request_id",
            "checkout_request_id",
            "mpesa_receipt_number",
            "result_code",
            "result_desc",
            "transaction_date",
            "paid_amount",
            "needs_review",
            "created_at",
            "updated_at",
            "completed_at",
        ]
        read_only_fields = fields


class PaymentEventSerializer(serializers.ModelSerializer):
    # '' on the creation event (no status before it) and on events that change no status.
    from_status = serializers.ChoiceField(
        choices=PaymentStatus.choices, allow_blank=True, read_only=True
    )
    to_status = serializers.ChoiceField(
        choices=PaymentStatus.choices, allow_blank=True, read_only=True
    )
    callback = serializers.IntegerField(
        source="callback_id",
        allow_null=True,
        read_only=True,
        help_text="The id of the stored callback behind the event, if one was.",
    )

    class Meta:
        model = PaymentEvent
        fields = [
            "id",
            "kind",
            "from_status",
            "to_status",
            "source",
            "actor",
            "reason",
            "evidence",
            "callback",
            "created_at",
        ]
        read_only_fields = fields
