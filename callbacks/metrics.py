"""The inbox's lines of `/metrics` (core.ops serves them): stored callbacks by state, and
those from addresses outside the allowlist."""

from __future__ import annotations

from django.db.models import Count

from .models import CallbackState, InboundCallback


def callback_metrics() -> list[str]:
    callbacks = dict(InboundCallback.objects.values_list("state").annotate(n=Count("id")))
    flagged = InboundCallback.objects.filter(source_flagged=True).count()
    return [
        "# HELP mpesa_callbacks Stored callbacks by processing state (rejected = security events).",
        "# TYPE mpesa_callbacks gauge",
        *(f'mpesa_callbacks{{state="{s}"}} {callbacks.get(s, 0)}' for s in CallbackState.values),
        "# HELP mpesa_callbacks_source_flagged Callbacks from addresses outside the allowlist.",
        "# TYPE mpesa_callbacks_source_flagged gauge",
        f"mpesa_callbacks_source_flagged {flagged}",
    ]
