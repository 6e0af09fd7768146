"""Webhooks API routes, included by the project under ``webhooks/``."""

from rest_framework.routers import SimpleRouter

from .api import DeliveryViewSet, EndpointViewSet, EventViewSet

router = SimpleRouter()
router.register("endpoints", EndpointViewSet, basename="webhook-endpoint")
router.register("events", EventViewSet, basename="webhook-event")
router.register("deliveries", DeliveryViewSet, basename="webhook-delivery")

urlpatterns = router.urls
