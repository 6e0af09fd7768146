"""URL map: merchant API under /payments/, Daraja callbacks, admin, API docs, health."""

from django.conf import settings
from django.contrib import admin
from django.db import connection
from django.http import HttpRequest, JsonResponse
from django.urls import include, path
from django.views.generic import RedirectView
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView
from health_check.views import HealthCheckView
from rest_framework.permissions import AllowAny

from core.health import READY_CHECKS, live
from core.ops import metrics
from payments import demo
from webhooks import demo as webhooks_demo


def health(request: HttpRequest) -> JsonResponse:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    except Exception as exc:
        return JsonResponse({"status": "error", "database": type(exc).__name__}, status=503)
    return JsonResponse({"status": "ok"})


admin.site.site_header = "M-Pesa Payments"
admin.site.site_title = "M-Pesa Payments"

urlpatterns = [
    # The inbox's routes first: Daraja's callbacks and a payment's stored callbacks.
    path("payments/", include("callbacks.urls")),
    path("payments/", include("payments.urls")),
    path("c2b/", include("callbacks.c2b_urls")),
    path("reconciliation/", include("reconciliation.urls")),
    path("webhooks/", include("webhooks.urls")),
    path("admin/", admin.site.urls),
    path(
        "api/schema/",
        SpectacularAPIView.as_view(authentication_classes=[], permission_classes=[AllowAny]),
        name="schema",
    ),
    path(
        "api/docs/",
        SpectacularSwaggerView.as_view(
            url_name="schema", authentication_classes=[], permission_classes=[AllowAny]
        ),
        name="swagger-ui",
    ),
    path("health/", health, name="health"),
    path("health/live", live, name="health-live"),
    path("health/ready", HealthCheckView.as_view(checks=READY_CHECKS), name="health-ready"),
    path("metrics", metrics, name="metrics"),
    path("demo/", demo.demo_page, name="demo"),
    path("demo/pay/", demo.demo_pay, name="demo-pay"),
    path("demo/paybill/", demo.demo_pay_paybill, name="demo-paybill"),
    path("demo/paybill/latest/", demo.demo_paybill_latest, name="demo-paybill-latest"),
    path("demo/payments/<uuid:payment_id>/", demo.demo_payment, name="demo-payment"),
    path(
        "demo/payments/<uuid:payment_id>/webhooks/",
        webhooks_demo.demo_payment_webhooks,
        name="demo-payment-webhooks",
    ),
    path("", RedirectView.as_view(url="/demo/" if settings.DEMO_ENABLED else "/api/docs/")),
]
