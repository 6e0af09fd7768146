from django.urls import path
from rest_framework.routers import SimpleRouter

from .api import PaymentViewSet, StkPushView

router = SimpleRouter()
router.register("", PaymentViewSet, basename="payment")

urlpatterns = [
    path("stk-push/", StkPushView.as_view(), name="stk-push"),
    *router.urls,
]
