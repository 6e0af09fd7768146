"""The inbox's routes, included under ``/payments/`` (before the payments API's own): Daraja's
STK callbacks, and a payment's stored callbacks in the merchant API."""

from django.urls import path
from rest_framework.routers import SimpleRouter

from .api import stk_callback
from .payment_api import PaymentCallbackViewSet

router = SimpleRouter()
router.register("", PaymentCallbackViewSet, basename="payment")

urlpatterns = [
    path("callback/", stk_callback, name="stk-callback-no-token"),
    path("callback/<str:token>/", stk_callback, name="stk-callback"),
    *router.urls,
]
