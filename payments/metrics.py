"""`/metrics`: counts in the Prometheus text format, for alerting (a rising number of rejected
or flagged callbacks is an attack or a misconfiguration; PENDING piling up is an outage).

Served with ``Authorization: Bearer <METRICS_TOKEN>``; without METRICS_TOKEN only in debug.
"""

from __future__ import annotations

import hmac

from django.conf import settings
from django.db.models import Count
from django.http import Http404, HttpRequest, HttpResponse

from callbacks.models import CallbackState, InboundCallback
from core.degraded import degraded_counts

from .models import Payment, PaymentStatus


def _authorised(request: HttpRequest) -> bool:
    token = settings.METRICS_TOKEN
    if not token:
        return bool(settings.DEBUG)
    header = request.headers.get("Authorization", "")
    return hmac.compare_digest(header, f"Bearer {token}")


def metrics(request: HttpRequest) -> HttpResponse:
    if not _authorised(request):
        raise Http404
    payments = dict(Payment.objects.values_list("status").annotate(n=Count("id")))
    callbacks = dict(InboundCallback.objects.values_list("state").annotate(n=Count("id")))
    review = Payment.objects.filter(needs_review=True).count()
    flagged = InboundCallback.objects.filter(source_flagged=True).count()
    lines = [
        "# HELP mpesa_payments Payments by status.",
        "# TYPE mpesa_payments gauge",
        *(f'mpesa_payments{{status="{s}"}} {payments.get(s, 0)}' for s in PaymentStatus.values),
        "# HELP mpesa_payments_needs_review Payments flagged for a person to look at.",
        "# TYPE mpesa_payments_needs_review gauge",
        f"mpesa_payments_needs_review {review}",
        "# HELP mpesa_callbacks Stored callbacks by processing state (rejected = security events).",
        "# TYPE mpesa_callbacks gauge",
        *(f'mpesa_callbacks{{state="{s}"}} {callbacks.get(s, 0)}' for s in CallbackState.values),
        "# HELP mpesa_callbacks_source_flagged Callbacks from addresses outside the allowlist.",
        "# TYPE mpesa_callbacks_source_flagged gauge",
        f"mpesa_callbacks_source_flagged {flagged}",
        "# HELP mpesa_degraded_total Requests that went on without an unreachable shared "
        "service (throttle: failed open; daraja_token: fetched by the process), counted by "
        "this process.",
        "# TYPE mpesa_degraded_total counter",
        *(f'mpesa_degraded_total{{what="{w}"}} {n}' for w, n in sorted(degraded_counts().items())),
    ]
    return HttpResponse("\n".join(lines) + "\n", content_type="text/plain; version=0.0.4")
