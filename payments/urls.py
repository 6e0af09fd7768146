from django.urls import path
from rest_framework.routers import SimpleRouter

from .accounts_api import AccountListView, ReferenceDetailView, ReferenceListView
from .api import PaymentViewSet, StkPushView

router = SimpleRouter()
router.register("", PaymentViewSet, basename="payment")

urlpatterns = [
    path("stk-push/", StkPushView.as_view(), name="stk-push"),
    # Before the payments' own routes, which take any segment as a payment id.
    path("accounts/", AccountListView.as_view(), name="mpesa-accounts"),
    path(
        "accounts/<str:shortcode>/references/",
        ReferenceListView.as_view(),
        name="known-references",
    ),
    path(
        "accounts/<str:shortcode>/references/<str:id>/",
        ReferenceDetailView.as_view(),
        name="known-reference",
    ),
    *router.urls,
]
