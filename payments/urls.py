from django.urls import path
from rest_framework.routers import SimpleRouter

from .accounts_api import AccountListView, ReferenceDetailView, ReferenceListView
from .api import PaymentViewSet, StkPushView
from .exports import PaymentExportCsv, PaymentExportXlsx

router = SimpleRouter()
router.register("", PaymentViewSet, basename="payment")

urlpatterns = [
    path("stk-push/", StkPushView.as_view(), name="stk-push"),
    # Before the payments' own routes, which take any segment as a payment id.
    path("export.csv", PaymentExportCsv.as_view(), name="payments-export-csv"),
    path("export.xlsx", PaymentExportXlsx.as_view(), name="payments-export-xlsx"),
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
