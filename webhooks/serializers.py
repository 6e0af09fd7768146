"""The webhooks API's payloads: endpoints, events, deliveries with their attempts, and the
create, rotate and redeliver requests."""

from __future__ import annotations

from rest_framework import serializers

from events.models import Event

from .models import Attempt, Delivery, Endpoint
from .services import EVENT_TYPES


class EndpointSerializer(serializers.ModelSerializer):
    class Meta:
        model = Endpoint
        fields = [
            "id",
            "url",
            "description",
            "event_types",
            "enabled",
            "disabled_reason",
            "disabled_at",
            "failing_since",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields


class EndpointWithSecretSerializer(EndpointSerializer):
    secret = serializers.CharField(
        read_only=True,
        help_text="The signing secret (whsec_…), shown this once: keep it to verify deliveries.",
    )

    class Meta(EndpointSerializer.Meta):
        fields = [*EndpointSerializer.Meta.fields, "secret"]
        read_only_fields = fields


class EndpointWriteSerializer(serializers.Serializer):
    url = serializers.CharField(max_length=2000)
    description = serializers.CharField(max_length=200, required=False, allow_blank=True)
    event_types = serializers.ListField(
        child=serializers.ChoiceField(choices=EVENT_TYPES),
        required=False,
        max_length=len(EVENT_TYPES),
        help_text="The event types to receive; empty or absent: all.",
    )
    enabled = serializers.BooleanField(required=False)


class RotateSecretSerializer(serializers.Serializer):
    overlap_hours = serializers.FloatField(
        required=False,
        min_value=0,
        max_value=168,
        help_text="How long the old secret keeps signing beside the new one "
        "(default WEBHOOK_SECRET_OVERLAP_HOURS).",
    )


class SecretSerializer(serializers.Serializer):
    secret = serializers.CharField(read_only=True)


class EventSerializer(serializers.ModelSerializer):
    class Meta:
        model = Event
        fields = ["id", "type", "created_at", "api_version", "object_id", "data"]
        read_only_fields = fields


class AttemptSerializer(serializers.ModelSerializer):
    class Meta:
        model = Attempt
        fields = ["started_at", "status_code", "error", "latency_ms", "response_body"]
        read_only_fields = fields


class DeliverySerializer(serializers.ModelSerializer):
    event_type = serializers.CharField(source="event.type", read_only=True)
    attempt_log = AttemptSerializer(source="attempt_set", many=True, read_only=True)

    class Meta:
        model = Delivery
        fields = [
            "id",
            "event",
            "event_type",
            "endpoint",
            "state",
            "attempts",
            "next_attempt_at",
            "last_status_code",
            "last_error",
            "created_at",
            "delivered_at",
            "requested_by",
            "reason",
            "attempt_log",
        ]
        read_only_fields = fields


class RedeliverSerializer(serializers.Serializer):
    endpoint = serializers.UUIDField(
        required=False, help_text="One endpoint; absent: every enabled endpoint that wants it."
    )
    reason = serializers.CharField(max_length=300, required=False, allow_blank=True)


class RedeliverFailedSerializer(serializers.Serializer):
    since = serializers.DateTimeField()
    until = serializers.DateTimeField()
    endpoint = serializers.UUIDField(required=False)
    reason = serializers.CharField(max_length=300, required=False, allow_blank=True)


class CountSerializer(serializers.Serializer):
    redelivered = serializers.IntegerField()
