from django.urls import path
from rest_framework.routers import SimpleRouter

from callbacks.api import stk_callback

from .api import PaymentViewSet, StkPushView

router = SimpleRouter()
router.register("", PaymentViewSet, basename="payment")

urlpatterns = [
    path("stk-push/", StkPushView.as_view(), name="stk-push"),
    path("callback/", stk_callback, name="stk-callback-no-token"),
    path("callback/<str:token>/", stk_callback, name="stk-callback"),
    *router.urls,
]
