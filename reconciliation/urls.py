"""Reconciliation API routes, included by the project under ``reconciliation/``."""

from django.urls import path
from rest_framework.routers import SimpleRouter

from .api.breaks import BreakViewSet
from .api.runs import RunViewSet
from .api.statements import StatementUploadView
from .exports import BreakExportCsv, BreakExportXlsx

router = SimpleRouter()
router.register("runs", RunViewSet, basename="reconciliation-run")
router.register("breaks", BreakViewSet, basename="reconciliation-break")

urlpatterns = [
    path("statements/", StatementUploadView.as_view(), name="reconciliation-statement-upload"),
    path("breaks/export.csv", BreakExportCsv.as_view(), name="breaks-export-csv"),
    path(
        "breaks/export.xlsx",
        BreakExportXlsx.as_view(),
        name="breaks-export-xlsx",
    ),
    *router.urls,
]
